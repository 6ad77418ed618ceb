"""Campaign scheduling decisions: calling windows, the redial policy and what each recipient needs next.

Everything here is a pure function of the recipient, its attempts so far and a clock value given by
the caller, so the operator's every resume takes the same decisions from the same facts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from airflow_provider_ice.api.errors import IceValidationError

from .ledger import Attempt, AttemptState


def _clock(value: Any, parameter: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24:
        return time(0) if value == 24 else time(value)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise IceValidationError(parameter, f"must be an hour 0-24 or 'HH:MM', got {value!r}")


@dataclass(frozen=True)
class CallingWindow:
    """Local hours in which recipients may be called, ``[start, end)`` in each recipient's time zone.

    ``start`` after ``end`` spans midnight (e.g. 20:00-02:00).
    """

    start: time
    end: time

    @classmethod
    def parse(cls, value: Any) -> CallingWindow | None:
        """Return the window of ``(start, end)`` (hours or ``"HH:MM"``) or ``"HH:MM-HH:MM"``, or None."""
        if value is None or isinstance(value, CallingWindow):
            return value
        if isinstance(value, str) and "-" in value:
            value = value.split("-", 1)
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise IceValidationError(
                "calling_window",
                f"must be (start, end) local hours, e.g. (9, 18) or '09:00-18:00'; got {value!r}",
            )
        window = cls(_clock(value[0], "calling_window"), _clock(value[1], "calling_window"))
        if window.start == window.end:
            raise IceValidationError("calling_window", "start and end are equal: the window would never open")
        return window

    def is_open(self, now: datetime, tz: str) -> bool:
        """Whether ``now`` (aware) falls inside the window in time zone ``tz``."""
        local = now.astimezone(ZoneInfo(tz)).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_open(self, now: datetime, tz: str) -> datetime:
        """Return the first instant at or after ``now`` at which the window is open (aware UTC)."""
        if self.is_open(now, tz):
            return now
        zone = ZoneInfo(tz)
        local = now.astimezone(zone)
        for days in range(3):
            day = (local + timedelta(days=days)).date()
            opening = datetime.combine(day, self.start, tzinfo=zone)
            if opening >= local:
                # A DST gap may move the wall-clock time; comparing in UTC keeps it right.
                return opening.astimezone(timezone.utc)
        raise AssertionError("a daily window opens within three days")  # pragma: no cover

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class RedialPolicy:
    """How often a person who never joined is called again.

    :param max_attempts: calls per recipient at most (1: no redial).
    :param redial_after: seconds between the end of an unanswered call and the next attempt.
    """

    max_attempts: int = 1
    redial_after: float = 3600.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or not 1 <= self.max_attempts <= 20
        ):
            raise IceValidationError(
                "max_attempts", f"must be an integer from 1 to 20, got {self.max_attempts!r}"
            )
        if (
            not isinstance(self.redial_after, (int, float))
            or not math.isfinite(self.redial_after)
            or self.redial_after < 0
        ):
            raise IceValidationError(
                "redial_after", f"must be a finite, non-negative duration, got {self.redial_after!r}"
            )


class Next(str, Enum):
    """What a recipient needs next."""

    DONE = "done"  # reached, out of attempts, refused, or outcome unknown for good
    ACTIVE = "active"  # a call is placed (or being concluded) and not Finished
    CALL = "call"  # place attempt ``number`` now
    LATER = "later"  # nothing before ``at``


@dataclass(frozen=True)
class Decision:
    """What one recipient needs next: the step, the attempt number, and for LATER the epoch time."""

    next: Next
    number: int = 0
    at: float | None = None


def decide(
    attempts: list[Attempt],
    now: float,
    *,
    policy: RedialPolicy,
    window: CallingWindow | None,
    tz: str,
) -> Decision:
    """Decide the next step for one recipient, given its attempts in order (see :class:`Next`)."""
    if not attempts:
        return _call_when_open(1, now, window, tz)
    last = attempts[-1]
    if last.state in (AttemptState.SENDING, AttemptState.PLACED):
        return Decision(Next.ACTIVE, last.number)
    if last.state is AttemptState.NOT_PLACED:
        # The same attempt again (same correlation id): nothing was placed for it.
        return _call_when_open(last.number, max(now, last.retry_at or now), window, tz, now)
    if last.state is not AttemptState.FINISHED or last.joined is not False:
        return Decision(Next.DONE, last.number)  # reached, refused, or joined unknown: never redial blindly
    if last.number >= policy.max_attempts:
        return Decision(Next.DONE, last.number)
    due = (last.finished_at or now) + policy.redial_after
    return _call_when_open(last.number + 1, max(now, due), window, tz, now)


def _call_when_open(
    number: int, earliest: float, window: CallingWindow | None, tz: str, now: float | None = None
) -> Decision:
    now = earliest if now is None else now
    at = earliest
    if window is not None:
        at = window.next_open(datetime.fromtimestamp(earliest, timezone.utc), tz).timestamp()
    if at <= now:
        return Decision(Next.CALL, number)
    return Decision(Next.LATER, number, at)
