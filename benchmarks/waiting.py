"""Benchmark 2: thousands of concurrent waits as real trigger coroutines in one asyncio process.

The orchestrator (this module's :func:`run`, in the parent process) places N calls in the emulator
(GenerateAIAgentCall, each with its own correlation id, calls that would last an hour), then starts
a worker process that runs N :class:`IceAIAgentInstanceTrigger` coroutines (``trigger.run()``, as the
triggerer runs them) with naive per-trigger polling (``coalesce=False``) or the coalesced poller.
Once the worker reports that every trigger is running, the orchestrator finishes the calls over
``spread`` seconds with StopAIAgentInstance (the instance is Finished from that moment), recording
when each finished. Detection latency = when the worker saw the success event - when the call
finished. Requests per poll interval come from the emulator's own request counts.

The quota row runs the coalesced poller with the account's ListAIAgentInstance quota on in the
emulator (``quota`` requests/s) and the same rate as the connection's ``rate_limits`` extra. A sweep
must read the ``P = ceil(n / 100)`` pages that hold the waited-for calls, so under the quota it
takes at least ``S = P / quota`` seconds, and no page can be read again sooner than
``T = max(interval, S)``: that period is what the quota implies, and it replaces the poll interval in
the latency target, ``p95 <= 1.5 * T`` (the target without quota is ``1.5 * interval``). The poller
hands each waiter its instance as soon as the page holding it is read, so detection waits for the
next read of that page (uniform over ``T``), not for the end of the sweep. Throttled answers come
from the emulator's own tally and must be zero. Each row also reports the sweep period it really
had (sweep starts per second of the measured window), to tell a slow machine from a slow design.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    REPO,
    RESULT_MARK,
    Meter,
    emit_result,
    peak_rss_mb,
    percentile,
)

AGENT = "bench-wait-agent"
#: The account's ListAIAgentInstance quota (requests/s) of the quota row.
QUOTA = 40.0
READY = "BENCH-READY"


async def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger

    n, interval = spec["n"], spec["interval"]
    deadline = time.time() + spec["max_wait"]
    triggers = [
        IceAIAgentInstanceTrigger(
            ice_conn_id="ice_default",
            agent_id=AGENT,
            correlation_id=f"{spec['prefix']}-{i}",
            window_start=spec["window_start"],
            poll_interval=interval,
            end_time=deadline,
            not_found_deadline=deadline,
            max_consecutive_errors=1000,
            coalesce=spec["mode"] == "coalesced",
        )
        for i in range(n)
    ]
    events: dict[str, list[tuple[float, dict[str, Any]]]] = {}

    async def run_one(trigger: IceAIAgentInstanceTrigger) -> None:
        async for event in trigger.run():
            events.setdefault(trigger.correlation_id or "", []).append((time.time(), event.payload))

    meter = Meter().__enter__()
    tasks = [asyncio.create_task(run_one(t)) for t in triggers]
    poller = await _started(spec, n)
    # The poller's own counts from READY on. READY comes right as a sweep starts (its first <= 4
    # page requests may be out already): that sweep is counted with the requests that follow, so
    # requests per sweep is over whole sweeps, wherever the measured window cuts them.
    counts0 = None
    if poller is not None:
        in_sweep = poller._sweep_remaining is not None
        counts0 = (poller.sweeps - (1 if in_sweep else 0), poller.requests)
    print(READY, flush=True)
    await asyncio.gather(*tasks)
    meter.__exit__()
    sweeps = requests = None
    if poller is not None and counts0 is not None:
        sweeps, requests = poller.sweeps - counts0[0], poller.requests - counts0[1]
    success = {cid: evs[0][0] for cid, evs in events.items() if evs[0][1].get("status") == "success"}
    statuses: dict[str, int] = {}
    for evs in events.values():
        for _, payload in evs:
            statuses[payload.get("status", "?")] = statuses.get(payload.get("status", "?"), 0) + 1
    wrong = sum(
        1 for cid, evs in events.items() for _, payload in evs if payload.get("correlation_id") != cid
    )
    return {
        "cpu_s": meter.cpu_s,
        "wall_s": meter.wall_s,
        "sweeps": sweeps,
        "requests_per_sweep": requests / sweeps if requests is not None and sweeps else None,
        "peak_rss_mb": peak_rss_mb(),
        "success_at": success,
        "event_statuses": statuses,
        "duplicated": sum(len(evs) - 1 for evs in events.values()),
        "wrong_instance": wrong,
    }


async def _started(spec: dict[str, Any], n: int) -> Any:
    """Until every trigger runs: all registered and one full sweep done (coalesced; returns the
    poller), or two intervals (naive)."""
    if spec["mode"] != "coalesced":
        await asyncio.sleep(2 * spec["interval"])
        return None
    from airflow_provider_ice.triggers.poller import active_pollers

    while sum(p.waiter_count for p in active_pollers()) < n:
        await asyncio.sleep(0.05)
    poller = active_pollers()[0]
    target = poller.sweeps + 1  # the sweep after the last registration has completed
    while poller.sweeps <= target:
        await asyncio.sleep(0.05)
    return poller


def _worker_main(spec: dict[str, Any]) -> None:
    emit_result(asyncio.run(_worker(spec)))


async def _place_calls(client: Any, prefix: str, n: int) -> list[str]:
    ids: list[str] = [""] * n
    sem = asyncio.Semaphore(32)

    async def place(i: int) -> None:
        async with sem:
            user_data = {
                "AirflowCorrelationId": f"{prefix}-{i}",
                "EmulatorScenario": {"UserJoinDelay": 0.1, "CallDuration": 3600},
            }
            response = await client.generate_ai_agent_call(AGENT, user_data=user_data)
            ids[i] = response.instance_id

    await asyncio.gather(*(place(i) for i in range(n)))
    return ids


async def _finish_calls(client: Any, ids: list[str], spread: float) -> dict[str, float]:
    """Stop the calls in random order, evenly over ``spread`` seconds; when each one finished."""
    order = list(range(len(ids)))
    random.Random(7).shuffle(order)
    finished: dict[str, float] = {}
    start = time.time()
    sem = asyncio.Semaphore(16)

    async def stop(rank: int, i: int) -> None:
        await asyncio.sleep(max(0.0, start + spread * rank / len(ids) - time.time()))
        async with sem:
            before = time.time()
            await client.stop_ai_agent_instance(ids[i])
            # The emulator marks the instance Finished while handling the call: between the two.
            finished[str(i)] = (before + time.time()) / 2

    await asyncio.gather(*(stop(rank, i) for rank, i in enumerate(order)))
    return finished


def _one(
    emulator: Any,
    *,
    mode: str,
    n: int,
    interval: float,
    spread: float,
    cap: float,
    quota: float | None = None,
) -> dict[str, Any]:
    from airflow_provider_ice.api.client import AsyncIceClient
    from airflow_provider_ice.api.signing import Credentials

    prefix = f"wait-{mode}-{n}-{int(time.time())}"
    emulator.control("reset", {})
    credentials = Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
    window_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))

    async def place() -> list[str]:
        async with AsyncIceClient(credentials, endpoint=emulator.url) as client:
            return await _place_calls(client, prefix, n)

    ids = asyncio.run(place())
    spec = {
        "n": n,
        "mode": mode,
        "interval": interval,
        "prefix": prefix,
        "window_start": window_start,
        "max_wait": cap,
    }
    extra: dict[str, Any] = {}
    if quota is not None:
        # The account quota on the listing only: the orchestrator's Stop calls are not under test.
        emulator.control("quotas", {"action_qps": {"ListAIAgentInstance": quota}})
        extra["rate_limits"] = {"ListAIAgentInstance": quota}
    env = {**os.environ, "AIRFLOW_CONN_ICE_DEFAULT": emulator.conn_json(**extra)}
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.waiting", "--worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(READY):
            break
    counts0, t0 = emulator.request_counts(), time.time()

    async def finish() -> dict[str, float]:
        async with AsyncIceClient(credentials, endpoint=emulator.url) as client:
            return await _finish_calls(client, ids, spread)

    finished = asyncio.run(finish())
    result: dict[str, Any] | None = None
    for line in process.stdout:
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
    process.wait()
    elapsed = time.time() - t0
    counts1 = emulator.request_counts()
    throttled = sum(emulator.control("state?agent_id=-")["quota_refusals"]["throttled"].values())
    if quota is not None:
        emulator.control("quotas?replace=1", {})
    if result is None:
        raise RuntimeError(f"waiting worker ({mode}, {n}) failed with exit code {process.returncode}")
    lists = counts1.get("ListAIAgentInstance", 0) - counts0.get("ListAIAgentInstance", 0)
    latencies = [
        result["success_at"][f"{prefix}-{i}"] - finished[str(i)]
        for i in range(n)
        if f"{prefix}-{i}" in result["success_at"]
    ]
    detected = len(latencies)
    pages = math.ceil(n / 100) + 1
    return {
        "mode": mode if quota is None else f"{mode}, quota {quota:g}/s",
        "account_quota_per_s": quota,
        "throttled": throttled,
        # 1.5 x the shortest period at which the quota lets the poller read a page again.
        "latency_bound_s": 1.5 * max(interval, math.ceil(n / 100) / quota) if quota else 1.5 * interval,
        "sweep_period_s": elapsed / result["sweeps"] if result["sweeps"] else None,
        "waits": n,
        "poll_interval_s": interval,
        "finish_spread_s": spread,
        "time_cap_s": cap,
        "list_requests_per_interval": lists / (elapsed / interval),
        "sweeps": result["sweeps"],
        "sweeps_per_interval": result["sweeps"] / (elapsed / interval) if result["sweeps"] else None,
        "requests_per_sweep": result["requests_per_sweep"],
        "target_requests_per_interval": pages,
        "cpu_s": result["cpu_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "p50_latency_s": percentile(latencies, 50),
        "p95_latency_s": percentile(latencies, 95),
        "detected": detected,
        "lost": n - detected,
        "duplicated": result["duplicated"],
        "wrong_instance": result["wrong_instance"],
        "event_statuses": result["event_statuses"],
    }


def run(emulator: Any, *, smoke: bool) -> dict[str, Any]:
    interval = 1.0 if smoke else 2.0
    # Finishing 10,000 calls over 30 s means 330 StopAIAgentInstance calls/s from the orchestrator,
    # on the same two cores as the emulator and the waiting process.
    spread = 3.0 if smoke else 30.0
    cap = spread + (15.0 if smoke else 30.0)
    # The quota row: below the 101 pages per 2 s interval that 10,000 waits ask for, so it binds.
    plan: list[tuple[int, str, float | None]] = (
        [(20, "naive", None), (20, "coalesced", None), (20, "coalesced", 2.0)]
        if smoke
        else [
            (1000, "naive", None),
            (1000, "coalesced", None),
            (10000, "coalesced", None),
            (10000, "coalesced", QUOTA),
        ]
    )
    rows = [
        _one(emulator, mode=mode, n=n, interval=interval, spread=spread, cap=cap, quota=quota)
        for n, mode, quota in plan
    ]
    return {
        "rows": rows,
        "not_run": None
        if smoke
        else (
            "Naive polling of 10,000 waits is not run: at 1,000 waits one process already needs the peak RSS "
            "shown above (one HTTP client per trigger) and asks for far more requests per interval than "
            "the emulator serves; at 10,000 it would need about ten times both (at least 10,000 requests "
            "per interval, one per wait, more when a call is not on the first page)."
        ),
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(json.loads(sys.argv[2]))
    else:
        raise SystemExit("run via python -m benchmarks.run")
