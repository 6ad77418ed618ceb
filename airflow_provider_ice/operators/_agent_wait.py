"""Waiting for an agent instance to finish: one decision logic for the operator, sensor and trigger.

The operator's sync wait, the sensor's ``poke`` and the trigger's loop all do the same thing: list
the agent's instances over a bounded window, pick the one that is ours (correlation id and/or
ChannelId, or DescribeAIAgentInstance by InstanceId when nothing else identifies it), and decide.
:class:`WaitTracker` turns observations and errors into "done / keep waiting / fail", so every
mode applies the same not-found timeout, error tolerance and unknown-status warning.

Nothing here imports Airflow beyond its exception classes, and no HTTP client at import time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_ice.api.errors import (
    IceAuthError,
    IceInvalidParameterError,
    IceNotFoundError,
    IceValidationError,
)

if TYPE_CHECKING:
    # Models (pydantic) and lookups load lazily: DAG files import this module at parse time.
    from airflow_provider_ice.api.models import AIAgentInstance

log = logging.getLogger(__name__)

#: ListAIAgentInstance's StartTime/EndTime semantics are undocumented and clocks drift, so every
#: window is widened by this much on both sides.
WINDOW_MARGIN = timedelta(minutes=5)
#: The statuses a trigger event may carry; anything else (or None) fails ``execute_complete``.
EVENT_STATUSES = frozenset({"success", "error", "timeout"})
#: ``reason`` of an event: why the wait ended.
REASON_FINISHED = "finished"
REASON_NOT_FOUND = "not_found"
REASON_POLL_ERROR = "poll_error"
REASON_TIMEOUT = "timeout"
#: Errors that polling again cannot fix: fail at once instead of burning the error budget.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    IceAuthError,
    IceInvalidParameterError,
    IceValidationError,
)


class IceAgentCallError(AirflowException):
    """The agent call could not be placed, found or waited for."""


class IceAgentInstanceNotFoundError(IceAgentCallError, AirflowFailException):
    """No instance matched within ``not_found_timeout``.

    Fails without retries: a retry of a call operator could not find the instance either and would
    place a second call; for a sensor, ``soft_fail`` applies.
    """


class IceAgentWaitTimeout(IceAgentCallError):
    """The instance did not finish within the operator's ``timeout``."""


class IceTriggerEventError(IceAgentCallError):
    """A trigger event was missing or malformed (e.g. triggerer and worker run different versions)."""


def positive_seconds(value: float | timedelta, parameter: str, *, allow_zero: bool = False) -> float:
    """``value`` (seconds or a timedelta) as finite seconds > 0 (>= 0 with ``allow_zero``).

    Raises ``ValueError`` naming ``parameter`` and the allowed range.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{parameter} must be a {kind}, finite number of seconds, got {value!r}")
    return seconds


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime or ISO-8601 string (naive values are taken as UTC)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def iso(value: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix, second precision kept as given."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class InstanceTarget:
    """What identifies the instance being waited for, and where to look for it.

    :param agent_id: AIAgentId the instance belongs to.
    :param correlation_id: The provider's correlation id carried in UserData, if any.
    :param channel_id: The ARTC ChannelId returned by GenerateAIAgentCall, if known.
    :param instance_id: The InstanceId, if known; used (with DescribeAIAgentInstance) only when
        neither correlation id nor ChannelId is available, e.g. an outbound call without correlation.
    :param window_start: Instances created before this are not considered.
    """

    agent_id: str
    correlation_id: str | None = None
    channel_id: str | None = None
    instance_id: str | None = None
    window_start: datetime = field(default_factory=lambda: utcnow() - timedelta(days=1))

    def __post_init__(self) -> None:
        if not self.agent_id:
            raise IceValidationError("agent_id", "is required to find an agent instance")
        if not (self.correlation_id or self.channel_id or self.instance_id):
            raise IceValidationError(
                "channel_id",
                "an instance is identified by correlation_id, channel_id or instance_id; none was given",
            )

    @property
    def uses_listing(self) -> bool:
        return bool(self.correlation_id or self.channel_id)

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """``(start, end)`` for ListAIAgentInstance: from ``window_start`` to a little after now."""
        return self.window_start, (now or utcnow()) + WINDOW_MARGIN

    def describe(self, now: datetime | None = None) -> str:
        """Human-readable: which agent, channel and window were searched (for failure messages)."""
        start, end = self.window(now)
        parts = [f"agent {self.agent_id!r}"]
        if self.channel_id:
            parts.append(f"channel {self.channel_id!r}")
        if self.correlation_id:
            parts.append(f"correlation id {self.correlation_id!r}")
        if self.instance_id:
            parts.append(f"instance {self.instance_id!r}")
        if not self.uses_listing:
            return ", ".join(parts)
        return f"{', '.join(parts)}, created between {iso(start)} and {iso(end)}"


class Outcome(str, Enum):
    FINISHED = "finished"
    WAITING = "waiting"
    UNKNOWN_STATUS = "unknown_status"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Observation:
    """The result of one poll: what was found and what it means."""

    outcome: Outcome
    instance: AIAgentInstance | None = None

    @property
    def status(self) -> str | None:
        if self.instance is None or self.instance.status is None:
            return None
        return str(self.instance.status)


def observe(instance: AIAgentInstance | None) -> Observation:
    """Decide from the matching instance (or None): Finished is done, Created/Executing wait."""
    if instance is None:
        return Observation(Outcome.NOT_FOUND)
    status = instance.status
    if status is not None and status.is_terminal:
        return Observation(Outcome.FINISHED, instance)
    if status is None or not status.is_known:
        return Observation(Outcome.UNKNOWN_STATUS, instance)
    return Observation(Outcome.WAITING, instance)


class SyncInstanceSource(Protocol):
    """An :class:`~..api.client.IceClient` or :class:`~..hooks.ice.IceHook`."""

    def list_ai_agent_instances(
        self, agent_id: str, *, start_time: Any = None, end_time: Any = None
    ) -> Iterator[AIAgentInstance]: ...

    def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance: ...


class AsyncInstanceSource(Protocol):
    """An :class:`~..api.client.AsyncIceClient`."""

    def list_ai_agent_instances(
        self, agent_id: str, *, start_time: Any = None, end_time: Any = None
    ) -> AsyncIterator[AIAgentInstance]: ...

    async def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance: ...


def poll_once(source: SyncInstanceSource, target: InstanceTarget) -> Observation:
    """One poll: ListAIAgentInstance over the target's window (or Describe by InstanceId)."""
    from airflow_provider_ice.api.lookup import find_instance

    if not target.uses_listing:
        return _describe(lambda: source.describe_ai_agent_instance(target.instance_id or ""))
    start, end = target.window()
    found = find_instance(
        source,  # type: ignore[arg-type]  # IceHook has the client's method names
        target.agent_id,
        correlation_id=target.correlation_id,
        channel_id=target.channel_id,
        start_time=start,
        end_time=end,
    )
    return observe(found)


async def apoll_once(source: AsyncInstanceSource, target: InstanceTarget) -> Observation:
    """Async twin of :func:`poll_once`."""
    from airflow_provider_ice.api.lookup import afind_instance

    if not target.uses_listing:
        try:
            return observe(await source.describe_ai_agent_instance(target.instance_id or ""))
        except IceNotFoundError:
            return Observation(Outcome.NOT_FOUND)
    start, end = target.window()
    found = await afind_instance(
        source,  # type: ignore[arg-type]
        target.agent_id,
        correlation_id=target.correlation_id,
        channel_id=target.channel_id,
        start_time=start,
        end_time=end,
    )
    return observe(found)


def _describe(fetch: Any) -> Observation:
    try:
        return observe(fetch())
    except IceNotFoundError:
        return Observation(Outcome.NOT_FOUND)


class Action(str, Enum):
    DONE = "done"
    WAIT = "wait"
    FAIL = "fail"


@dataclass(frozen=True)
class Step:
    """What to do after one poll."""

    action: Action
    message: str = ""
    observation: Observation | None = None

    @property
    def not_found(self) -> bool:
        return self.observation is not None and self.observation.outcome is Outcome.NOT_FOUND


@dataclass
class WaitTracker:
    """The waiting rules, free of I/O and clocks (``now`` is an epoch given by the caller).

    :param target: What is being waited for (used in messages).
    :param not_found_deadline: Epoch seconds; still not found after it fails. None: never.
    :param max_consecutive_errors: Transient poll errors tolerated in a row; one more fails.
    :param consecutive_errors: Errors already seen in a row (carried across reschedules).
    """

    target: InstanceTarget
    not_found_deadline: float | None
    max_consecutive_errors: int = 3
    consecutive_errors: int = 0
    warned_unknown: bool = False
    last_status: str | None = None

    def on_observation(self, observation: Observation, now: float) -> Step:
        # A successful poll, whatever it found, ends a run of errors.
        self.consecutive_errors = 0
        self.last_status = observation.status or self.last_status
        if observation.outcome is Outcome.FINISHED:
            return Step(Action.DONE, f"Instance of {self.target.describe()} is Finished", observation)
        if observation.outcome is Outcome.NOT_FOUND:
            if self.not_found_deadline is not None and now >= self.not_found_deadline:
                return Step(
                    Action.FAIL,
                    f"No agent instance found for {self.target.describe()} within the not_found_timeout",
                    observation,
                )
            return Step(Action.WAIT, f"No instance yet for {self.target.describe()}", observation)
        if observation.outcome is Outcome.UNKNOWN_STATUS and not self.warned_unknown:
            self.warned_unknown = True
            log.warning(
                "Agent instance of %s reports status %r, which this provider does not know; "
                "waiting for Finished",
                self.target.describe(),
                observation.status,
            )
        return Step(Action.WAIT, f"Instance status is {observation.status}", observation)

    def on_error(self, error: BaseException) -> Step:
        if isinstance(error, PERMANENT_ERRORS):
            return Step(Action.FAIL, f"Polling {self.target.describe()} failed: {error}")
        self.consecutive_errors += 1
        if self.consecutive_errors > self.max_consecutive_errors:
            return Step(
                Action.FAIL,
                f"Polling {self.target.describe()} failed {self.consecutive_errors} times in a row; "
                f"last error: {type(error).__name__}: {error}",
            )
        log.warning(
            "Transient error polling %s (%d/%d tolerated): %s: %s",
            self.target.describe(),
            self.consecutive_errors,
            self.max_consecutive_errors,
            type(error).__name__,
            error,
        )
        return Step(Action.WAIT, f"transient error: {error}")


def failure(step: Step) -> IceAgentCallError:
    """The exception for a FAIL step: a typed "not found", or the polling error."""
    return IceAgentInstanceNotFoundError(step.message) if step.not_found else IceAgentCallError(step.message)


def event_failure(event: dict[str, Any]) -> IceAgentCallError:
    """The exception for an ``error`` event, chosen by its ``reason`` (never by message text)."""
    message = str(event.get("message"))
    if event.get("reason") == REASON_NOT_FOUND:
        return IceAgentInstanceNotFoundError(message)
    return IceAgentCallError(message)


def instance_record(
    target: InstanceTarget, observation: Observation, *, include_call_log_url: bool = False
) -> dict[str, Any]:
    """The instance as downstream tasks get it: no AuthToken, CallLogUrl only when asked for."""
    from airflow_provider_ice.api.correlation import correlation_id_of

    instance = observation.instance
    carried = correlation_id_of(instance.user_data) if instance else None
    record: dict[str, Any] = {
        "agent_id": target.agent_id,
        "instance_id": (instance.instance_id if instance else None) or target.instance_id,
        "channel_id": (instance.channel_id if instance else None) or target.channel_id,
        "status": observation.status,
        "user_data": instance.user_data if instance else None,
        "correlation_id": carried or target.correlation_id,
        "call_log_available": bool(instance and instance.has_call_log),
    }
    if include_call_log_url and instance is not None and instance.call_log_url is not None:
        record["call_log_url"] = instance.call_log_url.get_secret_value()
    return record


def make_event(
    status: str,
    message: str,
    target: InstanceTarget,
    observation: Observation | None = None,
    *,
    reason: str,
    instance_status: str | None = None,
) -> dict[str, Any]:
    """The one event shape every trigger event has (``call_log_url`` never travels in an event)."""
    record = instance_record(target, observation or Observation(Outcome.NOT_FOUND))
    return {
        "status": status,
        "message": message,
        "reason": reason,
        "agent_id": record["agent_id"],
        "instance_id": record["instance_id"],
        "channel_id": record["channel_id"],
        "correlation_id": record["correlation_id"],
        "instance_status": record["status"] or instance_status,
        "user_data": record["user_data"],
        "call_log_available": record["call_log_available"],
    }


def validate_event(event: Any) -> dict[str, Any]:
    """The event, or :class:`IceTriggerEventError` for None, a non-dict or an unknown status."""
    if event is None:
        raise IceTriggerEventError("Trigger error: the event is None")
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise IceTriggerEventError(
            f"Trigger error: unexpected event {event!r}; expected a dict whose status is one of "
            f"{sorted(EVENT_STATUSES)}"
        )
    return event
