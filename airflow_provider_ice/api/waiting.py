"""Waiting for an agent instance to finish: the rules the operator, sensor and trigger share.

The operator's sync wait, the sensor's ``poke`` and the trigger's loop all do the same thing: list
the agent's instances over a bounded window, pick the one that is ours (correlation id and/or
ChannelId, or DescribeAIAgentInstance by InstanceId when nothing else identifies it), and decide.
:class:`WaitTracker` turns observations and errors into "done / keep waiting / fail", so every
mode applies the same not-found timeout, error tolerance and unknown-status warning.

ListAIAgentInstance carries no InstanceId, so a listed instance is recognised by what it echoes:
the correlation id inside ``UserData`` (see :mod:`.correlation`) and ``RuntimeConfig.ChannelId``.

No Airflow here: the adapters turn a FAIL step into their own exceptions
(:mod:`airflow_provider_ice.exceptions`) and observations into trigger events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from .correlation import correlation_id_of
from .errors import NON_RETRYABLE_ERRORS, IceNotFoundError, IceValidationError
from .validation import iso, parse_time, utcnow

if TYPE_CHECKING:
    # Models (pydantic) load lazily: DAG files import this module at parse time.
    from .models import AIAgentInstance

log = logging.getLogger(__name__)

#: ListAIAgentInstance's StartTime/EndTime semantics are undocumented and clocks drift, so every
#: window is widened by this much on both sides.
WINDOW_MARGIN = timedelta(minutes=5)
#: Errors that polling again cannot fix: fail at once instead of burning the error budget.
PERMANENT_ERRORS = NON_RETRYABLE_ERRORS


def instance_matches(
    instance: AIAgentInstance, *, correlation_id: str | None = None, channel_id: str | None = None
) -> bool:
    """Return True when every identifier given matches; at least one identifier is required."""
    if not correlation_id and not channel_id:
        raise ValueError("instance_matches: give correlation_id, channel_id or both")
    if correlation_id and correlation_id_of(instance.user_data) != correlation_id:
        return False
    return not (channel_id and instance.channel_id != channel_id)


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

    @classmethod
    def named_by(cls, fields: Mapping[str, Any], window_start: Any = None) -> InstanceTarget:
        """Return the target ``fields`` names: a call operator's record, a trigger's kwargs or event.

        ``window_start`` (else ``fields["window_start"]``) is an aware datetime or ISO-8601 string;
        other keys of ``fields`` are ignored.
        """
        start = fields.get("window_start") if window_start is None else window_start
        return cls(
            agent_id=str(fields.get("agent_id") or ""),
            correlation_id=fields.get("correlation_id"),
            channel_id=fields.get("channel_id"),
            instance_id=fields.get("instance_id"),
            window_start=parse_time(start, "window_start"),
        )

    def to_fields(self) -> dict[str, Any]:
        """Return the target as plain values (``window_start`` in ISO-8601 UTC): :meth:`named_by`'s input."""
        return {**asdict(self), "window_start": iso(self.window_start)}

    @property
    def uses_listing(self) -> bool:
        """Return True when the instance is found in ListAIAgentInstance (else by Describe)."""
        return bool(self.correlation_id or self.channel_id)

    def matches(self, instance: AIAgentInstance) -> bool:
        """Return True when a listed instance is the one this target identifies."""
        return instance_matches(instance, correlation_id=self.correlation_id, channel_id=self.channel_id)

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """Return ``(start, end)`` for ListAIAgentInstance: ``window_start`` to a little after now."""
        return self.window_start, (now or utcnow()) + WINDOW_MARGIN

    def describe(self, now: datetime | None = None) -> str:
        """Return which agent, channel and window were searched, for failure messages."""
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


def window_after(created_at: Any, parameter: str) -> datetime:
    """Return where to look for an instance created at ``created_at``: :data:`WINDOW_MARGIN` before it."""
    return parse_time(created_at, parameter) - WINDOW_MARGIN


class Outcome(str, Enum):
    """What one poll found."""

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
        """Return the instance's status as a string, or None when unknown."""
        if self.instance is None or self.instance.status is None:
            return None
        return str(self.instance.status)


def observe(instance: AIAgentInstance | None) -> Observation:
    """Classify the matching instance (or None): Finished is done, Created/Executing wait."""
    if instance is None:
        return Observation(Outcome.NOT_FOUND)
    status = instance.status
    if status is not None and status.is_terminal:
        return Observation(Outcome.FINISHED, instance)
    if status is None or not status.is_known:
        return Observation(Outcome.UNKNOWN_STATUS, instance)
    return Observation(Outcome.WAITING, instance)


class SyncInstanceSource(Protocol):
    """Where a sync poll reads instances: an :class:`~.client.IceClient` or an ``IceHook``."""

    def list_ai_agent_instances(
        self, agent_id: str, *, start_time: Any = None, end_time: Any = None
    ) -> Iterator[AIAgentInstance]: ...

    def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance: ...


class AsyncInstanceSource(Protocol):
    """Where an async poll reads instances: an :class:`~.client.AsyncIceClient`."""

    def list_ai_agent_instances(
        self, agent_id: str, *, start_time: Any = None, end_time: Any = None
    ) -> AsyncIterator[AIAgentInstance]: ...

    async def describe_ai_agent_instance(self, instance_id: str) -> AIAgentInstance: ...


# The sync and async twins below differ only in their I/O (``for`` vs ``async for``, a call vs an
# await); what matches and what an answer means is decided once, in InstanceTarget and observe().


def find_instance(source: SyncInstanceSource, target: InstanceTarget) -> AIAgentInstance | None:
    """Return the first (newest) listed instance in the target's window that matches, or None."""
    start, end = target.window()
    for instance in source.list_ai_agent_instances(target.agent_id, start_time=start, end_time=end):
        if target.matches(instance):
            return instance
    return None


async def afind_instance(source: AsyncInstanceSource, target: InstanceTarget) -> AIAgentInstance | None:
    """Return what :func:`find_instance` returns, listing asynchronously."""
    start, end = target.window()
    async for instance in source.list_ai_agent_instances(target.agent_id, start_time=start, end_time=end):
        if target.matches(instance):
            return instance
    return None


def poll_instance(source: SyncInstanceSource, target: InstanceTarget) -> Observation:
    """Poll once: ListAIAgentInstance over the target's window, or Describe by InstanceId."""
    if target.uses_listing:
        return observe(find_instance(source, target))
    try:
        return observe(source.describe_ai_agent_instance(target.instance_id or ""))
    except IceNotFoundError:
        return Observation(Outcome.NOT_FOUND)


async def apoll_instance(source: AsyncInstanceSource, target: InstanceTarget) -> Observation:
    """Poll once as :func:`poll_instance` does, asynchronously."""
    if target.uses_listing:
        return observe(await afind_instance(source, target))
    try:
        return observe(await source.describe_ai_agent_instance(target.instance_id or ""))
    except IceNotFoundError:
        return Observation(Outcome.NOT_FOUND)


class Action(str, Enum):
    """What the waiter does next."""

    DONE = "done"
    WAIT = "wait"
    FAIL = "fail"


@dataclass(frozen=True)
class Step:
    """What to do after one poll."""

    action: Action
    message: str = ""
    observation: Observation | None = None
    #: A FAIL no retry can fix (the polling error was non-retryable).
    permanent: bool = False

    @property
    def not_found(self) -> bool:
        """Return True when the step fails or waits because nothing matched."""
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
        """Return the step after a successful poll at epoch ``now``."""
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

    def on_error(self, error: BaseException, in_a_row: int | None = None) -> Step:
        """Return the step after a failed poll: fail on a permanent error or too many in a row.

        :param in_a_row: failed polls in a row, this one included, when the source counts them (a
            shared sweep may fail several times before its reader looks); None: this one failure.
        """
        if isinstance(error, PERMANENT_ERRORS):
            return Step(Action.FAIL, f"Polling {self.target.describe()} failed: {error}", permanent=True)
        self.consecutive_errors = max(self.consecutive_errors + 1, in_a_row or 0)
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


def instance_record(
    target: InstanceTarget, observation: Observation, *, include_call_log_url: bool = False
) -> dict[str, Any]:
    """Return the instance as downstream tasks get it: no AuthToken, CallLogUrl only when asked for."""
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


def poll_step(tracker: WaitTracker, source: SyncInstanceSource) -> Step:
    """Poll the tracker's target once and return what to do next (a poll error is a step too)."""
    try:
        observation = poll_instance(source, tracker.target)
    except Exception as error:
        return tracker.on_error(error)
    return tracker.on_observation(observation, time.time())
