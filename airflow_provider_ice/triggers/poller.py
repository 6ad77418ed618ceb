"""Coalesced polling: one ListAIAgentInstance sweep per (connection, agent) serves every waiting trigger.

Naive waiting costs one request per waiting task per poll interval. A ListAIAgentInstance page holds
up to 100 instances of one agent, so all waits of a triggerer on one (connection, agent) share one
sweep per interval: about ``ceil(instances in window / 100)`` requests, whatever the number of tasks.

How it works:

* A trigger registers a :class:`Waiter` (``async with coalesced_wait(...) as waiter``) with the
  :class:`CoalescedPoller` of its ``(conn_id, agent_id)`` in the running event loop; the poller is
  created on the first registration and stops (closing its client) when its last waiter leaves.
  Pollers are keyed per event loop: the triggerer runs one loop, tests create many.
* Each sweep lists the window from the earliest waiter's ``window_start`` to now, pages of 100
  (the service returns newest first), matches every instance against the waiters by correlation id or
  ChannelId (:func:`~airflow_provider_ice.api.waiting.instance_matches`; the first, i.e. newest, match
  wins, as in :func:`~airflow_provider_ice.api.waiting.afind_instance`) and stops paging as soon as
  every waiter is matched.
* Each :class:`~.waiter.Waiter` receives a :class:`~.waiter.SweepResult`: the instance it matched
  as soon as the page holding it is read; at the end of the sweep, ``None`` when it is not in the
  window (the trigger keeps its not-found timeout), or the sweep's error (the trigger keeps its
  error tolerance). A waiter is only woken for news: a status it has not seen, not-found, or a
  failure (no wake-up for a repeated ``Created``/``Executing``).
* Poll interval: **the smallest ``poll_interval`` among the current waiters**, from the start of one
  sweep to the start of the next: no waiter is polled less often than it asked, and one with a
  longer interval gets fresher data for free.
* Waiters may join and leave at any time. A waiter joining during a sweep is served from the next one
  (its window may lie before pages already read); a leaving waiter is dropped from the sweep, and the
  sweep stops paging when nobody is left. Several triggerer processes simply run one poller each.
  A trigger restarted from its serialized kwargs just registers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api import params as ops
from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.api.errors import IceAuthError
from airflow_provider_ice.api.models import AIAgentInstance
from airflow_provider_ice.api.waiting import WINDOW_MARGIN, InstanceTarget
from airflow_provider_ice.triggers.waiter import Waiter

if TYPE_CHECKING:
    from airflow_provider_ice.api.client import AsyncIceClient

log = logging.getLogger(__name__)

#: Creates a new async client from a fresh lookup of the connection; the poller owns (and closes) it.
ClientFactory = Callable[[], Awaitable["AsyncIceClient"]]

#: A poller looks its connection up again (a new client from its factory) at least this often, so
#: rotated credentials (STS tokens, a changed secret) are picked up before they fail a sweep.
CLIENT_MAX_AGE = 300.0

PAGE_SIZE = 100
#: The service accepts PageNumber 1..100.
MAX_PAGES = 100
#: Pages of one sweep requested at once (see CoalescedPoller._list).
PREFETCH_PAGES = 4


class CoalescedPoller:
    """Sweeps ListAIAgentInstance for all waiters on one (connection, agent) in one event loop.

    Use :func:`get_poller` or :func:`coalesced_wait` rather than constructing it directly.

    :param conn_id: the Airflow connection id (part of the key only).
    :param agent_id: the agent whose instances are listed.
    :param client_factory: coroutine function returning the async client used until the poller stops.
    :param page_size: ListAIAgentInstance page size (100 is the service maximum).
    """

    def __init__(
        self, conn_id: str, agent_id: str, client_factory: ClientFactory, *, page_size: int = PAGE_SIZE
    ) -> None:
        self.conn_id = conn_id
        self.agent_id = agent_id
        self.page_size = page_size
        #: The latest registrant's factory (see :func:`get_poller`).
        self.client_factory = client_factory
        self._client: AsyncIceClient | None = None
        self._client_born = 0.0
        self.clients_built = 0  # connection lookups, for tests
        self._waiters: dict[int, Waiter] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sweep_remaining: set[int] | None = None
        self._pages_hint = 1  # pages the previous sweep read
        self.sweeps = 0
        self.requests = 0  # pages requested, for tests and benchmarks

    @property
    def key(self) -> tuple[str, str]:
        return (self.conn_id, self.agent_id)

    @property
    def waiter_count(self) -> int:
        return len(self._waiters)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def register(self, waiter: Waiter) -> Waiter:
        """Add a waiter; it is served from the next sweep that starts after this call."""
        waiter.attach(self.unregister)
        self._waiters[id(waiter)] = waiter
        self._changed.set()  # a shorter poll_interval may move the next sweep earlier
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"ice-coalesced-poller:{self.conn_id}:{self.agent_id}"
            )
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        """Drop a waiter (also from a sweep under way); the poller stops when none is left."""
        self._waiters.pop(id(waiter), None)
        if self._sweep_remaining is not None:
            self._sweep_remaining.discard(id(waiter))
        if not self._waiters:
            self._changed.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # Let triggers started in the same batch register before the first sweep.
            await asyncio.sleep(0)
            while self._waiters:
                started = loop.time()
                await self._sweep()
                while self._waiters:
                    interval = min(w.poll_interval for w in self._waiters.values())
                    delay = started + interval - loop.time()
                    if delay <= 0:
                        break
                    self._changed.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), delay)
        except Exception as exc:  # a bug here must not leave triggers waiting forever
            log.exception("Coalesced poller for agent %s stopped unexpectedly", self.agent_id)
            for waiter in list(self._waiters.values()):
                waiter.offer(None, exc)
        finally:
            # No await between the emptiness check above and leaving the registry: a waiter
            # registering from now on gets a fresh poller.
            _forget(self)
            await self._drop_client()

    async def _current_client(self) -> AsyncIceClient:
        """Return the client, rebuilt from a fresh connection lookup when older than ``CLIENT_MAX_AGE``."""
        if self._client is not None and time.monotonic() - self._client_born > CLIENT_MAX_AGE:
            await self._drop_client()
        if self._client is None:
            self._client = await self.client_factory()
            self._client_born = time.monotonic()
            self.clients_built += 1
        return self._client

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _sweep(self) -> None:
        snapshot = dict(self._waiters)
        by_correlation: dict[str, list[Waiter]] = {}
        by_channel: dict[str, list[Waiter]] = {}
        for waiter in snapshot.values():
            if waiter.correlation_id:
                by_correlation.setdefault(waiter.correlation_id, []).append(waiter)
            else:
                by_channel.setdefault(waiter.channel_id or "", []).append(waiter)
        window_start = min(w.window_start for w in snapshot.values())
        remaining = set(snapshot)
        self._sweep_remaining = remaining
        matched: dict[int, AIAgentInstance] = {}
        error: Exception | None = None
        self.sweeps += 1
        try:
            try:
                await self._match(window_start, by_correlation, by_channel, matched, remaining)
            except IceAuthError:
                # Credentials may have rotated (STS) since the client was built: look the
                # connection up again and sweep once more before anyone sees a failure.
                log.info(
                    "ListAIAgentInstance refused the credentials of %s; looking it up again", self.conn_id
                )
                await self._drop_client()
                await self._match(window_start, by_correlation, by_channel, matched, remaining)
        except Exception as exc:
            error = exc
            log.warning(
                "ListAIAgentInstance sweep for agent %s failed (%d waiters): %s",
                self.agent_id,
                len(snapshot),
                type(exc).__name__,
            )
            if isinstance(exc, IceAuthError):
                await self._drop_client()  # the next sweep looks the connection up again
        finally:
            self._sweep_remaining = None
        for wid, waiter in snapshot.items():
            if wid in self._waiters and wid not in matched:  # matched ones had theirs from _match
                waiter.offer(None, error)

    async def _match(
        self,
        window_start: datetime,
        by_correlation: dict[str, list[Waiter]],
        by_channel: dict[str, list[Waiter]],
        matched: dict[int, AIAgentInstance],
        remaining: set[int],
    ) -> None:
        """Page the window into ``matched`` (waiter id -> newest match) until nobody remains."""
        async with contextlib.aclosing(self._list(window_start)) as listing:
            async for item in listing:
                # Raw entries: a model is built only for the few that may be someone's (parsing
                # every entry of a page dominated a sweep's client CPU; see benchmarks/).
                candidates: list[Waiter] = []
                instance = item if isinstance(item, AIAgentInstance) else None
                if by_correlation:
                    user_data = item.user_data if isinstance(item, AIAgentInstance) else item.get("UserData")
                    cid = correlation_id_of(user_data) if isinstance(user_data, str) else None
                    candidates += by_correlation.get(cid or "", ())
                if by_channel:
                    # ChannelId may sit in a per-scenario sub-object: let the model resolve it.
                    instance = instance or AIAgentInstance.model_validate(item)
                    candidates += by_channel.get(instance.channel_id or "", ())
                for waiter in candidates:
                    wid = id(waiter)
                    if wid in matched:
                        continue
                    if instance is None:
                        instance = AIAgentInstance.model_validate(item)
                    if waiter.matches(instance):
                        matched[wid] = instance
                        remaining.discard(wid)
                        if wid in self._waiters:
                            # Delivered as its page is read, not when the sweep ends: a sweep of
                            # many pages (paced by the account's quota) adds nothing to the latency.
                            waiter.offer(instance, None)
                if not remaining:
                    break  # everyone matched, or everyone left

    async def _list(self, window_start: datetime) -> AsyncGenerator[dict[str, Any] | AIAgentInstance, None]:
        client = await self._current_client()
        # The same margin as a single trigger's window: StartTime/EndTime semantics are undocumented
        # and clocks drift.
        start, end = ops.list_window(
            self.agent_id, window_start, datetime.now(timezone.utc) + WINDOW_MARGIN, self.page_size
        )

        def fetch(number: int) -> asyncio.Future[dict[str, Any]]:
            self.requests += 1
            params = ops.list_params(self.agent_id, start, end, self.page_size, number)
            return asyncio.ensure_future(client.call_api(ops.LIST_INSTANCES, params))

        # Paged by hand (not client.list_ai_agent_instances) to stop as soon as every waiter is
        # matched, on raw pages (call_api: same signing and retries) to parse only what matches.
        # Pages are consumed in order, but up to PREFETCH_PAGES of the pages the previous sweep
        # needed are requested ahead, so the client's work overlaps the service's; speculation never
        # goes past that count, so it wastes at most PREFETCH_PAGES - 1 requests when the need shrinks.
        inflight: dict[int, asyncio.Future[dict[str, Any]]] = {}
        page, ahead = 1, 1
        try:
            while page <= MAX_PAGES:
                while ahead <= min(self._pages_hint, MAX_PAGES) and len(inflight) < PREFETCH_PAGES:
                    inflight[ahead] = fetch(ahead)
                    ahead += 1
                if page not in inflight:
                    inflight[page] = fetch(page)
                    ahead = max(ahead, page + 1)
                items = ops.listed_instances(await inflight.pop(page))
                for item in items:
                    yield item
                if len(items) < self.page_size:
                    return
                page += 1
        finally:
            self._pages_hint = max(1, min(page, MAX_PAGES))
            for future in inflight.values():
                future.cancel()
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: an unused page's error is not an error
        # Page 100 was full: the window holds more than one listing can reach. The client knows how
        # to split the window (rare: over 10,000 instances of one agent since the oldest wait began).
        async for instance in client.list_ai_agent_instances(
            self.agent_id, start_time=start, end_time=end, page_size=self.page_size
        ):
            yield instance


# Keyed per event loop: a poller's task, events and client belong to the loop that created them.
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], CoalescedPoller]] = (
    weakref.WeakKeyDictionary()
)


def _forget(poller: CoalescedPoller) -> None:
    for pollers in list(_POLLERS.values()):
        if pollers.get(poller.key) is poller:
            del pollers[poller.key]


def get_poller(conn_id: str, agent_id: str, client_factory: ClientFactory) -> CoalescedPoller:
    """Return the running loop's poller for ``(conn_id, agent_id)``, created on first use."""
    pollers = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    poller = pollers.get((conn_id, agent_id))
    if poller is None:
        poller = pollers[(conn_id, agent_id)] = CoalescedPoller(conn_id, agent_id, client_factory)
    else:
        poller.client_factory = client_factory  # the newest registrant's: it rebuilds the client next
    return poller


def active_pollers() -> list[CoalescedPoller]:
    """Return the running loop's pollers (for diagnostics, tests and benchmarks)."""
    return list(_POLLERS.get(asyncio.get_running_loop(), {}).values())


@contextlib.asynccontextmanager
async def coalesced_wait(
    *, conn_id: str, target: InstanceTarget, client_factory: ClientFactory, poll_interval: float
) -> AsyncIterator[Waiter]:
    """Register a waiter for the body of the ``async with`` and unregister it on exit or cancellation.

    :param conn_id: Airflow connection id (with the target's agent, the poller's key).
    :param target: the instance to wait for, found in the listing (by correlation id and/or ChannelId).
    :param client_factory: creates the poller's async client if this waiter starts the poller.
    :param poll_interval: see :class:`Waiter`.
    """
    waiter = Waiter(
        correlation_id=target.correlation_id,
        channel_id=target.channel_id,
        window_start=target.window_start,
        poll_interval=poll_interval,
    )
    get_poller(conn_id, target.agent_id, client_factory).register(waiter)
    try:
        yield waiter
    finally:
        waiter.leave()
