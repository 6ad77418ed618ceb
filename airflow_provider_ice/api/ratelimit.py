"""Client-side rate limiting: one adaptive token bucket per (account, endpoint, action), process-wide.

Every client built for the same AccessKey ID and endpoint (sync or async, any hook, any event loop or
thread of the process) draws from the same bucket for an action, so a campaign, the coalesced poller
and the analytics listing running in one process share the account's quota instead of each
spending it. The quota is per Alibaba Cloud account (ice-api.md §6), hence the AccessKey ID, not
the Airflow connection id, in the key; no secret is part of it.

The decision is written once, here, and does no I/O: :meth:`TokenBucket.reserve` answers how long
the caller must wait before sending, and the sync client sleeps with ``time.sleep`` while the async
one awaits ``asyncio.sleep``. Reservations may drive the bucket below zero, so concurrent callers
queue in order (each waits for its own slot) rather than waking together.

Adaptation (AIMD): a throttling answer halves the bucket's current rate and empties it, unless
the throttled request was sent before the last decrease (it speaks of the old rate: the answers to
requests already in flight count as one signal). The rate then climbs back linearly, reaching the
configured rate again after :data:`RECOVERY_SECONDS` from zero. Throttled answers therefore stay
rare instead of being absorbed by retries.

Off unless configured: a client without :class:`RateLimits` (or with every rate unlimited) takes no
lock and never waits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import IceValidationError
from .validation import bounded_number

#: A throttling answer leaves at least this share of the configured rate.
MIN_RATE_SHARE = 1 / 16
#: Factor applied to the current rate on a throttling answer.
DECREASE_FACTOR = 0.5
#: Seconds the rate takes to climb back from zero to the configured rate (linear recovery).
RECOVERY_SECONDS = 60.0
#: A bucket holds at most this many seconds of its rate (and at least one request).
BURST_SECONDS = 0.1
#: The highest configurable rate, requests per second.
MAX_RATE = 100_000.0

Clock = Callable[[], float]


def _rate(value: Any, parameter: str) -> float | None:
    """Return a positive finite number of requests per second, or None for unlimited."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "unlimited", "none")):
        return None
    if isinstance(value, bool):
        raise IceValidationError(
            parameter, f"must be requests per second (0 < rate <= {MAX_RATE:g}), got {value!r}"
        )
    return bounded_number(
        value, parameter, MAX_RATE, f"must be requests per second (0 < rate <= {MAX_RATE:g}) or null"
    )


@dataclass(frozen=True)
class RateLimits:
    """Requests per second a process may send, per action.

    ``default`` applies to every action unless ``per_action`` names it (``None`` there exempts it).

    :param default: requests per second for any action, or None (unlimited).
    :param per_action: ``{action: rate or None}`` overrides, e.g. ``{"GenerateAIAgentCall": 5}``.
    :raises IceValidationError: naming the parameter, for a rate that is not a positive number or
        an action name that is not a string.
    """

    default: float | None = None
    per_action: Mapping[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", _rate(self.default, "rate_limit"))
        if not isinstance(self.per_action, Mapping):
            raise IceValidationError(
                "rate_limits",
                "must be an object of action name -> requests per second, "
                f"got {type(self.per_action).__name__}",
            )
        checked: dict[str, float | None] = {}
        for action, value in self.per_action.items():
            if not isinstance(action, str) or not action.strip():
                raise IceValidationError(
                    "rate_limits", f"action names must be non-empty strings, got {action!r}"
                )
            checked[action.strip()] = _rate(value, f"rate_limits.{action}")
        object.__setattr__(self, "per_action", checked)

    @property
    def enabled(self) -> bool:
        """Whether any action is limited."""
        return self.default is not None or any(rate is not None for rate in self.per_action.values())

    def rate_for(self, action: str) -> float | None:
        """Return the requests per second allowed for ``action`` (None: unlimited)."""
        return self.per_action.get(action, self.default)


class TokenBucket:
    """One adaptive token bucket (thread-safe; the same object serves sync and async callers).

    :param rate: the configured requests per second (the ceiling the rate recovers to).
    :param clock: monotonic seconds (tests inject one).
    """

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        now = clock()
        self._ceiling = rate
        self._rate = rate
        self._updated = now
        self._tokens = self._capacity(rate)
        self._last_decrease = -math.inf
        #: Throttling answers reported, and how many of them decreased the rate.
        self.throttled = 0
        self.decreases = 0

    @staticmethod
    def _capacity(rate: float) -> float:
        return max(1.0, rate * BURST_SECONDS)

    @property
    def ceiling(self) -> float:
        return self._ceiling

    def configure(self, rate: float) -> None:
        """Set the configured rate (the latest client built for this bucket decides)."""
        with self._lock:
            self._advance(self._clock())
            self._ceiling = rate
            self._rate = min(self._rate, rate)

    def current_rate(self) -> float:
        """Return the rate in force now (the ceiling, or less while recovering from throttling)."""
        with self._lock:
            self._advance(self._clock())
            return self._rate

    def _advance(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        if elapsed == 0.0:
            return
        # Tokens accrue at the rate in force over the interval (the rate before this step's recovery:
        # slightly conservative), then the rate recovers linearly towards the ceiling.
        self._tokens = min(self._capacity(self._rate), self._tokens + elapsed * self._rate)
        if self._rate < self._ceiling:
            self._rate = min(self._ceiling, self._rate + elapsed * self._ceiling / RECOVERY_SECONDS)
        self._updated = now

    def reserve(self) -> tuple[float, float]:
        """Take one request's token; return the wait before sending it, and its ticket.

        The wait is in seconds (0: at once); the ticket is when the request goes, on this bucket's
        clock, for :meth:`on_throttled`.
        """
        with self._lock:
            now = self._clock()
            self._advance(now)
            self._tokens -= 1.0
            delay = 0.0 if self._tokens >= 0.0 else -self._tokens / self._rate
            return delay, now + delay

    def on_throttled(self, ticket: float) -> None:
        """Halve the rate and empty the bucket after a throttling answer to the request of ``ticket``.

        Nothing changes when that request went before the last decrease (it spoke of the old rate).
        """
        with self._lock:
            now = self._clock()
            self._advance(now)
            self.throttled += 1
            if ticket < self._last_decrease:
                return
            self._last_decrease = now
            self.decreases += 1
            self._rate = max(self._ceiling * MIN_RATE_SHARE, self._rate * DECREASE_FACTOR)
            self._tokens = min(self._tokens, 0.0)

    def __repr__(self) -> str:
        return f"TokenBucket(ceiling={self._ceiling:g}/s, rate={self._rate:.3g}/s)"


_REGISTRY: dict[tuple[str, str, str], TokenBucket] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_bucket(
    identity: tuple[str, str], action: str, rate: float, *, clock: Clock = time.monotonic
) -> TokenBucket:
    """Return the process-wide bucket of ``identity`` and ``action``, configured to ``rate``.

    ``identity`` is (AccessKey ID, endpoint); the bucket is created on first use.
    """
    key = (identity[0], identity[1], action)
    with _REGISTRY_LOCK:
        bucket = _REGISTRY.get(key)
        if bucket is None:
            bucket = _REGISTRY[key] = TokenBucket(rate, clock=clock)
            return bucket
    if bucket.ceiling != rate:
        bucket.configure(rate)
    return bucket


def reset_shared_buckets() -> None:
    """Forget every shared bucket (tests and benchmarks start from full buckets)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


class ClientLimiter:
    """What one client uses: its limits resolved to the shared buckets, one per action, on demand.

    :param identity: (AccessKey ID, endpoint URL) the buckets are shared by.
    :param limits: the rates.
    """

    def __init__(
        self, identity: tuple[str, str], limits: RateLimits, *, clock: Clock = time.monotonic
    ) -> None:
        self._identity = identity
        self._limits = limits
        self._clock = clock
        self._buckets: dict[str, TokenBucket | None] = {}

    def bucket(self, action: str) -> TokenBucket | None:
        """Return the shared bucket of ``action``, or None when it is unlimited."""
        try:
            return self._buckets[action]
        except KeyError:
            rate = self._limits.rate_for(action)
            bucket = None if rate is None else shared_bucket(self._identity, action, rate, clock=self._clock)
            self._buckets[action] = bucket
            return bucket

    def reserve(self, action: str) -> tuple[float, float]:
        """Return the seconds to wait before sending ``action``, and the request's ticket.

        The wait is 0 when the action is unlimited or a token is there; the ticket is for
        :meth:`on_throttled`.
        """
        bucket = self.bucket(action)
        return (0.0, 0.0) if bucket is None else bucket.reserve()

    def on_throttled(self, action: str, ticket: float) -> None:
        """Slow ``action`` down after a throttling answer to the request of ``ticket``."""
        bucket = self.bucket(action)
        if bucket is not None:
            bucket.on_throttled(ticket)


def client_limiter(identity: tuple[str, str], limits: RateLimits | None) -> ClientLimiter | None:
    """Return a limiter for a client, or None when ``limits`` limit nothing (the client skips it)."""
    if limits is None or not limits.enabled:
        return None
    return ClientLimiter(identity, limits)


def rate_limits_from_extras(extras: Mapping[str, Any]) -> RateLimits | None:
    """Return the :class:`RateLimits` of connection extras, or None when none is set.

    ``rate_limit`` is requests per second for every action, ``rate_limits`` an object (or its JSON
    text) of per-action rates.

    :raises IceValidationError: naming the extra, for a value that is not a rate or an object.
    """
    default, per_action = extras.get("rate_limit"), extras.get("rate_limits")
    if isinstance(per_action, str):
        text = per_action.strip()
        if not text:
            per_action = None
        else:
            import json

            try:
                per_action = json.loads(text)
            except ValueError:
                raise IceValidationError(
                    "rate_limits", "must be a JSON object of action name -> requests per second"
                ) from None
    if default in (None, "") and not per_action:
        return None
    if per_action is not None and not isinstance(per_action, Mapping):
        raise IceValidationError(
            "rate_limits",
            f"must be an object of action name -> requests per second, got {type(per_action).__name__}",
        )
    return RateLimits(default, dict(per_action or {}))
