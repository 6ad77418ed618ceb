"""The summary of one data interval, accumulated session by session.

:class:`IntervalSummary` is fed one :class:`~.metrics.SessionMetrics` at a time, so the sessions
themselves can be streamed to disk; it keeps only counters and one number per session for the
percentiles (a few bytes each, even for a busy day).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_ice.analytics.metrics import SessionMetrics

PERCENTILES: tuple[int, ...] = (50, 90, 95)
#: The metrics whose distribution the summary describes.
DISTRIBUTIONS = ("duration_ms", "first_response_latency_ms", "average_response_latency_ms", "turns")
FINISHED = "Finished"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q``-th percentile (0-100) with linear interpolation between ranks; None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be between 0 and 100, got {q!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value, 3)


def describe(values: Sequence[float], percentiles: Iterable[int] = PERCENTILES) -> dict[str, Any]:
    """``count``, ``min``, ``max``, ``mean`` and ``pNN`` of ``values`` (None when empty)."""
    result: dict[str, Any] = {
        "count": len(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "mean": round(sum(values) / len(values), 3) if values else None,
    }
    for q in percentiles:
        result[f"p{q}"] = percentile(values, q)
    return result


@dataclass
class IntervalSummary:
    """Counts, totals and percentiles over the sessions of one interval.

    :param start: the interval start (ISO-8601), recorded as is.
    :param end: the interval end (exclusive, ISO-8601), recorded as is.
    :param agent_ids: the agents whose instances were listed.
    """

    # Counters of the sessions; CollectStats (collect.py) counts what the collection itself did.
    start: str
    end: str
    agent_ids: list[str]
    sessions: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_agent: Counter[str] = field(default_factory=Counter)
    by_end_reason: Counter[str] = field(default_factory=Counter)
    turns_by_role: Counter[str] = field(default_factory=Counter)
    with_call_log: int = 0
    users_joined: int = 0
    interruptions: int = 0
    total_duration_ms: int = 0
    total_turns: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)
    call_log_errors: list[dict[str, Any]] = field(default_factory=list)
    _values: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in DISTRIBUTIONS})

    def add(self, session: SessionMetrics) -> None:
        """Count one session in."""
        self.sessions += 1
        self.by_status[session.status] += 1
        self.by_agent[session.agent_id or "unknown"] += 1
        ref = {
            "agent_id": session.agent_id,
            "channel_id": session.channel_id,
            "correlation_id": session.correlation_id,
            "status": session.status,
        }
        if session.status != FINISHED or (not session.has_call_log and session.call_log_error is None):
            # Not finished, or finished without a CallLogUrl yet: a rerun will pick it up.
            self.pending.append(ref)
        if session.call_log_error is not None:
            self.call_log_errors.append({**ref, "error": session.call_log_error})
        if not session.has_call_log:
            return
        self.with_call_log += 1
        self.users_joined += 1 if session.user_joined else 0
        self.interruptions += session.interruptions
        self.total_turns += session.turns
        self.turns_by_role.update(session.turns_by_role)
        if session.end_reason:
            self.by_end_reason[session.end_reason] += 1
        if session.duration_ms is not None:
            self.total_duration_ms += session.duration_ms
        for name in DISTRIBUTIONS:
            value = getattr(session, name)
            if value is not None:
                self._values[name].append(float(value))

    def to_dict(self) -> dict[str, Any]:
        """Return the ``summary.json`` document."""
        return {
            "interval": {"start": self.start, "end": self.end},
            "agent_ids": list(self.agent_ids),
            "sessions": self.sessions,
            "by_status": dict(sorted(self.by_status.items())),
            "by_agent": dict(sorted(self.by_agent.items())),
            "by_end_reason": dict(sorted(self.by_end_reason.items())),
            "with_call_log": self.with_call_log,
            "pending_count": len(self.pending),
            "pending": self.pending,
            "call_log_error_count": len(self.call_log_errors),
            "call_log_errors": self.call_log_errors,
            "totals": {
                "duration_ms": self.total_duration_ms,
                "turns": self.total_turns,
                "turns_by_role": dict(sorted(self.turns_by_role.items())),
                "interruptions": self.interruptions,
                "users_joined": self.users_joined,
            },
            "distributions": {name: describe(values) for name, values in self._values.items()},
        }


def summarise(
    sessions: Iterable[SessionMetrics], *, start: str, end: str, agent_ids: list[str]
) -> dict[str, Any]:
    """Summary of a finite set of sessions in one call (the operator streams via :class:`IntervalSummary`)."""
    summary = IntervalSummary(start=start, end=end, agent_ids=agent_ids)
    for session in sessions:
        summary.add(session)
    return summary.to_dict()
