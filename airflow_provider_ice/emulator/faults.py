"""Seeded fault decisions for API calls and call-log downloads, forced faults, and their tally.

Each API call draws exactly four numbers from one ``random.Random(seed)`` stream and each call-log
download two, whatever the rates are (and whether a fault is forced), so the sequence of faults a
sequential client meets depends only on the seed and on the order of its requests.

Every fault injected is counted by kind and action (:data:`FAULT_KINDS`; downloads count under the
pseudo-action :data:`CALLLOG_ACTION`), so tests judge what happened from the emulator's own state.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_ice.api.protocol import CREATING_ACTIONS
from airflow_provider_ice.emulator.config import ACTIONS, FaultConfig
from airflow_provider_ice.emulator.wire import ApiError

#: The pseudo-action under which call-log downloads are counted (and their faults forced).
CALLLOG_ACTION = "CallLogDownload"
#: Faults of API calls: refused with ``Throttling.User``, answered 500/503, connection dropped,
#: creating call answered after ``slow_create_delay``.
API_KINDS = ("throttled", "server_error_5xx", "dropped_connection", "slow_create")
#: Faults of downloads: answered 503, body cut in half, refused because the URL had expired.
CALLLOG_KINDS = ("calllog_error", "calllog_truncated", "calllog_expired")
#: Faults of the listing: a ListAIAgentInstance answer that left out instances created less than
#: ``listing_lag`` seconds before (counted once per answer that left out at least one).
LISTING_KINDS = ("listing_lag",)
FAULT_KINDS = API_KINDS + CALLLOG_KINDS + LISTING_KINDS
#: Download faults that can be forced (an expired URL is a property of the URL handed out earlier).
FORCEABLE_CALLLOG_KINDS = ("calllog_error", "calllog_truncated")


@dataclass(frozen=True)
class ApiFaults:
    """What happens to one API call.

    :param refuse: an error answered instead of running the action (throttling, 5xx), or None.
    :param drop_before: close the connection without running the action.
    :param drop_after: run the action, then close the connection without answering.
    :param delay: seconds to wait before answering (latency plus slow create).
    """

    refuse: ApiError | None = None
    drop_before: bool = False
    drop_after: bool = False
    delay: float = 0.0


@dataclass(frozen=True)
class CallLogFaults:
    """What happens to one call-log download.

    :param error: answer 503 with OSS's XML error.
    :param truncate: serve half of the body.
    :param delay: seconds to wait before answering.
    """

    error: bool = False
    truncate: bool = False
    delay: float = 0.0


def forceable_kinds(action: str) -> tuple[str, ...]:
    """Return the fault kinds :meth:`FaultInjector.force` accepts for ``action`` (empty if it is unknown)."""
    if action == CALLLOG_ACTION:
        return FORCEABLE_CALLLOG_KINDS
    if action not in ACTIONS:
        return ()
    return API_KINDS if action in CREATING_ACTIONS else API_KINDS[:-1]


def _forced_config(config: FaultConfig, kind: str) -> FaultConfig:
    """``config`` with ``kind`` certain and the other API faults off, for every action."""
    return dataclasses.replace(
        config,
        actions=None,
        throttle_rate=float(kind == "throttled"),
        error_rate=float(kind == "server_error_5xx"),
        drop_rate=float(kind == "dropped_connection"),
        slow_create_rate=float(kind == "slow_create"),
    )


def _api_decision(
    config: FaultConfig, action: str, draws: tuple[float, float, float, float]
) -> tuple[ApiFaults, list[str]]:
    """Return the decision for one API call from its four draws, and the fault kinds it injects."""
    u_drop, u_throttle, u_error, u_slow = draws
    delay = config.latency
    if not config.targets(action):
        return ApiFaults(delay=delay), []
    dropped = u_drop < config.drop_rate
    if dropped and not config.drop_after_execute:
        return ApiFaults(drop_before=True), ["dropped_connection"]
    if u_throttle < config.throttle_rate:
        throttled = ApiError(
            config.throttle_status,
            "Throttling.User",
            "Request was denied due to user flow control.",
            {"x-acs-retry-after": str(config.retry_after_ms)},
        )
        return ApiFaults(refuse=throttled, delay=delay), ["throttled"]
    if u_error < config.error_rate:
        # The same draw picks which 5xx: its position inside the error band.
        if u_error < config.error_rate / 2:
            error = ApiError(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
        else:
            error = ApiError(
                503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
            )
        return ApiFaults(refuse=error, delay=delay), ["server_error_5xx"]
    kinds = ["dropped_connection"] if dropped else []
    if action in CREATING_ACTIONS and u_slow < config.slow_create_rate:
        delay += config.slow_create_delay
        kinds.append("slow_create")
    return ApiFaults(drop_after=dropped, delay=delay), kinds


def by_kind(counts: Mapping[tuple[str, str], int], kinds: Iterable[str]) -> dict[str, dict[str, int]]:
    """Return ``{kind: {action: n}}`` for every kind of ``kinds`` from counts by ``(kind, action)``."""
    grouped: dict[str, dict[str, int]] = {kind: {} for kind in kinds}
    for (kind, action), n in sorted(counts.items()):
        grouped[kind][action] = n
    return grouped


class FaultInjector:
    """Decide which faults each call meets: seeded draws, forced faults, and a count of each.

    Holds the current :class:`FaultConfig`, draws decisions from the seeded stream, applies forced
    faults and counts every fault injected.

    :param config: the initial faults.
    :param seed: seed of the decision stream (reset with :meth:`reset`).
    """

    def __init__(self, config: FaultConfig, seed: int | None) -> None:
        self._seed = 0 if seed is None else seed  # unseeded: the same decisions as seed 0
        self._rng = random.Random(f"faults:{self._seed}")
        self._lock = threading.Lock()
        self.config = config
        self._injected: Counter[tuple[str, str]] = Counter()
        self._forced: dict[str, deque[str]] = {}

    def set(self, **changes: Any) -> FaultConfig:
        with self._lock:
            self.config = self.config.replace(**changes)
            return self.config

    def replace_all(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config

    def reset(self, config: FaultConfig) -> None:
        """Back to ``config``, to the start of the decision stream, no count and nothing forced."""
        with self._lock:
            self.config = config
            self._rng = random.Random(f"faults:{self._seed}")
            self._injected.clear()
            self._forced.clear()

    def force(self, action: str, kind: str, count: int = 1) -> list[str]:
        """Make the next ``count`` calls of ``action`` meet fault ``kind`` for sure.

        Forcing queues after what is already forced; returns every kind still forced on ``action``,
        in order.

        :raises ValueError: naming the allowed values, for an unknown action, a kind that cannot
            happen to it, or a count below 1.
        """
        allowed_actions = (*ACTIONS, CALLLOG_ACTION)
        if action not in allowed_actions:
            raise ValueError(f"action: unknown {action!r}; allowed: {', '.join(allowed_actions)}")
        kinds = forceable_kinds(action)
        if kind not in kinds:
            raise ValueError(f"kind: {kind!r} cannot be forced on {action}; allowed: {', '.join(kinds)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count: must be an integer >= 1, got {count!r}")
        with self._lock:
            queue = self._forced.setdefault(action, deque())
            queue.extend([kind] * count)
            return list(queue)

    def forced(self) -> dict[str, list[str]]:
        """Kinds still forced, by action, in the order they will be met."""
        with self._lock:
            return {action: list(queue) for action, queue in self._forced.items() if queue}

    def _take_forced(self, action: str) -> str | None:
        queue = self._forced.get(action)
        return queue.popleft() if queue else None

    def count(self, kind: str, action: str) -> None:
        """Count one injected fault (the download handler counts the ones only it can see)."""
        with self._lock:
            self._injected[(kind, action)] += 1

    def injected(self) -> dict[str, dict[str, int]]:
        """``{kind: {action: n}}`` for every kind of :data:`FAULT_KINDS` (empty when never injected)."""
        with self._lock:
            counts = dict(self._injected)
        return by_kind(counts, FAULT_KINDS)

    def for_api(self, action: str) -> ApiFaults:
        with self._lock:
            config = self.config
            # Drawn even when a fault is forced, so the rest of the sequence stays the same.
            draws = (self._rng.random(), self._rng.random(), self._rng.random(), self._rng.random())
            forced = self._take_forced(action)
        if forced is not None:
            config = _forced_config(config, forced)
        decision, kinds = _api_decision(config, action, draws)
        if kinds:
            with self._lock:
                for kind in kinds:
                    self._injected[(kind, action)] += 1
        return decision

    def for_calllog(self) -> CallLogFaults:
        """Return the drawn faults of one download.

        :meth:`settle_calllog` applies forcing and counts them once the download reaches the object
        (a refused URL meets neither).
        """
        with self._lock:
            config = self.config
            u_error, u_truncate = self._rng.random(), self._rng.random()
        return CallLogFaults(
            error=u_error < config.calllog_error_rate,
            truncate=u_truncate < config.calllog_truncate_rate,
            delay=config.latency,
        )

    def settle_calllog(self, drawn: CallLogFaults) -> CallLogFaults:
        """Return the faults a download that reached its object really meets (forced ones first), counted."""
        with self._lock:
            forced = self._take_forced(CALLLOG_ACTION)
            if forced is not None:
                drawn = CallLogFaults(
                    error=forced == "calllog_error", truncate=forced == "calllog_truncated", delay=drawn.delay
                )
            # A 503 answer carries no body, so it is never truncated as well.
            if drawn.error:
                self._injected[("calllog_error", CALLLOG_ACTION)] += 1
            elif drawn.truncate:
                self._injected[("calllog_truncated", CALLLOG_ACTION)] += 1
        return drawn
