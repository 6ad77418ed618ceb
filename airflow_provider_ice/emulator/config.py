"""Configuration of the local ICE emulator: keys, lifecycle timings, call-log URLs and faults."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The actions the emulator implements (and fault targeting accepts).
ACTIONS = (
    "GenerateAIAgentCall",
    "ListAIAgentInstance",
    "DescribeAIAgentInstance",
    "StopAIAgentInstance",
    "StartAIAgentInstance",
    "StartAIAgentOutboundCall",
)


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: must be a probability between 0.0 and 1.0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name}: must be >= 0 seconds, got {value!r}")


def _check_all(config: object, *, rates: Iterable[str], non_negative: Iterable[str]) -> None:
    """Check the fields of ``config`` named in ``rates`` (probabilities) and ``non_negative`` (seconds)."""
    for name in rates:
        _check_rate(name, getattr(config, name))
    for name in non_negative:
        _check_non_negative(name, getattr(config, name))


@dataclass(frozen=True)
class FaultConfig:
    """Faults the emulator injects into API calls and call-log downloads (never into ``/_emulator/``).

    Every random decision comes from one ``random.Random(seed)`` stream, so a sequential client sees
    the same faults on every run.

    :param throttle_rate: share of API calls refused with ``Throttling.User`` (HTTP ``throttle_status``,
        an ``x-acs-retry-after`` header in milliseconds); the action does not run.
    :param throttle_status: HTTP status of a throttled answer: 400 (what the POP gateway historically
        sends) or 429.
    :param retry_after_ms: the ``x-acs-retry-after`` value sent with a throttled answer.
    :param error_rate: share of API calls answered 500 ``InternalError`` or 503 ``ServiceUnavailable``
        (alternating by the random stream); the action does not run.
    :param drop_rate: share of API calls whose connection is closed without any answer.
    :param drop_after_execute: when True (default) a dropped call has run (the response is lost on the
        way back: a created instance exists); when False the connection drops before the action runs.
    :param latency: seconds added before answering every API call and every call-log download.
    :param slow_create_rate: share of creating calls (GenerateAIAgentCall, StartAIAgentInstance,
        StartAIAgentOutboundCall) that create the instance, then answer only after ``slow_create_delay``.
    :param slow_create_delay: seconds a slow create waits before answering; choose more than the
        client's read timeout to simulate a lost response.
    :param calllog_expire_first: every CallLogUrl handed out for an instance is already expired until
        one download of that instance has been refused as expired; the Describe/List after that
        refusal hands out a valid URL. So the first download attempt of each call log meets an
        expired URL, however many polls listed the instance before.
    :param calllog_error_rate: share of call-log downloads answered 503 with an OSS-style XML error.
    :param calllog_truncate_rate: share of call-log downloads whose body is cut in half (a truncated file).
    :param listing_lag: seconds after its creation before an instance shows in ListAIAgentInstance
        (a listing that lags behind creation); DescribeAIAgentInstance sees it at once. Not random,
        and not restricted by ``actions``.
    :param actions: restrict the API faults (throttle, error, drop, slow create) to these action names;
        ``None`` targets every action.
    """

    throttle_rate: float = 0.0
    throttle_status: int = 400
    retry_after_ms: int = 1000
    error_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_execute: bool = True
    latency: float = 0.0
    slow_create_rate: float = 0.0
    slow_create_delay: float = 15.0
    calllog_expire_first: bool = False
    calllog_error_rate: float = 0.0
    calllog_truncate_rate: float = 0.0
    listing_lag: float = 0.0
    actions: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _check_all(
            self,
            rates=(
                "throttle_rate",
                "error_rate",
                "drop_rate",
                "slow_create_rate",
                "calllog_error_rate",
                "calllog_truncate_rate",
            ),
            non_negative=("latency", "slow_create_delay", "listing_lag"),
        )
        if self.throttle_status not in (400, 429):
            raise ValueError(f"throttle_status: must be 400 or 429, got {self.throttle_status!r}")
        if self.retry_after_ms < 0:
            raise ValueError(f"retry_after_ms: must be >= 0, got {self.retry_after_ms!r}")
        if self.actions is not None:
            actions = frozenset(self.actions)
            unknown = sorted(actions - set(ACTIONS))
            if unknown:
                raise ValueError(f"actions: unknown action(s) {unknown}; allowed: {', '.join(ACTIONS)}")
            object.__setattr__(self, "actions", actions)

    def targets(self, action: str) -> bool:
        return self.actions is None or action in self.actions

    def replace(self, **changes: Any) -> FaultConfig:
        """Return a copy with ``changes`` applied; an unknown name raises ``TypeError`` naming the others."""
        allowed = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise TypeError(f"unknown fault setting(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        if isinstance(changes.get("actions"), Iterable) and not isinstance(changes["actions"], frozenset):
            actions = changes["actions"]
            changes["actions"] = frozenset([actions] if isinstance(actions, str) else actions)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["actions"] = None if self.actions is None else sorted(self.actions)
        return data


@dataclass(frozen=True)
class QuotaConfig:
    """Quotas the emulator enforces (all off by default), as the service does for an account.

    :param qps: requests per second the account may send for each action (a token bucket per
        action holding one second of requests); beyond it an answer is ``Throttling.User`` with an
        ``x-acs-retry-after`` of the milliseconds until the next request would be admitted. None: off.
    :param action_qps: per-action overrides of ``qps`` (``{"ListAIAgentInstance": 10}``); None exempts
        an action.
    :param agent_concurrency: calls one agent may have at once (instances created and not yet
        Finished); a creating call beyond it is refused with ``QuotaExceeded.AIAgentConcurrency``
        and creates nothing. None: off.
    """

    qps: float | None = None
    action_qps: Mapping[str, float | None] = field(default_factory=dict)
    agent_concurrency: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("qps", self.qps), *((f"action_qps.{a}", v) for a, v in self.action_qps.items())):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(
                    f"{name}: must be a number of requests per second > 0 or null, got {value!r}"
                )
        unknown = sorted(set(self.action_qps) - set(ACTIONS))
        if unknown:
            raise ValueError(f"action_qps: unknown action(s) {unknown}; allowed: {', '.join(ACTIONS)}")
        limit = self.agent_concurrency
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"agent_concurrency: must be an integer >= 1 or null, got {limit!r}")
        object.__setattr__(self, "action_qps", dict(self.action_qps))

    def qps_for(self, action: str) -> float | None:
        return self.action_qps.get(action, self.qps)

    def replace(self, **changes: Any) -> QuotaConfig:
        """Return a copy with ``changes`` applied (``TypeError`` naming the allowed ones if unknown)."""
        allowed = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise TypeError(f"unknown quota setting(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "qps": self.qps,
            "action_qps": dict(self.action_qps),
            "agent_concurrency": self.agent_concurrency,
        }


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told at start.

    :param host: interface to listen on (``127.0.0.1``; the emulator is for local use only).
    :param port: TCP port; 0 picks a free one (read it back from :attr:`IceEmulator.url`).
    :param access_key_id: the AccessKey ID requests must be signed with.
    :param access_key_secret: the matching secret.
    :param security_token: when set, requests must carry this STS token in ``x-acs-security-token``.
    :param region: region reported in ``HostId`` of error bodies.
    :param seed: seed of every random choice (ids, faults, call-log content, no-shows). None (the
        default): ids are drawn from the operating system, so they are unique per emulator (and per
        reset) and a restarted emulator never reuses an earlier InstanceId or ChannelId; the other
        choices stay deterministic (fault decisions as under seed 0).
    :param user_join_delay: seconds after creation at which the simulated user joins (Created → Executing).
    :param call_duration: seconds the simulated conversation lasts once the user joined (→ Finished).
    :param no_show_rate: share of calls whose user never joins; they finish after ``UserOnlineTimeout``.
    :param user_online_timeout: default ``AgentConfig.UserOnlineTimeout`` (seconds) when a call sets none.
    :param max_idle_time: default ``AgentConfig.MaxIdleTime`` (seconds) when a call sets none.
    :param idle_rate: share of joined users who fall silent at once; their call ends after ``MaxIdleTime``.
    :param calllog_url_ttl: seconds a CallLogUrl stays valid after it is handed out.
    :param max_timestamp_skew: seconds ``x-acs-date`` may differ from the emulator's wall clock (900).
    :param nonce_capacity: most nonces remembered at once (oldest forgotten first), bounding memory.
    :param faults: faults injected from the start (changeable at run time).
    :param quotas: the account's QPS quotas and the agents' concurrent-call limit (changeable at run
        time); off by default.
    :param allow_unsigned: answer requests that carry no ``Authorization`` header without checking
        a signature (signed ones are still verified). Only for the benchmarks' floor rows, which
        must get the same page as the signed clients; off by default.
    :param record_secrets: note every secret value handed out or checked (tokens, CallLogUrls and
        their signatures, Authorization signatures) for :meth:`IceEmulator.secrets`, so a test can
        scan its logs for them; off by default (it keeps every value in memory).
    :param clock: the time source of the lifecycle and of call-log URL expiry (tests inject one);
        signature timestamps are always checked against the real wall clock.
    """

    host: str = "127.0.0.1"
    port: int = 0
    access_key_id: str = "EMULATORACCESSKEYID"
    access_key_secret: str = field(default="emulator-access-key-secret", repr=False)
    security_token: str | None = field(default=None, repr=False)
    region: str = "cn-shanghai"
    seed: int | None = None
    user_join_delay: float = 2.0
    call_duration: float = 10.0
    no_show_rate: float = 0.0
    user_online_timeout: float = 60.0
    max_idle_time: float = 600.0
    idle_rate: float = 0.0
    calllog_url_ttl: float = 3600.0
    max_timestamp_skew: float = 900.0
    nonce_capacity: int = 1_000_000
    faults: FaultConfig = field(default_factory=FaultConfig)
    quotas: QuotaConfig = field(default_factory=QuotaConfig)
    allow_unsigned: bool = False
    record_secrets: bool = False
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.access_key_secret:
            raise ValueError("access_key_id and access_key_secret: both must be non-empty")
        _check_all(
            self,
            rates=("no_show_rate", "idle_rate"),
            non_negative=(
                "user_join_delay",
                "call_duration",
                "user_online_timeout",
                "max_idle_time",
                "calllog_url_ttl",
                "max_timestamp_skew",
            ),
        )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: must be 0..65535, got {self.port!r}")
        if self.nonce_capacity < 1:
            raise ValueError(f"nonce_capacity: must be >= 1, got {self.nonce_capacity!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EmulatorConfig:
        """Build from plain values (CLI, pytest marker).

        Fault and quota settings may be mixed in by name.
        """
        own = {f.name for f in dataclasses.fields(cls)}
        fault_names = {f.name for f in dataclasses.fields(FaultConfig)}
        quota_names = {f.name for f in dataclasses.fields(QuotaConfig)}
        unknown = sorted(set(values) - own - fault_names - quota_names)
        if unknown:
            allowed = ", ".join(sorted(own | fault_names | quota_names))
            raise TypeError(f"unknown emulator setting(s) {unknown}; allowed: {allowed}")
        kwargs = {k: v for k, v in values.items() if k in own}
        faults = {k: v for k, v in values.items() if k in fault_names and k not in own}
        if faults:
            kwargs["faults"] = kwargs.get("faults", FaultConfig()).replace(**faults)
        quotas = {k: v for k, v in values.items() if k in quota_names}
        if quotas:
            kwargs["quotas"] = kwargs.get("quotas", QuotaConfig()).replace(**quotas)
        return cls(**kwargs)


#: The UserData key under which a caller scripts one call (see :mod:`.store`).
SCENARIO_KEY = "EmulatorScenario"


def scenario_seconds(config: dict[str, Any] | None, key: str, default: float) -> float:
    """Return ``config[key]`` when it is a number of seconds, else ``default``."""
    value = (config or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


@dataclass(frozen=True)
class Scenario:
    """How the simulated user behaves on one call."""

    join_delay: float
    duration: float
    no_show: bool = False
    idle: bool = False


def scenario_of(user_data: str | None) -> dict[str, Any]:
    """Return the ``EmulatorScenario`` object a caller put into UserData, or ``{}``."""
    if not user_data or SCENARIO_KEY not in user_data:
        return {}
    try:
        loaded = json.loads(user_data)
    except ValueError:
        return {}
    script = loaded.get(SCENARIO_KEY) if isinstance(loaded, dict) else None
    return script if isinstance(script, dict) else {}
