"""Deferrable wait for an ICE agent instance to reach ``Finished``, and the events it sends.

The trigger only reads (ListAIAgentInstance, or DescribeAIAgentInstance by InstanceId): the call is
always placed on the worker, so a triggerer restart can never place a second call. It may run twice
at once (HA triggerers), which is harmless for reads.

The event format lives here with its inverse: :func:`make_event` writes an event,
:func:`validate_event`, :func:`record_from_event` and :func:`event_failure` read one on the worker.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_ice.api import validation as check
from airflow_provider_ice.api.waiting import (
    Action,
    InstanceTarget,
    Observation,
    Outcome,
    WaitTracker,
    apoll_instance,
    instance_record,
)
from airflow_provider_ice.exceptions import (
    IceAgentCallError,
    IceAgentInstanceNotFoundError,
    IceTriggerEventError,
)
from airflow_provider_ice.triggers.base import serialize_keywords

if TYPE_CHECKING:
    from airflow_provider_ice.api.models import AIAgentInstance
    from airflow_provider_ice.hooks.ice import IceHook

#: The statuses a trigger event may carry; anything else (or None) fails ``execute_complete``.
EVENT_STATUSES = frozenset({"success", "error", "timeout"})
#: ``reason`` of an event: why the wait ended.
REASON_FINISHED = "finished"
REASON_NOT_FOUND = "not_found"
REASON_POLL_ERROR = "poll_error"
REASON_TIMEOUT = "timeout"
#: The record fields an event carries under the same name (``status`` travels as ``instance_status``).
_EVENT_RECORD_FIELDS = ("agent_id", "instance_id", "channel_id", "correlation_id", "user_data")


def make_event(
    status: str,
    message: str,
    target: InstanceTarget,
    observation: Observation | None = None,
    *,
    reason: str,
    instance_status: str | None = None,
    permanent: bool = False,
) -> dict[str, Any]:
    """Return the one event shape every trigger event has (``call_log_url`` never travels in one).

    ``permanent`` marks an ``error`` no retry can fix.
    """
    record = instance_record(target, observation or Observation(Outcome.NOT_FOUND))
    return {
        "status": status,
        "message": message,
        "reason": reason,
        "permanent": permanent,
        **{key: record[key] for key in _EVENT_RECORD_FIELDS},
        "instance_status": record["status"] or instance_status,
        "call_log_available": record["call_log_available"],
    }


def record_from_event(event: dict[str, Any]) -> dict[str, Any]:
    """Return the instance record (as :func:`~..api.waiting.instance_record` gives it) of an event."""
    record = {key: event.get(key) for key in _EVENT_RECORD_FIELDS}
    record["status"] = event.get("instance_status")
    record["call_log_available"] = bool(event.get("call_log_available"))
    return record


def validate_event(event: Any) -> dict[str, Any]:
    """Return the event, or raise :class:`IceTriggerEventError` for None, a non-dict or a bad status."""
    if event is None:
        raise IceTriggerEventError("Trigger error: the event is None")
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise IceTriggerEventError(
            f"Trigger error: unexpected event {event!r}; expected a dict whose status is one of "
            f"{sorted(EVENT_STATUSES)}"
        )
    return event


def event_failure(event: dict[str, Any]) -> IceAgentCallError:
    """Return the exception for an ``error`` event, chosen by its ``reason`` (never by message text)."""
    message = str(event.get("message"))
    if event.get("reason") == REASON_NOT_FOUND:
        return IceAgentInstanceNotFoundError(message)
    error = IceAgentCallError(message)
    error.permanent = event.get("permanent") is True
    return error


#: Imported in a worker thread before the first poll (cold, in the event loop, they would block it).
_WAIT_MODULES = (
    "airflow_provider_ice.hooks.ice",
    "airflow_provider_ice.api.client",
    "airflow_provider_ice.triggers.coalesced",  # and with it the poller and the waiter
    "aiohttp",
)


def import_wait_modules() -> None:
    """Import what waiting needs: pydantic models, the client, aiohttp (call it in a worker thread)."""
    for name in _WAIT_MODULES:
        importlib.import_module(name)


class InstancePoller(Protocol):
    """The seam for "poll once for this waiter".

    :class:`IceAIAgentInstanceTrigger` asks its poller for one :class:`Observation` per loop pass.
    The default (``coalesce=True``) is :class:`~.coalesced.CoalescedInstancePoller`: one shared
    ListAIAgentInstance sweep per (connection, agent) in the triggerer process serves every trigger.
    :class:`DirectInstancePoller` polls on its own. With a true ``paces_itself``, ``poll_once`` blocks until
    news or a deadline (no sleep after it); a ``failures_in_a_row`` counts failed polls for the tolerance.
    """

    async def poll_once(self, target: InstanceTarget) -> Observation:
        """Return one observation of ``target``."""
        ...

    async def aclose(self) -> None:
        """Release what the poller holds."""
        ...


class _HookAsyncSource:
    """The hook's async methods under the client's names, as :func:`apoll_instance` expects them."""

    def __init__(self, hook: IceHook) -> None:
        self.hook = hook

    def list_ai_agent_instances(
        self, agent_id: str, *, start_time: Any = None, end_time: Any = None
    ) -> AsyncIterator[AIAgentInstance]:
        """Return the hook's async listing."""
        return self.hook.alist_ai_agent_instances(agent_id, start_time=start_time, end_time=end_time)

    async def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance:
        """Return the hook's DescribeAIAgentInstance answer."""
        return await self.hook.adescribe_ai_agent_instance(instance_id)


class DirectInstancePoller:
    """One ListAIAgentInstance (or Describe) round per call, with this trigger's own hook.

    :param hook: The hook whose async client (async connection lookup) is used.
    """

    def __init__(self, hook: IceHook) -> None:
        self.hook = hook
        self._source = _HookAsyncSource(hook)

    async def poll_once(self, target: InstanceTarget) -> Observation:
        """Return one observation of ``target`` from this trigger's own ListAIAgentInstance round."""
        return await apoll_instance(self._source, target)

    async def aclose(self) -> None:
        """Close this trigger's hook."""
        # This trigger's hook owns its async client (and connection pool): release it.
        await self.hook.aclose()


class IceAIAgentInstanceTrigger(BaseTrigger):
    """Poll an agent instance until it is ``Finished``, it cannot be found, or a deadline passes.

    Every deadline is an absolute epoch (``time.time()``), so a restarted triggerer resumes with
    the time that is left rather than a fresh timeout.

    Events all have the shape ``{"status": "success"|"error"|"timeout", "message", "agent_id",
    "instance_id", "channel_id", "correlation_id", "instance_status", "reason", "user_data",
    "call_log_available"}``; ``reason`` is one of finished, not_found, poll_error, timeout.
    The CallLogUrl never travels in an event.

    :param ice_conn_id: The ``alibaba_ice`` connection id.
    :param agent_id: AIAgentId.
    :param correlation_id: Correlation id carried in UserData, if any.
    :param channel_id: ChannelId, if known.
    :param instance_id: InstanceId, if known (Describe fallback; StopAIAgentInstance on kill).
    :param window_start: ISO-8601 UTC; instances created earlier are ignored.
    :param poll_interval: Seconds between polls.
    :param end_time: Epoch after which a ``timeout`` event is sent; None for no deadline.
    :param not_found_deadline: Epoch after which a still-missing instance is an ``error``.
    :param max_consecutive_errors: Transient poll errors tolerated in a row.
    :param stop_on_kill: Stop the instance when a user kills the deferred task (Airflow 3.3+).
    :param coalesce: Share one ListAIAgentInstance sweep per interval with every trigger of this
        triggerer waiting on the same connection and agent (about one request per 100 instances,
        whatever the number of waiting tasks; see :mod:`~.poller`). False: poll on its own. Targets
        known only by InstanceId always poll on their own (DescribeAIAgentInstance).
    """

    def __init__(
        self,
        *,
        ice_conn_id: str,
        agent_id: str,
        correlation_id: str | None = None,
        channel_id: str | None = None,
        instance_id: str | None = None,
        window_start: str,
        poll_interval: float = 30.0,
        end_time: float | None = None,
        not_found_deadline: float | None = None,
        max_consecutive_errors: int = 3,
        stop_on_kill: bool = False,
        coalesce: bool = True,
    ) -> None:
        super().__init__()
        self.ice_conn_id = ice_conn_id
        self.agent_id = agent_id
        self.correlation_id = correlation_id
        self.channel_id = channel_id
        self.instance_id = instance_id
        check.parse_time(window_start, "window_start")  # refused now, not in the triggerer
        self.window_start = window_start
        self.poll_interval = check.positive_seconds(poll_interval, "poll_interval")
        self.end_time = check.validate_epoch(end_time, "end_time")
        self.not_found_deadline = check.validate_epoch(not_found_deadline, "not_found_deadline")
        self.max_consecutive_errors = check.validate_int_range(
            max_consecutive_errors, "max_consecutive_errors", 0
        )
        self.stop_on_kill = check.validate_flag(stop_on_kill, "stop_on_kill")
        self.coalesce = check.validate_flag(coalesce, "coalesce")

    @classmethod
    def for_wait(
        cls,
        tracker: WaitTracker,
        *,
        ice_conn_id: str,
        poll_interval: float,
        end_time: float | None,
        stop_on_kill: bool,
        coalesce: bool,
    ) -> IceAIAgentInstanceTrigger:
        """Return the trigger that carries on the wait ``tracker`` started on the worker.

        The operator and the sensor both defer through here, so the target, the not-found deadline
        and the error budget reach the triggerer the same way.
        """
        return cls(
            ice_conn_id=ice_conn_id,
            **tracker.target.to_fields(),
            poll_interval=poll_interval,
            end_time=end_time,
            not_found_deadline=tracker.not_found_deadline,
            max_consecutive_errors=tracker.max_consecutive_errors,
            stop_on_kill=stop_on_kill,
            coalesce=coalesce,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Serialize identifiers, the poll interval and absolute deadlines; never credentials or tokens."""
        return serialize_keywords(self)

    @property
    def target(self) -> InstanceTarget:
        """Return the instance this trigger waits for (its attributes hold the target's fields by name)."""
        return InstanceTarget.named_by(vars(self))

    def make_hook(self) -> IceHook:
        """Return a new hook for this trigger's connection."""
        from airflow_provider_ice.hooks.ice import IceHook

        return IceHook(ice_conn_id=self.ice_conn_id)

    def make_poller(self) -> InstancePoller:
        """Return the poller :meth:`run` uses; override (or replace) it to share polls between triggers."""
        if self.coalesce and self.target.uses_listing:
            from airflow_provider_ice.triggers.coalesced import CoalescedInstancePoller

            return CoalescedInstancePoller(
                conn_id=self.ice_conn_id,
                poll_interval=self.poll_interval,
                end_time=self.end_time,
                not_found_deadline=self.not_found_deadline,
            )
        return DirectInstancePoller(self.make_hook())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the instance is Finished, missing too long, failing, or past the deadline."""
        await asyncio.to_thread(import_wait_modules)  # cheap once they are loaded
        target = self.target
        tracker = WaitTracker(
            target=target,
            not_found_deadline=self.not_found_deadline,
            max_consecutive_errors=self.max_consecutive_errors,
        )
        poller = self.make_poller()
        last: Observation | None = None
        try:
            while True:
                if self.end_time is not None and time.time() >= self.end_time:
                    yield TriggerEvent(
                        make_event(
                            "timeout",
                            f"Agent instance of {target.describe()} did not finish before the deadline "
                            f"(last status: {tracker.last_status})",
                            target,
                            last,
                            reason=REASON_TIMEOUT,
                            instance_status=tracker.last_status,
                        )
                    )
                    return
                try:
                    observation = await poller.poll_once(target)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    step = tracker.on_error(error, getattr(poller, "failures_in_a_row", None))
                else:
                    last = observation
                    step = tracker.on_observation(observation, time.time())
                if step.action is Action.DONE:
                    yield TriggerEvent(
                        make_event("success", step.message, target, step.observation, reason=REASON_FINISHED)
                    )
                    return
                if step.action is Action.FAIL:
                    yield TriggerEvent(
                        make_event(
                            "error",
                            step.message,
                            target,
                            last,
                            reason=REASON_NOT_FOUND if step.not_found else REASON_POLL_ERROR,
                            instance_status=tracker.last_status,
                            permanent=step.permanent,
                        )
                    )
                    return
                self.log.debug("%s; next poll in %.1f s", step.message, self.poll_interval)
                if not getattr(poller, "paces_itself", False):
                    await asyncio.sleep(self._sleep_seconds())
        finally:
            await poller.aclose()

    def _sleep_seconds(self) -> float:
        # Every branch sleeps (never a hot loop), but not past the deadline.
        if self.end_time is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, self.end_time - time.time()))

    async def on_kill(self) -> None:
        """Stop the instance when the user kills the deferred task; best effort, never raises."""
        if not self.stop_on_kill:
            return
        if not self.instance_id:
            self.log.warning(
                "Cannot stop the agent instance of %s: its InstanceId is unknown", self.target.describe()
            )
            return
        try:
            await self.make_hook().astop_ai_agent_instance(self.instance_id)
            self.log.info("Stopped agent instance %s", self.instance_id)
        except Exception:
            self.log.warning("Could not stop agent instance %s", self.instance_id, exc_info=True)
