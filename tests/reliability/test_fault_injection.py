"""The call-log pipeline, run again and again through ``dag.test()`` against a faulty emulator.

Faults (the issue's mix): 20 % throttling, 5 % 5xx, 2 % dropped connections (the action ran, the
answer is lost), 5 % slow GenerateAIAgentCall (the instance is created, the answer comes after the
client's read timeout), a listing that shows a new instance only 1 s after its creation, and every
call log's first download attempt meets an expired CallLogUrl
(the emulator's ``calllog_expire_first``: URLs stay expired until one download is refused). Airflow
task retries
(``retry_delay=0``) are real: ``dag.test()`` in Airflow 3.3 reschedules an ``up_for_retry`` task
in its loop with a new try number, so no retry is simulated.

Judged from the emulator's state and the disk only: exactly one agent instance per task instance
(by the correlation id in UserData), every Finished instance's call log saved exactly once under its
final name with the served bytes (sha256), and no failed run. ``--soak`` runs many more.
"""

from __future__ import annotations

import importlib
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.api.correlation import make_correlation_id
from airflow_provider_ice.emulator import IceEmulator
from tests.airflow_compat import needs_task_state_store, run_dag, task_output
from tests.reliability._support import audit_run, fault_figures, start_emulator, stopwatch, task_tries

AGENT = "reliability-agent"
#: Runs per session (``ICE_RELIABILITY_RUNS`` overrides, e.g. for a quick local check).
RUNS = int(os.environ.get("ICE_RELIABILITY_RUNS", "50"))
SOAK_RUNS = int(os.environ.get("ICE_RELIABILITY_SOAK_RUNS", "300"))
#: The client's read timeout (connection extra); a slow create answers after this, so it is lost.
CLIENT_TIMEOUT = 1.0
FAULTS: dict[str, Any] = {
    "throttle_rate": 0.20,
    "retry_after_ms": 50,
    "error_rate": 0.05,
    "drop_rate": 0.02,
    "slow_create_rate": 0.05,
    "slow_create_delay": CLIENT_TIMEOUT + 0.5,
    "listing_lag": 1.0,
}

#: The first runs meet one fault of each kind on their first GenerateAIAgentCall, for certain.
FORCED_ON_CREATE = ("server_error_5xx", "dropped_connection", "slow_create", "throttled")


# A 5xx or a dropped connection on GenerateAIAgentCall with nothing listed is retried only with the
# store's write-ahead record; below Airflow 3.3 that run fails without retry (as the README says).
@needs_task_state_store()
def test_pipeline_under_faults_places_one_call_and_saves_every_call_log_once(
    airflow_db: str,
    request: pytest.FixtureRequest,
    dag_conn: Callable[..., dict[str, Any]],
    tmp_path: Path,
    soak: bool,
    reliability_report: dict[str, Any],
) -> None:
    runs = SOAK_RUNS if soak else RUNS
    emulator = start_emulator(
        calllog_expire_first=True, user_join_delay=0.1, call_duration=0.4, seed=6, **FAULTS
    )
    request.addfinalizer(emulator.stop)
    dag_conn(emulator, timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_TIMEOUT)
    dag = importlib.import_module("tests.dags.ice_reliability_pipeline").dag
    audits = []
    retries: Counter[str] = Counter()
    with stopwatch() as timing:
        for number in range(runs):
            if number < len(FORCED_ON_CREATE):
                # Chance alone may spare GenerateAIAgentCall a kind of fault in 50 runs.
                emulator.force_faults("GenerateAIAgentCall", FORCED_ON_CREATE[number])
            destination = tmp_path / f"run-{number:03d}"
            run = run_dag(dag, run_conf={"agent_id": AGENT, "destination": str(destination)})
            correlation_id = make_correlation_id(dag.dag_id, run.run_id, "place_call", -1)
            audit = audit_run(emulator, AGENT, correlation_id, destination, run.run_id, str(run.state))
            tries = task_tries(dag.dag_id, run.run_id)
            audit.task_tries = {task: attempt for task, (_, attempt) in tries.items()}
            for task, attempt in audit.task_tries.items():
                retries[task] += attempt - 1
            if audit.state != "success":
                audit.problems.append(f"run {run.run_id} ended {audit.state}; tasks: {tries}")
            audits.append(audit)

    faults = fault_figures(emulator)
    all_instances = emulator.state(AGENT)["instances"]
    # Every URL of an instance is expired until one download was refused, so an instance with a
    # refusal is one whose first download attempt met an expired URL.
    finished = [i for i in all_instances if i["Status"] == "Finished"]
    expired_first = [i["InstanceId"] for i in finished if i["CallLogExpiredRefusals"] >= 1]
    faults["call_logs_whose_first_download_met_an_expired_url"] = len(expired_first)
    figures = {
        "runs": runs,
        "runs_succeeded": sum(a.state == "success" for a in audits),
        "runs_failed": sum(a.state != "success" for a in audits),
        "agent_instances": len(all_instances),
        "duplicate_calls": sum(max(a.instances - 1, 0) for a in audits),
        "finished_instances": sum(a.finished for a in audits),
        "call_logs_saved_exactly_once": sum(a.saved_once for a in audits),
        "call_logs_lost": sum(a.finished - a.saved_once for a in audits),
        "call_log_downloads_served": sum(a.downloads for a in audits),
        "airflow_task_retries": dict(sorted(retries.items())),
        "faults_injected": faults,
        "wall_seconds": timing["seconds"],
    }
    reliability_report["soak" if soak else "fault_injection"] = figures
    print(figures)

    problems = [f"{a.run_id}: {p}" for a in audits for p in a.problems]
    assert not problems, "\n".join(problems)
    # Every instance the emulator holds belongs to exactly one run: nothing placed outside a run.
    assert len(all_instances) == runs
    assert figures["call_logs_saved_exactly_once"] == runs
    # The faults really happened, by kind, or this test proves nothing.
    for kind in FORCED_ON_CREATE:
        assert faults["by_action"].get(f"{kind}/GenerateAIAgentCall", 0) > 0, f"no {kind} on create: {faults}"
    for kind in ("throttled", "server_error_5xx", "listing_lag"):
        assert faults["by_action"].get(f"{kind}/ListAIAgentInstance", 0) > 0, f"no {kind} on polls: {faults}"
    # Every call log's first download attempt met an expired URL, and was then fetched afresh.
    assert len(finished) == len(expired_first) == runs
    assert faults["calllog_expired"] >= runs


def test_retries_exhausted_fail_the_run_with_a_clear_error(
    airflow_db: str,
    ice_emulator_factory: Callable[..., IceEmulator],
    dag_conn: Callable[..., dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """With every ListAIAgentInstance refused, the run fails once retries are exhausted, and says why."""
    emulator = ice_emulator_factory(user_join_delay=0.1, call_duration=0.4, seed=6)
    dag_conn(emulator, max_retries=0)
    dag = importlib.import_module("tests.dags.ice_reliability_pipeline").dag
    emulator.set_faults(error_rate=1.0, actions=["ListAIAgentInstance", "DescribeAIAgentInstance"])
    run = run_dag(dag, run_conf={"agent_id": AGENT, "destination": str(tmp_path)})
    tries = task_tries(dag.dag_id, run.run_id)
    assert str(run.state) == "failed"
    assert tries["place_call"] == ("success", 1)
    # The sensor's polls all fail: each try fails after its error budget, every retry is used.
    state, attempt = tries["wait_for_call"]
    assert state == "failed"
    assert attempt == dag.task_dict["wait_for_call"].retries + 1
    # The task's failure is a log record, or (Airflow 3.0, whose task runner logs through structlog)
    # what the task printed.
    messages = "\n".join(r.getMessage() for r in caplog.records) + task_output(capfd)
    assert "ListAIAgentInstance" in messages
    assert "InternalError" in messages
    # Still one call: retries of the wait never place another.
    assert emulator.state()["request_counts"].get("GenerateAIAgentCall") == 1
    assert not any(tmp_path.iterdir())
