"""Seeded fault decisions for API calls and call-log downloads.

Each API call draws exactly four numbers from one ``random.Random(seed)`` stream and each call-log
download two, whatever the rates are, so the sequence of faults a sequential client meets depends
only on the seed and on the order of its requests.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from airflow_provider_ice.emulator.config import CREATING_ACTIONS, FaultConfig
from airflow_provider_ice.emulator.wire import ApiError


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
    error: bool = False
    truncate: bool = False
    delay: float = 0.0


class FaultInjector:
    """Holds the current :class:`FaultConfig` and draws decisions from the seeded stream.

    :param config: the initial faults.
    :param seed: seed of the decision stream (reset with :meth:`reset`).
    """

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(f"faults:{seed}")
        self._lock = threading.Lock()
        self.config = config

    def set(self, **changes: Any) -> FaultConfig:
        with self._lock:
            self.config = self.config.replace(**changes)
            return self.config

    def replace_all(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config

    def reset(self, config: FaultConfig) -> None:
        """Back to ``config`` and to the start of the decision stream."""
        with self._lock:
            self.config = config
            self._rng = random.Random(f"faults:{self._seed}")

    def for_api(self, action: str) -> ApiFaults:
        with self._lock:
            config = self.config
            u_drop, u_throttle, u_error, u_slow = (self._rng.random() for _ in range(4))
        delay = config.latency
        if not config.targets(action):
            return ApiFaults(delay=delay)
        dropped = u_drop < config.drop_rate
        if dropped and not config.drop_after_execute:
            return ApiFaults(drop_before=True)
        if u_throttle < config.throttle_rate:
            return ApiFaults(
                refuse=ApiError(
                    config.throttle_status,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    {"x-acs-retry-after": str(config.retry_after_ms)},
                ),
                delay=delay,
            )
        if u_error < config.error_rate:
            # The same draw picks which 5xx: its position inside the error band.
            if u_error < config.error_rate / 2:
                error = ApiError(
                    500, "InternalError", "The request processing has failed due to some unknown error."
                )
            else:
                error = ApiError(
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                )
            return ApiFaults(refuse=error, delay=delay)
        if action in CREATING_ACTIONS and u_slow < config.slow_create_rate:
            delay += config.slow_create_delay
        return ApiFaults(drop_after=dropped, delay=delay)

    def for_calllog(self) -> CallLogFaults:
        with self._lock:
            config = self.config
            u_error, u_truncate = self._rng.random(), self._rng.random()
        return CallLogFaults(
            error=u_error < config.calllog_error_rate,
            truncate=u_truncate < config.calllog_truncate_rate,
            delay=config.latency,
        )
