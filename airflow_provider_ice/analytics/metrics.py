"""Per-session metrics computed from a call log and the instance that produced it.

Plain functions over the pydantic models (no Airflow import), so they can be reused in any
pipeline and unit-tested on hand-made call logs.

Definitions (see :mod:`airflow_provider_ice.api.call_log`):

* A *response latency* is the gap between the end of a user turn and the beginning of the next
  agent turn. Consecutive user turns count from the last one; turns with an unknown role are
  ignored for pairing; a turn without ``BeginMs``/``EndMs`` breaks the pair (nothing is guessed).
  An agent that starts talking before the user finished (barge-in) has a latency of 0, not a
  negative one.
* When the turns give no latency at all, the service's own ``Metrics`` figures are used, and
  ``latency_source`` says which one was used.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from airflow_provider_ice.api.call_log import ROLE_AGENT, ROLE_USER, CallLog, CallLogTurn
from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.api.models import AIAgentInstance

LATENCY_FROM_TURNS = "turns"
LATENCY_FROM_SERVICE = "service"


@dataclass
class SessionMetrics:
    """One session (one agent instance) as a flat, JSON-serialisable record.

    ``call_log_error`` is set (and the call-log figures are empty) when the log could not be read.
    """

    # A declaration, one line per field of the JSONL record: nothing to share but the form.
    agent_id: str | None
    channel_id: str | None
    correlation_id: str | None
    status: str
    instance_id: str | None = None
    session_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    end_reason: str | None = None
    has_call_log: bool = False
    call_log_error: str | None = None
    duration_ms: int | None = None
    turns: int = 0
    turns_by_role: dict[str, int] = field(default_factory=dict)
    interruptions: int = 0
    user_joined: bool | None = None
    first_response_latency_ms: float | None = None
    average_response_latency_ms: float | None = None
    response_count: int = 0
    latency_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict, as :func:`dataclasses.asdict` gives it.

        Only ``turns_by_role`` is a container, so it alone is copied (``asdict`` deep-copies all).
        """
        record = {name: getattr(self, name) for name in _SESSION_FIELDS}
        record["turns_by_role"] = dict(self.turns_by_role)
        return record


_SESSION_FIELDS = tuple(f.name for f in fields(SessionMetrics))


def response_latencies(turns: list[CallLogTurn]) -> list[float]:
    """Every user-turn-end → next-agent-turn-begin gap, in order, in milliseconds (never negative)."""
    latencies: list[float] = []
    pending_user_end: int | None = None
    for turn in turns:
        role = turn.role.strip().lower()
        if role == ROLE_USER:
            # A user turn without an end time cannot anchor a latency; it also voids an earlier anchor.
            pending_user_end = turn.end_ms
        elif role == ROLE_AGENT:
            if pending_user_end is not None and turn.begin_ms is not None:
                latencies.append(float(max(0, turn.begin_ms - pending_user_end)))
            pending_user_end = None
    return latencies


def turns_by_role(turns: list[CallLogTurn]) -> dict[str, int]:
    """Return the number of turns per role, lower-cased; a turn with no role counts as ``"unknown"``."""
    counts = Counter((turn.role.strip().lower() or "unknown") for turn in turns)
    return dict(sorted(counts.items()))


def session_duration_ms(log: CallLog) -> int | None:
    """``DurationMs``, else ``EndTime - StartTime``, else the end of the last timed turn."""
    if log.duration_ms is not None:
        return max(0, log.duration_ms)
    if log.start_time is not None and log.end_time is not None:
        try:
            return max(0, int((log.end_time - log.start_time).total_seconds() * 1000))
        except TypeError:  # one aware, one naive: not comparable, so not guessed
            return None
    ends = [turn.end_ms for turn in log.turns if turn.end_ms is not None]
    return max(ends) if ends else None


def user_joined(log: CallLog) -> bool | None:
    """Return the log's ``UserJoined``, else whether any user turn exists (None when there are no turns)."""
    if log.user_joined is not None:
        return log.user_joined
    if not log.turns:
        return None
    return any(turn.role.strip().lower() == ROLE_USER for turn in log.turns)


def session_metrics(
    instance: AIAgentInstance | None,
    log: CallLog | None,
    *,
    agent_id: str | None = None,
    call_log_error: str | None = None,
) -> SessionMetrics:
    """Return the metrics of one session: identifiers from the instance, figures from its call log.

    :param instance: the ListAIAgentInstance entry (status, ChannelId, UserData), if known.
    :param log: the parsed call log, or None when there is none (yet) or it could not be read.
    :param agent_id: the agent id the instance was listed under (List entries do not carry it).
    :param call_log_error: why the call log is missing, recorded as is.
    """
    user_data = instance.user_data if instance is not None else None
    if user_data is None and log is not None:
        user_data = log.user_data
    status = instance.status.value if instance is not None and instance.status is not None else "Unknown"
    metrics = SessionMetrics(
        agent_id=agent_id or (log.agent_id if log is not None else None),
        channel_id=(instance.channel_id if instance is not None else None)
        or (log.channel_id if log is not None else None),
        correlation_id=correlation_id_of(user_data),
        status=status,
        instance_id=(instance.instance_id if instance is not None else None)
        or (log.instance_id if log is not None else None),
        session_id=(instance.session_id if instance is not None else None)
        or (log.session_id if log is not None else None),
        call_log_error=call_log_error,
    )
    if log is None:
        return metrics
    metrics.has_call_log = True
    metrics.start_time = log.start_time.isoformat() if log.start_time is not None else None
    metrics.end_time = log.end_time.isoformat() if log.end_time is not None else None
    metrics.end_reason = log.end_reason
    metrics.duration_ms = session_duration_ms(log)
    metrics.turns = len(log.turns)
    metrics.turns_by_role = turns_by_role(log.turns)
    metrics.interruptions = sum(1 for turn in log.turns if turn.interrupted)
    metrics.user_joined = user_joined(log)
    latencies = response_latencies(log.turns)
    if latencies:
        metrics.first_response_latency_ms = latencies[0]
        metrics.average_response_latency_ms = round(sum(latencies) / len(latencies), 3)
        metrics.response_count = len(latencies)
        metrics.latency_source = LATENCY_FROM_TURNS
    elif (
        log.metrics.first_response_latency_ms is not None
        or log.metrics.average_response_latency_ms is not None
    ):
        metrics.first_response_latency_ms = log.metrics.first_response_latency_ms
        metrics.average_response_latency_ms = log.metrics.average_response_latency_ms
        metrics.latency_source = LATENCY_FROM_SERVICE
    return metrics
