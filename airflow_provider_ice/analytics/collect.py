"""List every instance of an interval and turn each into a :class:`SessionMetrics`, concurrently.

No Airflow import: it takes an :class:`~airflow_provider_ice.api.client.AsyncIceClient` (or anything
with its ``list_ai_agent_instances`` async iterator) and an
:class:`~airflow_provider_ice.api.download.AsyncCallLogDownloader`.

Memory stays bounded whatever the size of the interval: the listing is consumed through a bounded
queue by ``concurrency`` workers, each holding at most one call log (``max_bytes``); finished
sessions are handed to ``emit`` in listing order through a reorder window of at most four times
``concurrency`` sessions. Only a 16-byte digest per session is remembered, to drop the entries a
listing repeats when instances are created while it is being paged (:func:`session_key`: only true
repeats; distinct sessions that share a channel or a UserData are all kept). What was dropped is
counted in :attr:`CollectStats.duplicates`.

Call-log URLs that the storage refuses (expired) and bodies that do not parse (e.g. truncated) are
retried after the main pass with fresh URLs from one new listing of the interval, up to
``max_url_refreshes`` rounds, instead of re-listing the interval once per session.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol

from airflow_provider_ice.analytics.metrics import SessionMetrics, session_metrics
from airflow_provider_ice.analytics.summary import IntervalSummary
from airflow_provider_ice.api.call_log import parse_call_log
from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.api.download import AsyncCallLogDownloader
from airflow_provider_ice.api.errors import CallLogDownloadError, CallLogFormatError, call_log_failure
from airflow_provider_ice.api.models import AIAgentInstance

log = logging.getLogger(__name__)

#: A digest of what identifies one instance in a listing (see :func:`session_key`).
SessionKey = bytes


class InstanceLister(Protocol):
    """What the collector needs from :class:`~airflow_provider_ice.api.client.AsyncIceClient`."""

    def list_ai_agent_instances(
        self, agent_id: str, *, start_time: Any = None, end_time: Any = None, page_size: int = 100
    ) -> AsyncIterator[AIAgentInstance]: ...


@dataclass
class CollectStats:
    """What happened while collecting (for logs and the task's return value)."""

    # Counters of the collection itself; IntervalSummary (summary.py) counts the sessions.
    listed: int = 0
    duplicates: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    refreshed: int = 0
    #: Sessions whose download kept failing for transient reasons (5xx, throttling, expired URLs).
    download_failures: list[dict[str, Any]] = field(default_factory=list)


def session_key(agent_id: str, instance: AIAgentInstance) -> SessionKey:
    """Return what makes a listed entry *this* instance, as a 16-byte digest.

    ListAIAgentInstance gives no InstanceId, and distinct sessions may share a ChannelId, a
    correlation id or a UserData (several agents in one ARTC channel, a rerun with the same
    payload). An entry is therefore identified by everything it carries that does not change while
    it is listed: the channel, the agent's user id and AuthToken (issued per instance), the
    UserData, the InstanceId and creation time when present. Status and CallLogUrl are left out:
    they change between two pages of one listing (Executing, then Finished with a fresh signed URL),
    which is exactly how a page shift repeats an entry.
    """
    runtime = instance.runtime_config.resolved()
    token = runtime.auth_token.get_secret_value() if runtime.auth_token is not None else ""
    created = instance.gmt_create.isoformat() if instance.gmt_create is not None else ""
    parts = (
        agent_id,
        instance.instance_id or "",
        runtime.channel_id or "",
        runtime.agent_user_id or "",
        token,
        instance.user_data or "",
        created,
    )
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()


def _identifiable(instance: AIAgentInstance) -> bool:
    """Return whether a new listing can find this entry again (it carries anything but its status)."""
    runtime = instance.runtime_config.resolved()
    return bool(instance.instance_id or runtime.channel_id or runtime.auth_token or instance.user_data)


@dataclass
class _Work:
    seq: int
    agent_id: str
    instance: AIAgentInstance


@dataclass(eq=False, repr=False)
class SessionCollector:
    """Collect the sessions of ``[start, end)`` for ``agent_ids``; see the module docstring.

    :param client: the async ICE client.
    :param downloader: the async call-log downloader (shared: pooled connections).
    :param agent_ids: the agents to list.
    :param start: interval start (inclusive).
    :param end: interval end (exclusive).
    :param emit: called with each session, in listing order (retried ones after the main pass).
    :param concurrency: downloads in flight at once.
    :param max_url_refreshes: rounds of fresh URLs for refused URLs and unparsable bodies.
    :param page_size: ListAIAgentInstance page size (1-100).
    """

    client: InstanceLister
    downloader: AsyncCallLogDownloader
    _: KW_ONLY
    agent_ids: Sequence[str]
    start: datetime
    end: datetime
    emit: Callable[[SessionMetrics], None]
    concurrency: int = 8
    max_url_refreshes: int = 2
    page_size: int = 100
    stats: CollectStats = field(init=False, default_factory=CollectStats)
    _seen: set[SessionKey] = field(init=False, default_factory=set)
    _retry: dict[SessionKey, tuple[str, AIAgentInstance, str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency: must be at least 1, got {self.concurrency!r}")
        self.agent_ids = list(self.agent_ids)

    async def run(self) -> CollectStats:
        await self._pass(self._listing(first=True))
        for _round in range(self.max_url_refreshes):
            if not self._retry:
                break
            log.info("Fetching fresh call-log URLs for %d session(s)", len(self._retry))
            self.stats.refreshed += len(self._retry)
            await self._pass(self._listing(first=False))
        # What is still failing after every round is written with its error.
        for agent_id, instance, error in self._retry.values():  # in listing order
            transient = not error.startswith("invalid:")
            message = error.removeprefix("invalid:").removeprefix("transient:")
            if transient:
                self.stats.download_failures.append(_failure(agent_id, instance, message))
            self.emit(session_metrics(instance, None, agent_id=agent_id, call_log_error=message))
        return self.stats

    async def _listing(self, *, first: bool) -> AsyncIterator[tuple[str, AIAgentInstance]]:
        pending = dict(self._retry)
        for agent_id in self.agent_ids:
            if not first and not any(agent == agent_id for agent, _, _ in pending.values()):
                continue
            async for instance in self.client.list_ai_agent_instances(
                agent_id, start_time=self.start, end_time=self.end, page_size=self.page_size
            ):
                key = session_key(agent_id, instance)
                if first:
                    self.stats.listed += 1
                    if key in self._seen:
                        self.stats.duplicates += 1
                        continue
                    self._seen.add(key)
                    yield agent_id, instance
                elif key in pending:
                    del pending[key]
                    del self._retry[key]
                    yield agent_id, instance
        # Sessions that vanished from the listing keep their last error.
        self._retry.update(pending)

    async def _pass(self, items: AsyncIterator[tuple[str, AIAgentInstance]]) -> None:
        queue: asyncio.Queue[_Work | None] = asyncio.Queue(maxsize=self.concurrency * 2)
        done: dict[int, SessionMetrics | None] = {}
        next_seq = 0

        def flush() -> None:
            nonlocal next_seq
            while next_seq in done:
                result = done.pop(next_seq)
                if result is not None:
                    self.emit(result)
                next_seq += 1

        # Sessions finished ahead of a slow one wait in ``done``; a worker does not start an item
        # more than ``window`` places ahead of the oldest unwritten one, so ``done`` stays small
        # even while one download is backing off. The oldest item itself is never held back.
        window = self.concurrency * 4
        in_window = asyncio.Condition()

        async def worker() -> None:
            while (work := await queue.get()) is not None:
                async with in_window:
                    await in_window.wait_for(lambda: work.seq - next_seq < window)
                done[work.seq] = await self._session(work.agent_id, work.instance)
                flush()
                async with in_window:
                    in_window.notify_all()

        async def produce() -> None:
            seq = 0
            async for agent_id, instance in items:
                await queue.put(_Work(seq, agent_id, instance))
                seq += 1
            for _ in range(self.concurrency):
                await queue.put(None)

        # One failing task (a listing error, a bug) fails the pass at once and cancels the others,
        # rather than leaving the producer blocked on a full queue.
        tasks = [asyncio.create_task(produce())]
        tasks += [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        flush()

    async def _session(self, agent_id: str, instance: AIAgentInstance) -> SessionMetrics | None:
        """Return the session's metrics, or None when it is set aside for a fresh URL."""
        status = instance.status
        if status is None or not status.is_terminal or instance.call_log_url is None:
            return session_metrics(instance, None, agent_id=agent_id)  # pending
        buffer = io.BytesIO()
        key = session_key(agent_id, instance)
        try:
            result = await self.downloader.download(instance.call_log_url, buffer)
            call_log = parse_call_log(buffer.getvalue())
        except (CallLogDownloadError, CallLogFormatError) as err:
            failure = call_log_failure(err)
            if failure == "refused":
                return session_metrics(instance, None, agent_id=agent_id, call_log_error=str(err))
            kind = "invalid" if failure == "damaged" else "transient"
            return self._set_aside(key, agent_id, instance, f"{kind}:{err}")
        self.stats.downloaded += 1
        self.stats.downloaded_bytes += result.bytes
        return session_metrics(instance, call_log, agent_id=agent_id)

    def _set_aside(
        self, key: SessionKey, agent_id: str, instance: AIAgentInstance, error: str
    ) -> SessionMetrics | None:
        kind, message = error.split(":", 1)
        if not _identifiable(instance):
            # Nothing identifies it in a new listing: record the error now.
            if kind == "transient":
                self.stats.download_failures.append(_failure(agent_id, instance, message))
            return session_metrics(instance, None, agent_id=agent_id, call_log_error=message)
        self._retry[key] = (agent_id, instance, error)
        return None


def _failure(agent_id: str, instance: AIAgentInstance, message: str) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "channel_id": instance.channel_id,
        "correlation_id": correlation_id_of(instance.user_data or "") or None,
        "error": message,
    }


def session_line(session: SessionMetrics) -> str:
    """One ``sessions.jsonl`` line: compact JSON with sorted keys (stable across reruns)."""
    return json.dumps(session.to_dict(), sort_keys=True, separators=(",", ":")) + "\n"


async def collect_to_jsonl(
    client: InstanceLister,
    downloader: AsyncCallLogDownloader,
    out: IO[str],
    *,
    agent_ids: Sequence[str],
    start: datetime,
    end: datetime,
    **settings: Any,
) -> tuple[IntervalSummary, CollectStats]:
    """Collect ``[start, end)``, writing each session as a JSON line to ``out``; returns the summary.

    ``settings`` are :class:`SessionCollector`'s keyword arguments (concurrency, page_size, ...).
    """
    summary = IntervalSummary(start=start.isoformat(), end=end.isoformat(), agent_ids=list(agent_ids))

    def emit(session: SessionMetrics) -> None:
        out.write(session_line(session))
        summary.add(session)

    collector = SessionCollector(
        client, downloader, agent_ids=agent_ids, start=start, end=end, emit=emit, **settings
    )
    return summary, await collector.run()
