"""The account's QPS quotas and the agents' concurrent-call limit, enforced as the service would.

* **QPS.** A token bucket per action holds one second of the action's quota and refills at the
  quota; a request finding it empty is answered ``Throttling.User`` (HTTP 400, "user flow control",
  the gateway's code for an account's flow control; ice-api.md §6) with ``x-acs-retry-after`` set to
  the milliseconds until a token is back, and the action does not run.
* **Concurrent calls.** An agent may have at most ``agent_concurrency`` instances not yet Finished
  (a call counts from its creation, whether or not the user joined). A creating call beyond that
  (GenerateAIAgentCall, StartAIAgentOutboundCall, StartAIAgentInstance) creates nothing and is
  answered HTTP 400 ``QuotaExceeded.AIAgentConcurrency``. The real code is undocumented (ice-api.md
  §6 lists no ICE business codes); this one is a plausible gateway-style name, used consistently by
  the emulator and understood by the client (:data:`~airflow_provider_ice.api.errors.CONCURRENCY_LIMIT_CODE`).

Every refusal is counted by kind and action for :meth:`IceEmulator.state`.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from airflow_provider_ice.api.errors import CONCURRENCY_LIMIT_CODE
from airflow_provider_ice.emulator.config import QuotaConfig
from airflow_provider_ice.emulator.faults import by_kind
from airflow_provider_ice.emulator.store import FINISHED, Instance
from airflow_provider_ice.emulator.wire import ApiError

#: Kinds of refusal in the tally.
QUOTA_KINDS = ("throttled", "agent_concurrency")


class _Bucket:
    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.tokens, self.updated = rate, max(1.0, rate), now

    def take(self, now: float) -> float:
        """Take a token; return 0 when admitted, else the seconds until one is back."""
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class _AgentCalls:
    """One agent's calls not yet Finished: a heap by planned end, plus the live ones by id."""

    __slots__ = ("ends", "live")

    def __init__(self) -> None:
        self.ends: list[tuple[float, int, str]] = []
        self.live: dict[str, Instance] = {}

    def active(self, now: float, limit: float) -> int:
        while self.ends and self.ends[0][0] <= now:
            self.live.pop(heapq.heappop(self.ends)[2], None)
        if len(self.live) >= limit:
            # Apparently full: calls stopped early are still listed; drop them (rare, O(live)).
            for instance_id in [i for i, inst in self.live.items() if inst.status(now) == FINISHED]:
                del self.live[instance_id]
        return len(self.live)


class QuotaEnforcer:
    """Enforce the current :class:`QuotaConfig` and count every refusal.

    It holds the buckets and each agent's live calls.

    :param config: the initial quotas.
    :param clock: monotonic seconds for the buckets (the concurrency count uses the store's clock).
    """

    def __init__(self, config: QuotaConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.config = config
        self._buckets: dict[str, _Bucket] = {}
        self._agents: dict[str, _AgentCalls] = {}
        self._refused: Counter[tuple[str, str]] = Counter()

    def set(self, config: QuotaConfig | None = None, **changes: Any) -> QuotaConfig:
        """Replace the quotas and/or change some settings (buckets start full again)."""
        with self._lock:
            self.config = (config or self.config).replace(**changes) if changes else (config or self.config)
            self._buckets.clear()
            return self.config

    def reset(self, config: QuotaConfig) -> None:
        """Back to ``config``, full buckets, no live calls and no count."""
        with self._lock:
            self.config = config
            self._buckets.clear()
            self._agents.clear()
            self._refused.clear()

    def admit(self, action: str) -> None:
        """Take a token for ``action``.

        :raises ApiError: ``Throttling.User`` when the action's quota is spent.
        """
        rate = self.config.qps_for(action)
        if rate is None:
            return
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(action)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[action] = _Bucket(rate, now)
            wait = bucket.take(now)
            if not wait:
                return
            self._refused[("throttled", action)] += 1
        raise ApiError(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
            {"x-acs-retry-after": str(max(1, math.ceil(wait * 1000)))},
        )

    def check_agent(self, action: str, agent_id: str, now: float) -> None:
        """Before a creating call of ``agent_id``.

        :raises ApiError: ``QuotaExceeded.AIAgentConcurrency`` when the agent is full.
        """
        limit = self.config.agent_concurrency
        if limit is None:
            return
        with self._lock:
            calls = self._agents.get(agent_id)
            if calls is None or calls.active(now, limit) < limit:
                return
            self._refused[("agent_concurrency", action)] += 1
        raise ApiError(
            400,
            CONCURRENCY_LIMIT_CODE,
            f"The AI agent has reached its limit of {limit} concurrent calls; "
            "try again when a call has ended.",
        )

    def track(self, instance: Instance) -> None:
        """Count a call just created against its agent (always, so a limit set later is exact)."""
        with self._lock:
            calls = self._agents.get(instance.agent_id)
            if calls is None:
                calls = self._agents[instance.agent_id] = _AgentCalls()
            calls.live[instance.instance_id] = instance
            heapq.heappush(calls.ends, (instance.finished_at, instance.seq, instance.instance_id))

    def active_calls(self, now: float) -> dict[str, int]:
        """Return the calls not yet Finished, by agent (agents with none left out)."""
        with self._lock:
            counts = {agent: calls.active(now, math.inf) for agent, calls in self._agents.items()}
        return {agent: n for agent, n in counts.items() if n}

    def refused(self) -> dict[str, dict[str, int]]:
        """``{kind: {action: n}}`` for every kind of :data:`QUOTA_KINDS`."""
        with self._lock:
            counts = dict(self._refused)
        return by_kind(counts, QUOTA_KINDS)
