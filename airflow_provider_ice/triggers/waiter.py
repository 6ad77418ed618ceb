"""One trigger's registration with the shared sweep, and what a sweep tells it.

A :class:`Waiter` is what :class:`~.poller.CoalescedPoller` serves: the identifiers to match, the
window, the poll interval, and a mailbox that wakes the trigger only when a sweep brings news.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from airflow_provider_ice.api.validation import positive_seconds
from airflow_provider_ice.api.waiting import instance_matches

if TYPE_CHECKING:
    from airflow_provider_ice.api.models import AIAgentInstance


@dataclass(frozen=True)
class SweepResult:
    """What one sweep saw for one waiter.

    :param instance: the matching instance, or None when it was not in the window (and no error).
    :param error: the exception that made the sweep fail before this waiter was matched, or None.
    :param consecutive_failures: failed sweeps in a row for this waiter, this one included (0 on success).
    """

    instance: AIAgentInstance | None
    error: Exception | None = None
    consecutive_failures: int = 0

    @property
    def failed(self) -> bool:
        """Return True when the sweep failed before this waiter was matched."""
        return self.error is not None

    @property
    def found(self) -> bool:
        """Return True when the sweep found this waiter's instance."""
        return self.instance is not None


class Waiter:
    """One trigger's registration with a :class:`CoalescedPoller`.

    :param correlation_id: the correlation id in the instance's UserData, if known.
    :param channel_id: the instance's ChannelId, if known (at least one of the two is required).
    :param window_start: aware datetime; the instance was created after it.
    :param poll_interval: seconds; the poller sweeps at least this often while this waiter is registered.
    """

    def __init__(
        self,
        *,
        correlation_id: str | None,
        channel_id: str | None,
        window_start: datetime,
        poll_interval: float,
    ) -> None:
        if not correlation_id and not channel_id:
            raise ValueError("Waiter: give correlation_id, channel_id or both")
        if window_start.tzinfo is None:
            raise ValueError("Waiter: window_start must be timezone-aware")
        self.correlation_id = correlation_id
        self.channel_id = channel_id
        self.window_start = window_start
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self._pending: SweepResult | None = None
        self._ready = asyncio.Event()
        self._last_status: str | None = None
        self._failures = 0
        self._unregister: Callable[[Waiter], None] | None = None

    def matches(self, instance: AIAgentInstance) -> bool:
        """Return True when ``instance`` is the one this waiter waits for."""
        return instance_matches(instance, correlation_id=self.correlation_id, channel_id=self.channel_id)

    def attach(self, unregister: Callable[[Waiter], None]) -> None:
        """Record the poller's ``unregister``, called by :meth:`leave`; a waiter joins one poller once."""
        if self._unregister is not None:
            raise RuntimeError("Waiter is already registered")
        self._unregister = unregister

    def offer(self, instance: AIAgentInstance | None, error: Exception | None) -> None:
        """Record a sweep's result (called by the poller); wake the waiter only when it carries news."""
        if error is not None:
            self._failures += 1
            self._last_status = None
            self._deliver(SweepResult(None, error, self._failures))
            return
        self._failures = 0
        status = None if instance is None else str(instance.status)
        if instance is not None and status == self._last_status:
            return  # still Created/Executing: nothing for the trigger to do
        self._last_status = status
        self._deliver(SweepResult(instance))

    def _deliver(self, observation: SweepResult) -> None:
        # Latest wins: the failure count travels inside the observation, so nothing is lost by it.
        self._pending = observation
        self._ready.set()

    async def next_result(self, timeout: float | None = None) -> SweepResult | None:
        """Return the next news from the poller, or None if ``timeout`` seconds pass first."""
        if self._pending is None:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        observation, self._pending = self._pending, None
        self._ready.clear()
        return observation

    def leave(self) -> None:
        """Unregister (idempotent); a cancelled trigger leaves the sweep this way."""
        unregister, self._unregister = self._unregister, None
        if unregister is not None:
            unregister(self)
