"""Deferrable wait of a campaign: until enough of its calls are Finished, or until a given time.

:class:`IceCampaignTrigger` registers one waiter per active call with the triggerer's coalesced
poller (:mod:`.poller`), so a campaign with hundreds of calls in progress costs one ListAIAgentInstance
sweep per interval for all of them, and no worker slot while people talk. It fires when
``resume_after`` of the calls are Finished (free capacity for the next calls), when all are, at
``wake_at`` (a calling window opens, a redial is due, an unlisted send must be concluded), or when
the shared sweeps fail ``max_consecutive_errors`` times in a row. It only reads: every call is placed
by the worker, so a triggerer restart (or two triggerers) never places one.

The event carries correlation ids and counts only; the worker reconciles with the listing itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_ice.api.validation import parse_time
from airflow_provider_ice.api.waiting import InstanceTarget
from airflow_provider_ice.triggers.base import serialize_keywords

REASON_FINISHED = "finished"
REASON_WAKE = "wake"
REASON_POLL_ERROR = "poll_error"


class IceCampaignTrigger(BaseTrigger):
    """Wait in the triggerer for a campaign's calls to finish, or for a moment to come.

    :param ice_conn_id: The ``alibaba_ice`` connection.
    :param agent_id: The agent whose instances are listed.
    :param correlation_ids: The calls to wait for (their correlation ids); may be empty.
    :param window_start: ISO-8601 UTC; the calls were placed after it.
    :param poll_interval: Seconds between the shared sweeps.
    :param resume_after: Fire once this many of the calls are Finished (capped at their number).
    :param wake_at: Epoch seconds at which to fire anyway, or None.
    :param max_consecutive_errors: Failed sweeps in a row tolerated for one call.
    """

    def __init__(
        self,
        *,
        ice_conn_id: str,
        agent_id: str,
        correlation_ids: list[str],
        window_start: str,
        poll_interval: float,
        resume_after: int,
        wake_at: float | None = None,
        max_consecutive_errors: int = 3,
    ) -> None:
        super().__init__()
        self.ice_conn_id = ice_conn_id
        self.agent_id = agent_id
        self.correlation_ids = list(correlation_ids)
        self.window_start = window_start
        self.poll_interval = poll_interval
        self.resume_after = resume_after
        self.wake_at = wake_at
        self.max_consecutive_errors = max_consecutive_errors

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Serialize the ids, counts and epochs the constructor takes; never credentials or tokens."""
        return serialize_keywords(self)

    def _remaining(self) -> float | None:
        return None if self.wake_at is None else max(0.0, self.wake_at - time.time())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        need = min(max(1, self.resume_after), len(self.correlation_ids))
        if not self.correlation_ids:
            await asyncio.sleep(self._remaining() or 0.0)
            yield self._event("success", REASON_WAKE, [])
            return
        from airflow_provider_ice.triggers.agent_instance import import_wait_modules

        await asyncio.to_thread(import_wait_modules)  # cold imports would block the event loop
        from airflow_provider_ice.hooks.ice import IceHook
        from airflow_provider_ice.triggers.poller import coalesced_wait

        start = parse_time(self.window_start, "window_start")
        factory = IceHook(ice_conn_id=self.ice_conn_id).aget_async_client
        finished: list[str] = []
        async with contextlib.AsyncExitStack() as stack:
            waiting = {}
            for cid in self.correlation_ids:
                waiter = await stack.enter_async_context(
                    coalesced_wait(
                        conn_id=self.ice_conn_id,
                        target=InstanceTarget(agent_id=self.agent_id, correlation_id=cid, window_start=start),
                        client_factory=factory,
                        poll_interval=self.poll_interval,
                    )
                )
                waiting[cid] = waiter
            pending = {asyncio.ensure_future(w.next_result()): cid for cid, w in waiting.items()}
            try:
                while len(finished) < need:
                    done, _ = await asyncio.wait(
                        pending, timeout=self._remaining(), return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:
                        yield self._event("success", REASON_WAKE, finished)
                        return
                    for future in done:
                        cid = pending.pop(future)
                        result = future.result()
                        if result is not None and result.error is not None:
                            if result.consecutive_failures > self.max_consecutive_errors:
                                yield self._event("error", REASON_POLL_ERROR, finished, str(result.error))
                                return
                        elif result is not None and result.instance is not None:
                            status = result.instance.status
                            if status is not None and status.is_terminal:
                                finished.append(cid)
                                waiting[cid].leave()
                                continue
                        pending[asyncio.ensure_future(waiting[cid].next_result())] = cid
            finally:
                for future in pending:
                    future.cancel()
        yield self._event("success", REASON_FINISHED, finished)

    def _event(self, status: str, reason: str, finished: list[str], message: str = "") -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "reason": reason,
                "agent_id": self.agent_id,
                "finished": finished,
                "waited_for": len(self.correlation_ids),
                "message": message,
            }
        )
