"""Benchmark 1: N signed ListAIAgentInstance and DescribeAIAgentInstance calls per client.

Clients: our sync client, our async client at concurrency 1/8/32, the official SDK, and bare
unsigned request loops with the same HTTP libraries (the floor: what httpx, resp. aiohttp, cost
by themselves), plus the previous async stack (httpx over aiohttp's transport) for reference. Each
client runs in its own process; the figure that matters is the client's CPU time per call (on a
2-core machine the emulator process is the ceiling for calls/s).

The emulator runs with ``--allow-unsigned`` (:data:`EMULATOR_ARGS`), so the bare loops get the same
page as the signed clients, not an error body; each bare worker checks that it does before measuring.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks.common import ACCESS_KEY_ID, ACCESS_KEY_SECRET, Meter, profile_top, run_worker, worker_main

#: Started with these flags: requests without an Authorization header (the floors) are answered unchecked.
EMULATOR_ARGS = ("--allow-unsigned",)
API_VERSION = "2020-11-09"
AGENT = "bench-signed-agent"
PAGE_SIZE = 10
ACTIONS = ("ListAIAgentInstance", "DescribeAIAgentInstance")
CLIENTS = (
    ("sdk", "official SDK (alibabacloud-ice20201109)"),
    ("sync", "our sync client (httpx)"),
    ("async-1", "our async client (aiohttp), concurrency 1"),
    ("async-8", "our async client, concurrency 8"),
    ("async-32", "our async client, concurrency 32"),
    ("bare-sync", "bare unsigned httpx sync loop (floor of the sync client)"),
    ("bare-aiohttp-8", "bare unsigned aiohttp loop, concurrency 8 (floor of the async client)"),
    ("bare-httpx-aiohttp-8", "bare unsigned httpx + aiohttp transport, concurrency 8 (previous async stack)"),
)


def _credentials() -> Any:
    from airflow_provider_ice.api.signing import Credentials

    return Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)


def _sdk(spec: dict[str, Any]) -> Meter:
    from alibabacloud_ice20201109 import models
    from alibabacloud_ice20201109.client import Client
    from alibabacloud_tea_openapi.models import Config

    host = spec["url"].removeprefix("http://")
    client = Client(
        Config(
            access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET, endpoint=host, protocol="HTTP"
        )
    )
    if spec["action"] == "ListAIAgentInstance":
        request: Any = models.ListAIAgentInstanceRequest(aiagent_id=AGENT, page_size=PAGE_SIZE)
        call = client.list_aiagent_instance
    else:
        request = models.DescribeAIAgentInstanceRequest(instance_id=spec["instance_id"])
        call = client.describe_aiagent_instance
    call(request)  # warm-up: connection, imports
    with Meter() as meter:
        for _ in range(spec["n"]):
            call(request)
    return meter


def _sync(spec: dict[str, Any]) -> Meter:
    from airflow_provider_ice.api.client import IceClient

    with IceClient(_credentials(), endpoint=spec["url"], max_retries=0) as client:
        if spec["action"] == "ListAIAgentInstance":

            def call() -> Any:
                return client.list_ai_agent_instances_page(AGENT, page_size=PAGE_SIZE)
        else:

            def call() -> Any:
                return client.describe_ai_agent_instance(spec["instance_id"])

        call()
        with Meter() as meter:
            for _ in range(spec["n"]):
                call()
    return meter


async def _in_parallel(n: int, concurrency: int, call: Any) -> None:
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _async(spec: dict[str, Any]) -> Meter:
    from airflow_provider_ice.api.client import AsyncIceClient

    async def main() -> Meter:
        async with AsyncIceClient(_credentials(), endpoint=spec["url"], max_retries=0) as client:
            if spec["action"] == "ListAIAgentInstance":

                async def call() -> Any:
                    return await client.list_ai_agent_instances_page(AGENT, page_size=PAGE_SIZE)
            else:

                async def call() -> Any:
                    return await client.describe_ai_agent_instance(spec["instance_id"])

            await _in_parallel(spec["concurrency"], spec["concurrency"], call)  # warm the pool
            with Meter() as meter:
                await _in_parallel(spec["n"], spec["concurrency"], call)
        return meter

    return asyncio.run(main())


def _bare_params(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["action"] == "ListAIAgentInstance":
        return {"Action": spec["action"], "Version": API_VERSION, "AIAgentId": AGENT, "PageSize": PAGE_SIZE}
    return {"Action": spec["action"], "Version": API_VERSION, "InstanceId": spec["instance_id"]}


def _check_same_page(spec: dict[str, Any], status: int, body: dict[str, Any]) -> None:
    """Refuse to measure a floor that does not get the page the signed clients get."""
    if spec["action"] == "ListAIAgentInstance":
        same = status == 200 and len(body.get("Instances", ())) == PAGE_SIZE
    else:
        same = status == 200 and isinstance(body.get("Instance"), dict)
    if not same:
        raise RuntimeError(f"bare {spec['action']} got HTTP {status} {str(body)[:200]}, not the page")


def _bare_sync(spec: dict[str, Any]) -> Meter:
    import httpx

    params = _bare_params(spec)
    with httpx.Client(base_url=spec["url"]) as client:
        first = client.post("/", params=params)
        _check_same_page(spec, first.status_code, first.json())
        with Meter() as meter:
            for _ in range(spec["n"]):
                response = client.post("/", params=params)
                response.json()
    return meter


def _bare_aiohttp(spec: dict[str, Any]) -> Meter:
    import aiohttp

    params = _bare_params(spec)

    async def main() -> Meter:
        async with aiohttp.ClientSession(spec["url"], cookie_jar=aiohttp.DummyCookieJar()) as session:

            async def call() -> None:
                async with session.post("/", params=params) as response:
                    await response.json()

            async with session.post("/", params=params) as first:
                _check_same_page(spec, first.status, await first.json())
            await _in_parallel(spec["concurrency"], spec["concurrency"], call)
            with Meter() as meter:
                await _in_parallel(spec["n"], spec["concurrency"], call)
        return meter

    return asyncio.run(main())


def _bare_httpx_aiohttp(spec: dict[str, Any]) -> Meter:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    params = _bare_params(spec)

    async def main() -> Meter:
        async with httpx.AsyncClient(base_url=spec["url"], transport=AiohttpTransport()) as client:

            async def call() -> None:
                response = await client.post("/", params=params)
                response.json()

            first = await client.post("/", params=params)
            _check_same_page(spec, first.status_code, first.json())
            await _in_parallel(spec["concurrency"], spec["concurrency"], call)
            with Meter() as meter:
                await _in_parallel(spec["n"], spec["concurrency"], call)
        return meter

    return asyncio.run(main())


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("profile"):
        # Where our async client's CPU goes (top functions by own time), for the report; modules
        # are imported first so that import time does not crowd the calls out of the profile.
        import aiohttp  # noqa: F401

        import airflow_provider_ice.api.client  # noqa: F401

        return {"profile": profile_top(_async, {**spec, "concurrency": 8}, limit=15)}
    kind = spec["client"]
    if kind == "sdk":
        meter = _sdk(spec)
    elif kind == "sync":
        meter = _sync(spec)
    elif kind.startswith("async-"):
        meter = _async({**spec, "concurrency": int(kind.split("-")[1])})
    elif kind == "bare-sync":
        meter = _bare_sync(spec)
    elif kind.startswith("bare-aiohttp-"):
        meter = _bare_aiohttp({**spec, "concurrency": int(kind.rsplit("-", 1)[1])})
    else:
        meter = _bare_httpx_aiohttp({**spec, "concurrency": int(kind.rsplit("-", 1)[1])})
    n = spec["n"]
    return {
        "calls_per_s": n / meter.wall_s,
        "cpu_us_per_call": meter.cpu_s / n * 1e6,
        "cpu_s": meter.cpu_s,
        "wall_s": meter.wall_s,
    }


def run(emulator: Any, *, smoke: bool) -> dict[str, Any]:
    """All clients x both actions; returns rows and the target ratios."""
    n = 30 if smoke else 2000
    emulator.control(
        "seed",
        {
            "agent_id": AGENT,
            "count": PAGE_SIZE,
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-02T00:00:00Z",
        },
    )
    instance_id = emulator.control("seed", {"agent_id": "bench-describe", "count": 1, "start": 1, "end": 2})[
        "first"
    ][0]
    rows: list[dict[str, Any]] = []
    for action in ACTIONS:
        for client, label in CLIENTS:
            spec = {
                "client": client,
                "action": action,
                "url": emulator.url,
                "n": n,
                "instance_id": instance_id,
            }
            # Two fresh processes per row, keep the cheaper: the shared machine only ever adds time.
            runs = [run_worker("benchmarks.signed_calls", spec) for _ in range(1 if smoke else 2)]
            result = min(runs, key=lambda r: r["cpu_us_per_call"])
            rows.append({"action": action, "client": client, "label": label, "runs": len(runs), **result})

    def cpu(action: str, client: str) -> float:
        return next(r["cpu_us_per_call"] for r in rows if r["action"] == action and r["client"] == client)

    ratios: dict[str, Any] = {}
    for action in ACTIONS:
        best_async = min(cpu(action, c) for c in ("async-1", "async-8", "async-32"))
        ratios[action] = {
            "async_cpu_vs_sdk_best": best_async / cpu(action, "sdk"),
            "async_cpu_vs_sdk_c32": cpu(action, "async-32") / cpu(action, "sdk"),
            "sync_cpu_vs_sdk": cpu(action, "sync") / cpu(action, "sdk"),
            "sync_overhead_vs_bare": cpu(action, "sync") / cpu(action, "bare-sync") - 1,
            "async8_overhead_vs_bare": cpu(action, "async-8") / cpu(action, "bare-aiohttp-8") - 1,
        }
    profile = run_worker(
        "benchmarks.signed_calls",
        {
            "profile": True,
            "action": "ListAIAgentInstance",
            "url": emulator.url,
            "n": n,
            "instance_id": instance_id,
        },
    )["profile"]
    return {"n": n, "page_size": PAGE_SIZE, "rows": rows, "ratios": ratios, "profile": profile}


if __name__ == "__main__":
    worker_main(worker)
