"""SessionCollector with a scripted listing and storage: order, duplicates, bounded work, failures."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_ice.analytics.collect import SessionCollector, collect_to_jsonl
from airflow_provider_ice.analytics.metrics import SessionMetrics
from airflow_provider_ice.api.download import AsyncCallLogDownloader
from airflow_provider_ice.api.errors import IceServerError
from airflow_provider_ice.api.models import AIAgentInstance
from tests.unit.api.fakes import streamed

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
END = START + timedelta(days=1)


def instance(n: int, status: str = "Finished") -> AIAgentInstance:
    return AIAgentInstance.model_validate(
        {
            "Status": status,
            "RuntimeConfig": {"ChannelId": f"ch-{n}"},
            "UserData": json.dumps({"AirflowCorrelationId": f"af-{n}"}),
            "CallLogUrl": f"https://oss.example.com/{n}.json?Signature=s{n}" if status == "Finished" else "",
        }
    )


class Lister:
    def __init__(self, items: list[AIAgentInstance], fail_after: int | None = None) -> None:
        self.items = items
        self.fail_after = fail_after
        self.calls = 0

    async def list_ai_agent_instances(
        self, agent_id: str, *, start_time: Any = None, end_time: Any = None, page_size: int = 100
    ) -> AsyncIterator[AIAgentInstance]:
        self.calls += 1
        for n, item in enumerate(self.items):
            if self.fail_after is not None and n == self.fail_after:
                raise IceServerError("boom", code="InternalError", http_status=500)
            yield item


def storage(in_flight: list[int], peak: list[int]) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.strip("/").split(".")[0])
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.02 * (n % 3))  # later items often finish first
        in_flight[0] -= 1
        body = {
            "InstanceId": f"i-{n}",
            "Turns": [{"Role": "user", "EndMs": 100}, {"Role": "agent", "BeginMs": 350}],
        }
        return streamed(200, body)

    return httpx.MockTransport(handler)


async def test_sessions_come_out_in_listing_order_with_bounded_concurrency_and_no_duplicates() -> None:
    items = [instance(n) for n in range(30)] + [instance(5)] + [instance(99, "Executing")]
    in_flight, peak = [0], [0]
    out = io.StringIO()
    async with AsyncCallLogDownloader(transport=storage(in_flight, peak)) as downloader:
        summary, stats = await collect_to_jsonl(
            Lister(items), downloader, out, agent_ids=["a"], start=START, end=END, concurrency=4
        )
    sessions = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [s["channel_id"] for s in sessions] == [f"ch-{n}" for n in range(30)] + ["ch-99"]
    assert [s["instance_id"] for s in sessions[:3]] == ["i-0", "i-1", "i-2"]
    assert sessions[0]["first_response_latency_ms"] == 250.0
    assert stats.listed == 32
    assert stats.duplicates == 1
    assert stats.downloaded == 30
    assert 1 < peak[0] <= 4
    assert summary.sessions == 31
    assert [p["channel_id"] for p in summary.pending] == ["ch-99"]


async def test_distinct_sessions_sharing_a_channel_are_kept_and_only_true_repeats_dropped() -> None:
    def entry(n: int, status: str = "Finished", signature: str = "first") -> AIAgentInstance:
        # Three agents in one ARTC channel with the same UserData: three sessions, not one.
        runtime = {"ChannelId": "shared-room", "AgentUserId": f"agent-{n}", "AuthToken": f"token-{n}"}
        url = f"https://oss.example.com/{n}.json?Signature={signature}" if status == "Finished" else ""
        return AIAgentInstance.model_validate(
            {"Status": status, "RuntimeConfig": runtime, "UserData": "same-payload", "CallLogUrl": url}
        )

    # Page shifts repeat entries 2 and 1, finished meanwhile with a freshly signed URL.
    items = [
        entry(1, "Executing"),
        entry(2),
        entry(3),
        entry(2, signature="again"),
        entry(1, signature="new"),
    ]
    out = io.StringIO()
    async with AsyncCallLogDownloader(transport=storage([0], [0])) as downloader:
        summary, stats = await collect_to_jsonl(
            Lister(items), downloader, out, agent_ids=["a"], start=START, end=END
        )
    sessions = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [s["instance_id"] for s in sessions] == [None, "i-2", "i-3"]  # i-1 was pending when first seen
    assert [s["status"] for s in sessions] == ["Executing", "Finished", "Finished"]
    assert (stats.listed, stats.duplicates, stats.downloaded) == (5, 2, 2)
    assert summary.sessions == 3


async def test_a_listing_error_fails_the_run_instead_of_hanging() -> None:
    emitted: list[SessionMetrics] = []
    async with AsyncCallLogDownloader(transport=storage([0], [0])) as downloader:
        collector = SessionCollector(
            Lister([instance(n) for n in range(50)], fail_after=20),
            downloader,
            agent_ids=["a"],
            start=START,
            end=END,
            emit=emitted.append,
            concurrency=2,
        )
        with pytest.raises(IceServerError, match="boom"):
            await asyncio.wait_for(collector.run(), timeout=10)


async def test_refused_urls_are_retried_after_one_fresh_listing() -> None:
    refused: set[str] = set()

    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path not in refused:  # every first URL is refused, as an expired one would be
            refused.add(path)
            return streamed(403, b"<Error><Code>AccessDenied</Code><Message>expired</Message></Error>")
        return streamed(200, {"Turns": []})

    lister = Lister([instance(n) for n in range(10)])
    out = io.StringIO()
    async with AsyncCallLogDownloader(transport=httpx.MockTransport(handler)) as downloader:
        summary, stats = await collect_to_jsonl(
            lister, downloader, out, agent_ids=["a"], start=START, end=END
        )
    assert lister.calls == 2  # the main pass and one refresh listing for all ten
    assert stats.refreshed == 10
    assert summary.with_call_log == 10
    assert stats.download_failures == []


async def test_persistent_refusal_is_reported_as_a_download_failure() -> None:
    transport = httpx.MockTransport(lambda _r: streamed(403, b"denied"))
    lister = Lister([instance(1), instance(2)])
    out = io.StringIO()
    async with AsyncCallLogDownloader(transport=transport) as downloader:
        summary, stats = await collect_to_jsonl(
            lister, downloader, out, agent_ids=["a"], start=START, end=END, max_url_refreshes=2
        )
    assert lister.calls == 3
    assert [f["channel_id"] for f in stats.download_failures] == ["ch-1", "ch-2"]
    assert summary.to_dict()["call_log_error_count"] == 2
    assert "Signature" not in out.getvalue()


async def test_a_slow_download_holds_back_at_most_a_bounded_window() -> None:
    started_while_slow: list[int] = []
    slow_done = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.strip("/").split(".")[0])
        if n == 0:
            await asyncio.sleep(0.5)  # e.g. a download backing off
            slow_done.set()
        elif not slow_done.is_set():
            started_while_slow.append(n)
        return streamed(200, {"Turns": []})

    emitted: list[SessionMetrics] = []
    async with AsyncCallLogDownloader(transport=httpx.MockTransport(handler)) as downloader:
        collector = SessionCollector(
            Lister([instance(n) for n in range(100)]),
            downloader,
            agent_ids=["a"],
            start=START,
            end=END,
            emit=emitted.append,
            concurrency=2,
        )
        await collector.run()
    assert [s.channel_id for s in emitted] == [f"ch-{n}" for n in range(100)]
    # Only items inside the window (4 x concurrency) ran ahead of the slow one.
    assert 0 < len(started_while_slow) < 8
