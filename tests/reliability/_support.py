"""Shared helpers of the reliability suite: the emulator's fault tally, per-run audits, figures.

Every count here comes from the emulator's own state (instances, UserData, downloads and expired-URL
refusals per instance, the faults it injected by kind and action) or from files on disk, never from
the provider's logs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.emulator.call_log import build_call_log

#: Figures of this session, by section; written out by the ``reliability_report`` fixture.
FIGURES: dict[str, Any] = {}


def start_emulator(**settings: Any) -> IceEmulator:
    """A started emulator with the fixture plugin's fast timings plus ``settings``."""
    from airflow_provider_ice.emulator import EmulatorConfig
    from airflow_provider_ice.emulator.pytest_plugin import FAST_SETTINGS

    return IceEmulator(EmulatorConfig.from_mapping({**FAST_SETTINGS, **settings})).start()


def fault_figures(emulator: IceEmulator) -> dict[str, Any]:
    """The faults the emulator injected, from its own tally: total per kind, then by kind/action."""
    state = emulator.state()
    injected: dict[str, dict[str, int]] = state["faults_injected"]
    return {
        "api_calls": sum(state["request_counts"].values()),
        **state["faults_injected_total"],
        "service_error_codes": dict(sorted(state["error_counts"].items())),
        "by_action": {
            f"{kind}/{action}": n for kind, by_action in injected.items() for action, n in by_action.items()
        },
    }


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
    from airflow.utils.session import create_session

    from tests.airflow_compat import xcom_rows, xcom_value

    with create_session() as session:
        rows = xcom_rows(session, dag_id, run_id)
        found = [row for row in rows if (row.task_id, row.key, row.map_index) == (task_id, key, -1)]
        return xcom_value(found[0]) if found else None
