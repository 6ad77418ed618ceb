"""The trigger's seam onto the shared poller: :class:`CoalescedInstancePoller`.

:class:`~.agent_instance.IceAIAgentInstanceTrigger` asks a poller for one observation per loop
pass; this one registers with the running loop's :class:`~.poller.CoalescedPoller` instead of
polling on its own (see :mod:`.poller`).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from airflow_provider_ice.api.waiting import InstanceTarget, Observation, Outcome, observe
from airflow_provider_ice.triggers.poller import ClientFactory, coalesced_wait
from airflow_provider_ice.triggers.waiter import Waiter

if TYPE_CHECKING:
    from airflow_provider_ice.api.client import AsyncIceClient


class CoalescedInstancePoller:
    """:class:`~.agent_instance.IceAIAgentInstanceTrigger`'s poller seam, backed by the shared poller.

    ``poll_once`` registers with the running loop's :class:`~.poller.CoalescedPoller` on first use and then
    returns as soon as the poller has news for this target (first sighting, a status change, not
    found, or a failed sweep, raised as the sweep's error so the trigger's consecutive-error tolerance
    applies). The poller paces the polls (``paces_itself``), so the trigger must not sleep between
    them; with no news, ``poll_once`` returns the last observation again when a deadline comes, so
    the trigger's timeout and not-found rules fire on time.

    :param conn_id: the ``alibaba_ice`` connection id (with the target's agent, the poller's key).
    :param client_factory: creates the async client if this trigger starts the poller; by default a
        client from a fresh lookup of ``conn_id`` (called again after an auth error and every few
        minutes, so rotated credentials are picked up: a cached hook would hand back a stale client).
    :param poll_interval: seconds; the shared sweep runs at least this often while registered.
    :param end_time: epoch deadline of the wait, or None.
    :param not_found_deadline: epoch after which a missing instance fails the wait, or None.
    """

    paces_itself = True

    def __init__(
        self,
        *,
        conn_id: str,
        client_factory: ClientFactory | None = None,
        poll_interval: float,
        end_time: float | None = None,
        not_found_deadline: float | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.client_factory = client_factory or self._fresh_client
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.not_found_deadline = not_found_deadline
        self._stack: contextlib.AsyncExitStack | None = None
        self._waiter: Waiter | None = None
        self._last: Observation | None = None
        #: Failed sweeps in a row as of the last result read: a reader that wakes late reads only
        #: the latest of several failed sweeps, so counting raised errors would undercount them.
        self.failures_in_a_row = 0

    async def _fresh_client(self) -> AsyncIceClient:
        from airflow_provider_ice.hooks.ice import IceHook

        return await IceHook(ice_conn_id=self.conn_id).aget_async_client()

    async def poll_once(self, target: InstanceTarget) -> Observation:
        if self._waiter is None:
            self._stack = contextlib.AsyncExitStack()
            self._waiter = await self._stack.enter_async_context(
                coalesced_wait(
                    conn_id=self.conn_id,
                    target=target,
                    client_factory=self.client_factory,
                    poll_interval=self.poll_interval,
                )
            )
        result = await self._waiter.next_result(self._timeout())
        if result is None:  # a deadline came first: let the trigger's rules decide
            return self._last or Observation(Outcome.WAITING)
        self.failures_in_a_row = result.consecutive_failures
        if result.error is not None:
            # One error object is shared by every waiter of the sweep: drop the traceback so that
            # raising it from many triggers does not grow one chain.
            raise result.error.with_traceback(None)
        self._last = observe(result.instance)
        return self._last

    def _timeout(self) -> float | None:
        deadlines = [self.end_time] if self.end_time is not None else []
        if self.not_found_deadline is not None and (
            self._last is not None and self._last.outcome is Outcome.NOT_FOUND
        ):
            deadlines.append(self.not_found_deadline)
        return max(0.0, min(deadlines) - time.time()) if deadlines else None

    async def aclose(self) -> None:
        """Leave the shared poller (idempotent)."""
        stack, self._stack, self._waiter = self._stack, None, None
        if stack is not None:
            await stack.aclose()
