"""One deployment per test session, and the workload every test here inspects.

Skip it for quick local runs with ``ICE_SKIP_DEPLOYMENT=1``; ``make test`` (and so CI) runs it.
``ICE_KEEP_DEPLOYMENT=1`` keeps the temporary directory (logs, data, cluster) for a look afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.deployment.stack import Stack, deployment, wait_for

SKIP = os.environ.get("ICE_SKIP_DEPLOYMENT", "").lower() in ("1", "true", "yes")
DAG_IDS = (
    "ice_call_log_pipeline",
    "ice_scheduled_agent_calls",
    "ice_session_analytics",
    "ice_deploy_on_kill",
)
PIPELINE = "ice_call_log_pipeline"
DATED_LOGICAL_DATE = "2026-11-30T00:00:00+00:00"
RECIPIENTS = [{"name": "Ann", "topic": "delivery"}, {"name": "Bo", "topic": "renewal"}]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deployment/" in item.nodeid and {"stack", "workload"} & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.deployment)
            if SKIP:
                item.add_marker(pytest.mark.skip(reason="ICE_SKIP_DEPLOYMENT is set"))


@dataclass
class Workload:
    """What was started: run ids by how they were triggered, and the backfill's days."""

    stack: Stack
    today: datetime
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (dag_id, run_id)
    backfill_days: list[str] = field(default_factory=list)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return list(
            self.stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")[
                "task_instances"
            ]
        )

    def dag_runs(self, dag_id: str) -> list[dict]:
        return list(self.stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"])


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if SKIP:
        pytest.skip("ICE_SKIP_DEPLOYMENT is set")
    root = Path(tempfile.mkdtemp(prefix="ice-deploy-"))
    started = time.monotonic()
    try:
        with deployment(root) as running:
            print(f"\ndeployment up in {time.monotonic() - started:.0f}s under {root}")
            yield running
            _print_slow_loop_steps(running)
    finally:
        if os.environ.get("ICE_KEEP_DEPLOYMENT"):
            print(f"deployment kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _print_slow_loop_steps(stack: Stack) -> None:
    """Show what asyncio debug mode saw block the triggerers' loops (Airflow's own steps included)."""
    for log in sorted((stack.root / "logs").glob("triggerer*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "[asyncio]" in line and " took " in line:
                print(
                    f"{log.name}: {line[line.index('Executing') :][:160]} ... {line[line.rindex(' took ') :]}"
                )


@pytest.fixture(scope="session")
def workload(stack: Stack) -> Workload:
    """Trigger everything at once (CLI with and without a logical date, REST, backfill), then return."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    work = Workload(stack, today)
    wait_for(
        "the dag-processor to parse the DAGs",
        lambda: (
            set(DAG_IDS) <= {dag["dag_id"] for dag in stack.request("GET", "/api/v2/dags?limit=100")["dags"]}
        ),
        180,
        1,
    )
    for dag_id in DAG_IDS:  # a backfill (and any run) of a paused DAG stays queued
        stack.request("PATCH", f"/api/v2/dags/{dag_id}?update_mask=is_paused", {"is_paused": False})
    conf = json.dumps({"poke_interval": 2})
    days = [(today - timedelta(days=n)).strftime("%Y-%m-%d") for n in (3, 2)]
    work.backfill_days = days
    cli = {
        "cli_no_date": stack.start(
            "trigger-no-date",
            stack.airflow("dags", "trigger", PIPELINE, "--run-id", "cli_no_date", "-c", conf),
        ),
        "cli_dated": stack.start(
            "trigger-dated",
            stack.airflow(
                "dags", "trigger", PIPELINE, "--run-id", "cli_dated",
                "--logical-date", DATED_LOGICAL_DATE, "-c", conf,
            ),
        ),
        "backfill": stack.start(
            "backfill",
            stack.airflow(
                "backfill", "create", "--dag-id", "ice_session_analytics", "--from-date", days[0],
                "--to-date", days[1], "--max-active-runs", "2",
            ),
        ),
    }  # fmt: skip
    rest = {
        "rest_no_date": (PIPELINE, {"poke_interval": 2}),
        "rest_mapped": ("ice_scheduled_agent_calls", {"recipients": RECIPIENTS}),
        "rest_analytics": ("ice_session_analytics", {}),
        "on_kill": ("ice_deploy_on_kill", {}),
    }
    for label, (dag_id, run_conf) in rest.items():
        # As the UI's REST client does; logical_date null is Airflow 3's default for manual runs.
        stack.request(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            {"dag_run_id": label, "logical_date": None, "conf": run_conf},
        )
        work.runs[label] = (dag_id, label)
    for label, process in cli.items():
        name = next(name for name, started in stack.processes.items() if started is process)
        assert process.wait(180) == 0, stack.tail(name)
        stack.processes.pop(name)
        if label != "backfill":
            work.runs[label] = (PIPELINE, label)
    return work
