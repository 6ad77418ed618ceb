"""Agent instances and their lifecycle, computed lazily from timestamps.

No instance owns a timer or a task: its status at any moment follows from when it was created, when
the simulated user joins (never, for a no-show), when the conversation ends on its own, and when it
was stopped. That keeps 10,000+ instances cheap and the lifecycle exact under an injected clock.

Lifecycle (seconds after creation): the user joins after ``user_join_delay`` (``Executing``) and
hangs up ``call_duration`` later (``Finished``, EndReason ``UserHangup``); a no-show never joins
(``Finished`` after ``AgentConfig.UserOnlineTimeout``, default 60, EndReason ``UserOnlineTimeout``);
an idle user stays silent (``Finished`` after ``AgentConfig.MaxIdleTime``, default 600, EndReason
``MaxIdleTime``); StopAIAgentInstance finishes it at once (EndReason ``Stopped``), and again changes
nothing. ``no_show_rate`` and ``idle_rate`` draw no-shows and idle users.

A caller can script one call through its UserData (a JSON object) under the key ``EmulatorScenario``:
``{"EmulatorScenario": {"NoShow": true}}``, ``{"Idle": true}``, ``{"UserJoinDelay": 0.5, "CallDuration": 3}``,
``{"EarlyCallLogUrl": true}`` (a CallLogUrl listed before Finished). UserData is opaque to the real service.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.emulator.config import EmulatorConfig, Scenario, scenario_of, scenario_seconds
from airflow_provider_ice.emulator.identity import derive, wire_names

CREATED, EXECUTING, FINISHED = "Created", "Executing", "Finished"


def iso_utc(epoch: float) -> str:
    """``2025-07-18T06:39:08.000+00:00``, the GmtCreate format of the service."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


def _uniform(seed: int | None, instance_id: str, purpose: str) -> float:
    return int(derive(seed, instance_id, purpose, 8), 16) / 2.0**64


class Instance:
    """One agent instance. ``__slots__`` keeps 10,000 of them in a few megabytes."""

    __slots__ = (
        "agent_config",
        "agent_id",
        "called_number",
        "caller_number",
        "created_at",
        "end_reason",
        "expire",
        "instance_id",
        "join_at",
        "kind",
        "natural_end",
        "runtime",
        "seq",
        "session_id",
        "stopped_at",
        "template_config",
        "user_data",
        "user_id",
    )

    def __init__(self, instance_id: str, agent_id: str, seq: int, created_at: float, kind: str) -> None:
        self.instance_id = instance_id
        self.agent_id = agent_id
        self.seq = seq
        self.created_at = created_at
        self.kind = kind  # "rtc" (Generate), "runtime" (StartAIAgentInstance) or "outbound"
        self.user_id: str | None = None
        self.session_id: str | None = None
        self.user_data: str | None = None
        self.agent_config: dict[str, Any] | None = None
        self.template_config: dict[str, Any] | None = None
        self.expire = 3600
        self.called_number: str | None = None
        self.caller_number: str | None = None
        self.runtime: dict[str, Any] | None = None
        self.join_at: float | None = None
        self.natural_end = created_at
        self.end_reason = "UserHangup"
        self.stopped_at: float | None = None

    @property
    def finished_at(self) -> float:
        stopped = self.stopped_at
        return self.natural_end if stopped is None or stopped >= self.natural_end else stopped

    def status(self, now: float) -> str:
        if now >= self.finished_at:
            return FINISHED
        if self.join_at is not None and now >= self.join_at:
            return EXECUTING
        return CREATED

    def modified_at(self, now: float) -> float:
        status = self.status(now)
        if status == FINISHED:
            return self.finished_at
        return self.join_at if status == EXECUTING and self.join_at is not None else self.created_at

    def final_reason(self) -> str:
        return "Stopped" if self.finished_at != self.natural_end else self.end_reason

    def user_joined(self) -> bool:
        return self.join_at is not None and self.join_at < self.finished_at


class _AgentIndex:
    """One agent's instances in creation order, for time-window queries by bisection."""

    __slots__ = ("items", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.items: list[Instance] = []

    def add(self, instance: Instance) -> None:
        if not self.times or instance.created_at >= self.times[-1]:
            self.times.append(instance.created_at)
            self.items.append(instance)
        else:
            # bisect_right keeps creation order among equal timestamps.
            pos = bisect_right(self.times, instance.created_at)
            self.times.insert(pos, instance.created_at)
            self.items.insert(pos, instance)

    def extend(self, instances: list[Instance]) -> None:
        merged = sorted(self.items + instances, key=lambda i: (i.created_at, i.seq))
        self.items = merged
        self.times = [i.created_at for i in merged]

    def newest_first(self, start: float | None, end: float | None) -> tuple[int, int]:
        """Index bounds ``[lo, hi)`` of the items created in ``[start, end)``."""
        lo = 0 if start is None else bisect_left(self.times, start)
        hi = len(self.times) if end is None else bisect_left(self.times, end)
        return lo, max(lo, hi)


class Store:
    """Hold every instance, by id and by agent, and count its call-log downloads (thread-safe).

    Per instance: the call-log downloads served and those refused because the URL had expired.

    :param config: the emulator configuration (seed, timings, rates, clock).
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self.lock = threading.RLock()
        self._rng = random.Random(config.seed)  # seed None: from the OS, ids unique per emulator
        self._seq = 0
        self.by_id: dict[str, Instance] = {}
        self._by_agent: dict[str, _AgentIndex] = {}
        self.downloads: Counter[str] = Counter()
        self.expired_refusals: Counter[str] = Counter()

    def now(self) -> float:
        return self._config.clock()

    def reset(self) -> None:
        with self.lock:
            self._rng = random.Random(self._config.seed)
            self._seq = 0
            self.by_id.clear()
            self._by_agent.clear()
            self.downloads.clear()
            self.expired_refusals.clear()

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def scenario(
        self, instance_id: str, user_data: str | None, agent_config: dict[str, Any] | None
    ) -> Scenario:
        """Return how the simulated user behaves: configured defaults, seeded rates, UserData overrides."""
        config = self._config
        seed = config.seed
        values: dict[str, Any] = {
            "join_delay": config.user_join_delay,
            "duration": config.call_duration,
            "no_show": _uniform(seed, instance_id, "no-show") < config.no_show_rate,
            "idle": _uniform(seed, instance_id, "idle") < config.idle_rate,
        }
        script = scenario_of(user_data)
        for key, name in (("UserJoinDelay", "join_delay"), ("CallDuration", "duration")):
            values[name] = scenario_seconds(script, key, values[name])
        for key, name in (("NoShow", "no_show"), ("Idle", "idle")):
            if isinstance(script.get(key), bool):
                values[name] = script[key]
        return Scenario(**values)

    def create(
        self,
        agent_id: str,
        *,
        kind: str = "rtc",
        user_id: str | None = None,
        session_id: str | None = None,
        user_data: str | None = None,
        agent_config: dict[str, Any] | None = None,
        template_config: dict[str, Any] | None = None,
        expire: int = 3600,
        called_number: str | None = None,
        caller_number: str | None = None,
        runtime: dict[str, Any] | None = None,
    ) -> Instance:
        """Create an instance now; its whole lifecycle is fixed here."""
        with self.lock:
            self._seq += 1
            instance = Instance(self._new_id(), agent_id, self._seq, self.now(), kind)
            instance.user_id, instance.session_id, instance.user_data = user_id, session_id, user_data
            instance.agent_config, instance.template_config = agent_config, template_config
            instance.expire = expire
            instance.called_number, instance.caller_number, instance.runtime = (
                called_number,
                caller_number,
                runtime,
            )
            self._plan(instance, self.scenario(instance.instance_id, user_data, agent_config))
            self._insert(instance)
            return instance

    def _plan(self, instance: Instance, scenario: Scenario) -> None:
        config = self._config
        online_timeout = scenario_seconds(
            instance.agent_config, "UserOnlineTimeout", config.user_online_timeout
        )
        max_idle = scenario_seconds(instance.agent_config, "MaxIdleTime", config.max_idle_time)
        created = instance.created_at
        if scenario.no_show:
            instance.join_at = None
            instance.natural_end = created + online_timeout
            instance.end_reason = "UserOnlineTimeout"
        elif scenario.idle:
            instance.join_at = created + scenario.join_delay
            instance.natural_end = instance.join_at + max_idle
            instance.end_reason = "MaxIdleTime"
        else:
            instance.join_at = created + scenario.join_delay
            instance.natural_end = instance.join_at + scenario.duration
            instance.end_reason = "UserHangup"

    def _insert(self, instance: Instance) -> None:
        self.by_id[instance.instance_id] = instance
        index = self._by_agent.get(instance.agent_id)
        if index is None:
            index = self._by_agent[instance.agent_id] = _AgentIndex()
        index.add(instance)

    def get(self, instance_id: str) -> Instance | None:
        return self.by_id.get(instance_id)

    def stop(self, instance: Instance) -> None:
        """Finish the instance now; a finished instance stays as it is (idempotent)."""
        with self.lock:
            now = self.now()
            if instance.status(now) != FINISHED:
                instance.stopped_at = now

    def page(
        self, agent_id: str, start: float | None, end: float | None, page_size: int, page_number: int
    ) -> list[Instance]:
        """Instances of ``agent_id`` created in ``[start, end)``, newest first, one page of them."""
        with self.lock:
            index = self._by_agent.get(agent_id)
            if index is None or page_size == 0:
                return []
            lo, hi = index.newest_first(start, end)
            top = hi - (page_number - 1) * page_size
            bottom = max(lo, top - page_size)
            return index.items[bottom:top][::-1] if top > lo else []

    def count(self, agent_id: str, start: float | None, end: float | None) -> int:
        """Return how many instances of ``agent_id`` were created in ``[start, end)``."""
        with self.lock:
            index = self._by_agent.get(agent_id)
            if index is None:
                return 0
            lo, hi = index.newest_first(start, end)
            return hi - lo

    def seed_history(
        self,
        agent_id: str,
        count: int,
        start: float,
        end: float,
        user_data: Callable[[int], str] | None = None,
    ) -> list[str]:
        """Create ``count`` past instances spread uniformly over ``[start, end)``, all Finished now.

        Each carries UserData ``{"AirflowCorrelationId": "seed-<agent>-<n>", "Seeded": true}`` unless
        ``user_data(n)`` supplies another string. Returns the new instance ids.
        """
        if count < 0:
            raise ValueError(f"count: must be >= 0, got {count}")
        if not end > start:
            raise ValueError("end: must be later than start")
        config = self._config
        with self.lock:
            now = self.now()
            if end > now:
                raise ValueError("end: seeded history must lie in the past (end <= now)")
            rng = random.Random(f"{config.seed}:{agent_id}:{count}:{start}:{end}")
            created: list[Instance] = []
            for n in range(count):
                self._seq += 1
                instance = Instance(self._new_id(), agent_id, self._seq, rng.uniform(start, end), "rtc")
                instance.user_data = (
                    user_data(n)
                    if user_data
                    else f'{{"{CORRELATION_KEY}":"seed-{agent_id}-{n:06d}","Seeded":true}}'
                )
                if rng.random() < config.no_show_rate:
                    instance.natural_end = min(now, instance.created_at + config.user_online_timeout)
                    instance.end_reason = "UserOnlineTimeout"
                else:
                    instance.join_at = instance.created_at + rng.uniform(0.5, 5.0)
                    instance.natural_end = min(now, instance.join_at + rng.uniform(20.0, 240.0))
                    instance.join_at = min(instance.join_at, instance.natural_end)
                self.by_id[instance.instance_id] = instance
                created.append(instance)
            index = self._by_agent.get(agent_id)
            if index is None:
                index = self._by_agent[agent_id] = _AgentIndex()
            index.extend(created)
            return [i.instance_id for i in created]

    def instance_states(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        """Return every instance (optionally of one agent) as the control plane shows it (no tokens)."""
        now, seed = self.now(), self._config.seed
        states = []
        for instance in self:
            if agent_id is not None and instance.agent_id != agent_id:
                continue
            status, iid = instance.status(now), instance.instance_id
            finished = status == FINISHED
            states.append(
                {
                    **wire_names(seed, instance),
                    "Kind": instance.kind,
                    "Status": status,
                    "CreatedAt": iso_utc(instance.created_at),
                    "ModifiedAt": iso_utc(instance.modified_at(now)),
                    "EndReason": instance.final_reason() if finished else None,
                    "UserJoined": instance.user_joined() if finished else None,
                    "CallLogDownloads": self.downloads[iid],
                    "CallLogExpiredRefusals": self.expired_refusals[iid],
                }
            )
        return states

    def __iter__(self) -> Iterator[Instance]:
        with self.lock:
            return iter(list(self.by_id.values()))

    def __len__(self) -> int:
        return len(self.by_id)
