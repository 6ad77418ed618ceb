"""The provider in a real deployment: PostgreSQL, api-server, scheduler, dag-processor, triggerer.

Everything is asserted from what the deployment itself reports (its REST API), the emulator's own
state and the files written, never from the test's memory of what it asked for.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.storage import committed_files
from tests.deployment.conftest import DATED_LOGICAL_DATE, PIPELINE, RECIPIENTS, Workload
from tests.deployment.stack import COMPONENTS, TRIGGERER_ENV, Stack, stop_tree, wait_for

FINISHED_RUN_STATES = {"success", "failed"}
TI_ENDED = {"success", "failed", "skipped", "upstream_failed"}
# One deployment serves the whole module; its start-up counts against the first test's timeout.
pytestmark = pytest.mark.timeout(600)

CALL_TASKS = {"ice_call_log_pipeline": "place_call", "ice_scheduled_agent_calls": "call"}


def _ti_states(work: Workload, runs: set[tuple[str, str]]) -> dict[tuple[str, str, int], str]:
    return {
        (run_id, ti["task_id"], ti["map_index"]): ti["state"]
        for dag_id, run_id in runs
        for ti in work.task_instances(dag_id, run_id)
    }


def _all_finished(work: Workload) -> list[dict[str, Any]]:
    runs = [run for dag_id in {*CALL_TASKS, "ice_session_analytics"} for run in work.dag_runs(dag_id)]
    expected = len(work.runs) - 1 + len(work.backfill_days)  # all but the on_kill run, plus the backfill
    (killed,) = work.task_instances(*work.runs["on_kill"])
    finished = all(run["state"] in FINISHED_RUN_STATES for run in runs) and killed["state"] in TI_ENDED
    return runs if finished and len(runs) >= expected else []


def _xcom(stack: Stack, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    entry = stack.request(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        f"?map_index={map_index}&deserialize=true",
    )
    value = entry["value"]
    return dict(json.loads(value) if isinstance(value, str) else value)


def test_connection_form_metadata_through_the_api_server(stack: Stack) -> None:
    (meta,) = [
        m for m in stack.request("GET", "/ui/connections/hook_meta") if m["connection_type"] == "alibaba_ice"
    ]
    assert meta["hook_name"] == "Alibaba Cloud ICE"
    extra = meta["extra_fields"]
    assert extra["verify"]["schema"]["type"] == ["boolean", "null"]  # a toggle, not a text box
    assert extra["verify"]["value"] is True
    assert extra["ca_bundle"]["schema"]["type"] == ["string", "null"]
    assert extra["endpoint"]["schema"]["examples"]  # the only hint the form shows inside an extra field
    assert extra["security_token"]["schema"]["format"] == "password"
    standard = meta["standard_fields"]
    assert standard["login"] == {"hidden": False, "title": "AccessKey ID", "placeholder": "LTAI..."}
    assert standard["password"]["title"] == "AccessKey secret"
    assert standard["host"]["hidden"]
    assert standard["port"]["hidden"]


def test_sigterm_mid_wait_stops_the_instance(workload: Workload) -> None:
    stack = workload.stack
    dag_id, run_id = workload.runs["on_kill"]

    def running_pid() -> int | None:
        (ti,) = workload.task_instances(dag_id, run_id)
        instances = stack.emulator_state("deploy-on-kill")["instances"]
        waiting = (
            ti["state"] == "running" and ti["pid"] and [i for i in instances if i["Status"] == "Executing"]
        )
        return int(ti["pid"]) if waiting else None

    pid = wait_for("the worker task waiting on its call", running_pid, 150, 0.5)
    os.kill(pid, signal.SIGTERM)
    (instance,) = wait_for(
        "StopAIAgentInstance from on_kill",
        lambda: [
            i for i in stack.emulator_state("deploy-on-kill")["instances"] if i["EndReason"] == "Stopped"
        ],
        60,
        0.5,
    )
    assert stack.emulator_state("deploy-on-kill")["request_counts"]["StopAIAgentInstance"] == 1
    assert json.loads(instance["UserData"])["dag_run"] == run_id


def test_triggerer_killed_while_sensors_are_deferred(workload: Workload) -> None:
    stack = workload.stack
    runs = {run for label, run in workload.runs.items() if label != "on_kill"}

    def deferred() -> list[tuple[str, str, int]]:
        return [key for key, state in _ti_states(workload, runs).items() if state == "deferred"]

    waiting = wait_for("sensors deferred to the triggerer", deferred, 150, 0.5)
    stop_tree(stack.processes.pop("triggerer").pid, signal.SIGKILL)  # the whole triggerer, at once
    stack.start("triggerer-restarted", stack.airflow("triggerer"), env=TRIGGERER_ENV)

    def resumed() -> bool:
        states = _ti_states(workload, runs)
        return all(states[key] == "success" for key in waiting)

    wait_for(f"{waiting} to succeed after the triggerer restart", resumed, 150, 1)


def test_every_run_succeeds_with_exactly_one_call_and_one_fetch(workload: Workload) -> None:
    stack = workload.stack
    runs = wait_for("every run to finish", lambda: _all_finished(workload), 240, 2)
    assert {run["dag_run_id"]: run["state"] for run in runs} == {run["dag_run_id"]: "success" for run in runs}
    emulator = stack.emulator_state()
    instances = [i for i in emulator["instances"] if i["AIAgentId"] != "deploy-on-kill"]
    by_correlation: dict[str | None, list[dict[str, Any]]] = {}
    for instance in instances:
        by_correlation.setdefault(correlation_id_of(instance["UserData"]), []).append(instance)
    calls = 0
    for run in runs:
        task_id = CALL_TASKS.get(run["dag_id"])
        if task_id is None:
            continue
        tis = [
            ti for ti in workload.task_instances(run["dag_id"], run["dag_run_id"]) if ti["task_id"] == task_id
        ]
        if run["dag_run_id"] == "rest_mapped":
            assert len(tis) == len(RECIPIENTS)
        for ti in tis:
            record = _xcom(stack, run["dag_id"], run["dag_run_id"], task_id, ti["map_index"])
            (instance,) = by_correlation[record["correlation_id"]]  # exactly one call per task instance
            assert instance["InstanceId"] == record["instance_id"]
            assert ti["try_number"] == 1
            calls += 1
            if run["dag_id"] == PIPELINE:
                assert json.loads(instance["UserData"])["dag_run"] == run["dag_run_id"]
                assert instance["CallLogDownloads"] == 1, instance  # fetched once
                _assert_call_log_file(stack, run, instance)
            else:
                assert instance["CallLogDownloads"] == 0
    assert calls == len(instances)  # and no call that no task instance accounts for
    _assert_one_asset_event_per_fetch(stack, runs)
    assert {"cli_no_date", "cli_dated", "rest_no_date"} <= {
        r["dag_run_id"] for r in runs if r["dag_id"] == PIPELINE
    }


def _assert_one_asset_event_per_fetch(stack: Stack, runs: list[dict[str, Any]]) -> None:
    """The example emits ``ice://call-logs/all`` (its agent is a param), as the README says."""
    (asset,) = [
        a for a in stack.request("GET", "/api/v2/assets")["assets"] if a["uri"] == "ice://call-logs/all"
    ]
    events = stack.request("GET", f"/api/v2/assets/events?asset_id={asset['id']}")["asset_events"]
    assert sorted(event["source_run_id"] for event in events) == sorted(
        run["dag_run_id"] for run in runs if run["dag_id"] == PIPELINE
    )


def _assert_call_log_file(stack: Stack, run: dict[str, Any], instance: dict[str, Any]) -> None:
    day = (run["logical_date"] or run["run_after"])[:10]
    if run["dag_run_id"] == "cli_dated":
        assert day == DATED_LOGICAL_DATE[:10]
    path = stack.root / "data" / "call_logs" / day / f"{instance['ChannelId']}.json"
    assert json.loads(path.read_bytes())  # complete JSON
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # readable like any other file


def test_backfill_and_a_run_without_a_logical_date_write_their_partitions(workload: Workload) -> None:
    wait_for("every run to finish", lambda: _all_finished(workload), 240, 2)
    runs = workload.dag_runs("ice_session_analytics")
    backfilled = sorted(run["logical_date"][:10] for run in runs if run["run_type"] == "backfill")
    assert backfilled == workload.backfill_days
    assert all(run["state"] == "success" for run in runs)
    sessions = Path(workload.stack.root / "data" / "sessions")
    yesterday = (workload.today - timedelta(days=1)).strftime("%Y-%m-%d")
    for day in [*workload.backfill_days, yesterday]:  # the REST run without a date covers yesterday
        # Read through the partition's manifest, as the README tells readers to.
        files = committed_files(sessions / f"date={day}")
        assert sorted(files) == ["sessions.jsonl", "summary.json"], day
        summary = json.loads(files["summary.json"].read_text())
        assert summary["interval"]["start"][:10] == day, summary["interval"]


def test_ice_console_link_of_a_finished_call(workload: Workload) -> None:
    stack = workload.stack
    wait_for("every run to finish", lambda: _all_finished(workload), 240, 2)
    links = stack.request(
        "GET", f"/api/v2/dags/{PIPELINE}/dagRuns/rest_no_date/taskInstances/place_call/links"
    )["extra_links"]
    record = _xcom(stack, PIPELINE, "rest_no_date", "place_call", -1)
    assert record["instance_id"] in links["ICE Console"]
    assert links["ICE Console"].startswith("https://")


def test_every_component_is_a_separate_live_process(stack: Stack) -> None:
    pids = {name: stack.processes[name].pid for name in stack.processes if name.startswith(COMPONENTS)}
    assert len(set(pids.values())) == len(pids) >= len(COMPONENTS)
    assert all(stack.processes[name].poll() is None for name in pids), {n: stack.tail(n) for n in pids}
