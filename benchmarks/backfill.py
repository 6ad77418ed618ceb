"""Benchmark 3: backfill one day of sessions: list, download every call log, compute the analytics.

Ours: the analytics operator's internals called directly (no Airflow): the async client's listing
(window splitting past 10,000), :class:`SessionCollector` with bounded concurrency over the pooled
async call-log downloader, each session streamed to a JSON-lines file and into
:class:`IntervalSummary`. Baseline: :mod:`benchmarks.baseline_sdk_backfill` (official SDK listing,
sequential ``requests`` downloads). Each client runs in its own process (clean peak RSS), twice:
plain loopback, and with the emulator adding 30 ms to every API call and call-log download.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import ACCESS_KEY_ID, ACCESS_KEY_SECRET, Meter, peak_rss_mb, run_worker, worker_main

DAY = "2026-01-01"
CONCURRENCY = 32
LATENCY_S = 0.030


async def _ours(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_ice.analytics.collect import SessionCollector
    from airflow_provider_ice.analytics.metrics import SessionMetrics
    from airflow_provider_ice.analytics.summary import IntervalSummary
    from airflow_provider_ice.api.client import AsyncIceClient
    from airflow_provider_ice.api.download import AsyncCallLogDownloader
    from airflow_provider_ice.api.signing import Credentials

    start = datetime.fromisoformat(spec["day"]).replace(tzinfo=timezone.utc)
    end = start + timedelta(days=1)
    agent_ids = [spec["agent_id"]]
    summary = IntervalSummary(start=start.isoformat(), end=end.isoformat(), agent_ids=agent_ids)
    with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "sessions.jsonl"), "w") as out:

        def emit(session: SessionMetrics) -> None:
            out.write(json.dumps(session.to_dict(), sort_keys=True, separators=(",", ":")) + "\n")
            summary.add(session)

        async with (
            AsyncIceClient(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET), endpoint=spec["url"]) as client,
            AsyncCallLogDownloader(allow_http=True) as downloader,
        ):
            collector = SessionCollector(
                client,
                downloader,
                agent_ids=agent_ids,
                start=start,
                end=end,
                emit=emit,
                concurrency=spec["concurrency"],
            )
            stats = await collector.run()
    return {"sessions": summary.sessions, "downloaded_bytes": stats.downloaded_bytes}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    with Meter() as meter:
        result = asyncio.run(_ours(spec))
    return {**result, "cpu_s": meter.cpu_s, "wall_s": meter.wall_s, "peak_rss_mb": peak_rss_mb()}


def _measure(module: str, emulator: Any, agent_id: str, n: int, latency: float) -> dict[str, Any]:
    spec = {"url": emulator.url, "agent_id": agent_id, "day": DAY, "concurrency": CONCURRENCY}
    result = run_worker(module, spec)
    if result["sessions"] != n:
        raise RuntimeError(f"{module} collected {result['sessions']} sessions, expected {n}")
    return {
        "client": "ours" if module == "benchmarks.backfill" else "baseline (SDK + requests)",
        "instances": n,
        "latency_ms": latency * 1000,
        "sessions_per_s": n / result["wall_s"],
        "cpu_ms_per_session": result["cpu_s"] / n * 1000,
        "peak_rss_mb": result["peak_rss_mb"],
        "wall_s": result["wall_s"],
        "extrapolated": False,
    }


def run(emulator: Any, *, smoke: bool) -> dict[str, Any]:
    sizes = (50, 200) if smoke else (1000, 10000)
    # The sequential baseline at 10,000 sessions x 30 ms would take ~6 minutes alone: it is measured
    # at the small size with latency, and its 10,000 figure is extrapolated (sequential: linear).
    baseline_latency_sizes = sizes[:1]
    rows: list[dict[str, Any]] = []
    for latency in (0.0, LATENCY_S):
        emulator.control("faults?replace=1", {"latency": latency})
        for n in sizes:
            agent_id = f"bench-backfill-{n}"
            if latency == 0.0:
                emulator.control(
                    "seed",
                    {
                        "agent_id": agent_id,
                        "count": n,
                        "start": f"{DAY}T00:00:00Z",
                        "end": f"{DAY}T23:59:59Z",
                    },
                )
            rows.append(_measure("benchmarks.backfill", emulator, agent_id, n, latency))
            if latency == 0.0 or n in baseline_latency_sizes:
                rows.append(_measure("benchmarks.baseline_sdk_backfill", emulator, agent_id, n, latency))
            else:
                small = next(r for r in rows if r["client"] != "ours" and r["latency_ms"] == latency * 1000)
                rows.append(
                    {
                        **small,
                        "instances": n,
                        "peak_rss_mb": None,
                        "extrapolated": True,
                        "wall_s": n / small["sessions_per_s"],
                    }
                )
    emulator.control("faults?replace=1", {})

    def row(client: str, n: int, latency: float) -> dict[str, Any]:
        return next(
            r
            for r in rows
            if (r["client"] == "ours") == (client == "ours")
            and r["instances"] == n
            and r["latency_ms"] == latency * 1000
        )

    big, small = sizes[-1], sizes[0]
    ratios = {
        f"speedup_with_latency_{n}": row("ours", n, LATENCY_S)["sessions_per_s"]
        / row("base", n, LATENCY_S)["sessions_per_s"]
        for n in sizes
    }
    ratios.update(
        {
            f"speedup_loopback_{n}": row("ours", n, 0.0)["sessions_per_s"]
            / row("base", n, 0.0)["sessions_per_s"]
            for n in sizes
        }
    )
    ratios["cpu_per_session_vs_baseline"] = (
        row("ours", big, 0.0)["cpu_ms_per_session"] / row("base", big, 0.0)["cpu_ms_per_session"]
    )
    ratios["rss_growth_ours"] = row("ours", big, 0.0)["peak_rss_mb"] / row("ours", small, 0.0)["peak_rss_mb"]
    ratios["rss_growth_baseline"] = (
        row("base", big, 0.0)["peak_rss_mb"] / row("base", small, 0.0)["peak_rss_mb"]
    )
    return {"concurrency": CONCURRENCY, "rows": rows, "ratios": ratios}


if __name__ == "__main__":
    worker_main(worker)
