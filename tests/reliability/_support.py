"""Shared helpers of the reliability suite: emulator-side fault tallies, per-run audits, figures.

Every count here comes from the emulator's own state (instances, UserData, download counts, the
fault decisions it drew) or from files on disk, never from the provider's logs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.emulator.calllogs import build_call_log
from airflow_provider_ice.emulator.faults import ApiFaults
from airflow_provider_ice.emulator.wire import ApiError

#: Figures of this session, by section; written out by the ``reliability_report`` fixture.
FIGURES: dict[str, Any] = {}


class FaultTally:
    """Counts the fault decisions the emulator draws, by kind and action (wraps its injector).

    :param emulator: the emulator whose ``faults.for_api`` is wrapped for the tally's lifetime.
    """

    def __init__(self, emulator: IceEmulator) -> None:
        self.emulator = emulator
        self.counts: Counter[str] = Counter()
        self.by_action: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        #: Decisions to use instead of the drawn ones for the next calls of an action (FIFO).
        self.forced: dict[str, list[ApiFaults]] = {}
        self._original = emulator.faults.for_api
        emulator.faults.for_api = self._for_api  # type: ignore[method-assign]

    def force_next(self, action: str, kind: str) -> None:
        """The next ``action`` call meets fault ``kind`` for sure (throttled, server_error_5xx,
        dropped_connection, slow_create_response_lost), so every kind is seen on that action."""
        config = self.emulator.faults.config
        decisions = {
            "throttled": ApiFaults(
                refuse=ApiError(
                    config.throttle_status,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    {"x-acs-retry-after": str(config.retry_after_ms)},
                )
            ),
            "server_error_5xx": ApiFaults(
                refuse=ApiError(
                    503, "ServiceUnavailable", "The request has failed due to a temporary failure."
                )
            ),
            "dropped_connection": ApiFaults(drop_after=True),
            "slow_create_response_lost": ApiFaults(delay=config.latency + config.slow_create_delay),
        }
        self.forced.setdefault(action, []).append(decisions[kind])

    def _for_api(self, action: str) -> ApiFaults:
        decision = self._original(action)  # drawn anyway: the seeded stream stays the same
        with self._lock:
            queue = self.forced.get(action)
            if queue:
                decision = queue.pop(0)
        config = self.emulator.faults.config
        kinds = []
        if decision.refuse is not None:
            kinds.append("throttled" if decision.refuse.code.startswith("Throttling") else "server_error_5xx")
        if decision.drop_before or decision.drop_after:
            kinds.append("dropped_connection")
        if decision.refuse is None and decision.delay - config.latency >= config.slow_create_delay > 0:
            kinds.append("slow_create_response_lost")
        with self._lock:
            self.counts["api_calls"] += 1
            for kind in kinds:
                self.counts[kind] += 1
                self.by_action[(kind, action)] += 1
        return decision

    def close(self) -> None:
        self.emulator.faults.for_api = self._original  # type: ignore[method-assign]

    def figures(self) -> dict[str, Any]:
        state = self.emulator.state()
        return {
            **{k: self.counts[k] for k in sorted(self.counts)},
            "expired_call_log_urls_refused": state["calllog_denied"],
            "service_error_codes": dict(sorted(state["error_counts"].items())),
            "by_action": {f"{kind}/{action}": n for (kind, action), n in sorted(self.by_action.items())},
        }


class ExpiredUntilRefused:
    """Every CallLogUrl of an instance is handed out already expired until one has been refused.

    So the pipeline's first download attempt of each call log meets an expired URL, whoever listed
    the instance before (the emulator's own ``calllog_expire_first`` expires only the first URL
    handed out, which the sensor's poll consumes). Installed before ``start()``: it wraps the
    download route the server registers, and records per instance whether each attempt carried
    an expired URL.

    :param emulator: a not yet started emulator.
    """

    def __init__(self, emulator: IceEmulator) -> None:
        self.emulator = emulator
        #: instance id -> one bool per download attempt: was its URL already expired?
        self.attempts: dict[str, list[bool]] = {}
        self._issue = emulator.actions._call_log_url
        self._handle = emulator.calllogs.handle
        emulator.actions._call_log_url = self._call_log_url  # type: ignore[method-assign]
        emulator.calllogs.handle = self._handle_download  # type: ignore[method-assign]

    def _call_log_url(self, instance: Any, now: float, base_url: str) -> str:
        if any(self.attempts.get(instance.instance_id, [])):
            return self._issue(instance, now, base_url)
        return self.emulator.signer.url(base_url, instance.instance_id, int(now) - 1)

    async def _handle_download(self, request: Any) -> Any:
        instance_id = request.match_info["name"].removesuffix(".json")
        expires = request.query.get("Expires", "")
        expired = not expires.isdigit() or self.emulator.store.now() > int(expires)
        self.attempts.setdefault(instance_id, []).append(expired)
        return await self._handle(request)

    def first_attempt_expired(self, instance_id: str) -> bool:
        return self.attempts.get(instance_id, [False])[0]


def start_emulator(
    expire_urls: bool = False, **settings: Any
) -> tuple[IceEmulator, ExpiredUntilRefused | None]:
    """A started emulator with the fixture plugin's fast timings plus ``settings``."""
    from airflow_provider_ice.emulator import EmulatorConfig
    from airflow_provider_ice.emulator.pytest_plugin import FAST_SETTINGS

    emulator = IceEmulator(EmulatorConfig.from_mapping({**FAST_SETTINGS, **settings}))
    urls = ExpiredUntilRefused(emulator) if expire_urls else None
    return emulator.start(), urls


def expected_call_log(emulator: IceEmulator, instance_id: str) -> bytes:
    """The exact bytes the emulator serves for a Finished instance (it rebuilds them per download)."""
    instance = emulator.store.get(instance_id)
    assert instance is not None, f"emulator does not know instance {instance_id}"
    document = build_call_log(emulator.config.seed, instance).to_wire()
    return json.dumps(document, ensure_ascii=False).encode()


def instances_by_correlation(emulator: IceEmulator, agent_id: str) -> dict[str, list[dict[str, Any]]]:
    """The emulator's instances of ``agent_id`` grouped by the correlation id in their UserData."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for instance in emulator.state(agent_id)["instances"]:
        grouped.setdefault(correlation_id_of(instance["UserData"]) or "", []).append(instance)
    return grouped


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class RunAudit:
    """What one DAG run left behind, judged from the emulator and the disk."""

    run_id: str
    state: str
    instances: int
    finished: int
    saved_once: int
    files: list[str] = field(default_factory=list)
    downloads: int = 0
    task_tries: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def audit_run(
    emulator: IceEmulator, agent_id: str, correlation_id: str, destination: Path, run_id: str, state: str
) -> RunAudit:
    """Check one run: one instance for its correlation id, its call log on disk exactly once."""
    mine = instances_by_correlation(emulator, agent_id).get(correlation_id, [])
    audit = RunAudit(run_id=run_id, state=state, instances=len(mine), finished=0, saved_once=0)
    files = sorted(p.name for p in destination.iterdir()) if destination.exists() else []
    audit.files = files
    if len(mine) != 1:
        audit.problems.append(f"{len(mine)} agent instances carry correlation id {correlation_id}")
    for instance in mine:
        audit.downloads += instance["CallLogDownloads"]
        if instance["Status"] != "Finished":
            audit.problems.append(f"instance {instance['InstanceId']} is {instance['Status']}")
            continue
        audit.finished += 1
        final = destination / f"{instance['ChannelId']}.json"
        if not final.is_file():
            audit.problems.append(
                f"call log of {instance['InstanceId']} missing: {final.name} not in {files}"
            )
            continue
        expected = hashlib.sha256(expected_call_log(emulator, instance["InstanceId"])).hexdigest()
        if sha256_file(final) != expected:
            audit.problems.append(f"{final.name} does not hold the served call log (sha256 differs)")
            continue
        if instance["CallLogDownloads"] < 1:
            audit.problems.append(f"{final.name} exists but the emulator served no download")
            continue
        audit.saved_once += 1
    if len(files) != audit.finished:
        audit.problems.append(f"expected {audit.finished} file(s) in {destination}, found {files}")
    return audit


def task_tries(dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
    """``{task_id: (state, try_number)}`` of one DAG run, from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).all()
        return {ti.task_id: (str(ti.state), int(ti.try_number)) for ti in rows}


@contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    timing: dict[str, float] = {}
    started = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = round(time.perf_counter() - started, 1)


def render_markdown(figures: dict[str, Any]) -> str:
    """The figures as the Markdown that FIGURES.md (and the README's Reliability section) shows."""
    lines = ["| Figure | Value |", "| --- | --- |"]

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            lines.append(f"| {prefix} | {value} |")

    walk("", figures)
    return "\n".join(lines) + "\n"


def xcom_value(dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    """A task's XCom value as stored in the metadata DB (deserialised)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key=key, map_index=-1)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)
