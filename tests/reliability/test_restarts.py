"""Restarts: a task killed mid-wait and retried, and an Airflow retry after an exception in each step.

Already proven elsewhere, so not repeated here: a deferred wait whose trigger dies mid-wait and is
rebuilt from ``serialize()`` finishes once without a second call
(``tests/integration/test_agent_call_dags.py::test_trigger_restarted_from_its_serialized_form_...``,
and for the coalesced poller ``tests/integration/test_coalesced_triggers.py``); a worker crash right
after the call and a lost GenerateAIAgentCall answer are adopted (same file). Added here: Airflow's
own kill of a synchronous wait (``execution_timeout`` → ``on_kill``) followed by a retry, and a
failure after each step of the call-log pipeline (call placed, wait ended, file published, summary),
all through ``dag.test()`` with counts from the emulator's state.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_ice import storage
from airflow_provider_ice._compat import has_feature
from airflow_provider_ice.api.correlation import make_correlation_id
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor
from tests.airflow_compat import AIRFLOW_V_3_0_PLUS, run_dag
from tests.reliability._support import audit_run, task_tries, xcom_value

AGENT = "reliability-restarts"


@pytest.mark.parametrize(
    ("dag_id", "stopped"),
    [("ice_reliability_kill_wait_keep", False), ("ice_reliability_kill_wait_stop", True)],
    ids=["left-running", "stopped-on-kill"],
)
@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS,
    reason="execution_timeout under dag.test(): Airflow 2's AirflowTaskTimeout is a BaseException that "
    "escapes dag.test() instead of failing the try and retrying it",
)
def test_task_killed_during_sync_wait_is_retried_and_adopts_the_same_instance(
    airflow_db: str,
    ice_emulator_factory: Callable[..., IceEmulator],
    dag_conn: Callable[..., dict[str, Any]],
    dag_id: str,
    stopped: bool,
) -> None:
    # The call lasts longer than the task may run (KILL_AFTER, 3 s): the first try is killed while
    # it waits.
    emulator = ice_emulator_factory(user_join_delay=0.1, call_duration=5.0)
    dag_conn(emulator)
    dag = getattr(importlib.import_module("tests.dags.ice_reliability_restarts"), dag_id)
    run = run_dag(dag)
    state, attempt = task_tries(dag.dag_id, run.run_id)["place_call"]
    assert (str(run.state), state) == ("success", "success")
    assert attempt >= 2, "the first try should have been killed by execution_timeout"

    emulator_state = emulator.state()
    assert emulator_state["request_counts"]["GenerateAIAgentCall"] == 1
    [instance] = emulator_state["instances"]
    record = xcom_value(dag.dag_id, run.run_id, "place_call")
    # The retry finds the call in the task state store's write-ahead record (3.3+), or else in the
    # listing by its correlation id, which names the channel but gives no InstanceId.
    assert record["channel_id"] == instance["ChannelId"]
    assert record["instance_id"] == (instance["InstanceId"] if has_feature("the task state store") else None)
    assert record["adopted"] is True
    assert instance["Status"] == "Finished"
    if stopped:
        assert instance["EndReason"] == "Stopped"
        assert emulator_state["request_counts"]["StopAIAgentInstance"] >= 1
    else:
        assert instance["EndReason"] != "Stopped"
        assert emulator_state["request_counts"].get("StopAIAgentInstance", 0) == 0


def _fail_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, *, run_first: bool) -> list[int]:
    """Make ``owner.name`` raise on its first call (after really running it when ``run_first``)."""
    original = getattr(owner, name)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            if run_first:
                original(*args, **kwargs)
            raise RuntimeError(f"injected failure in {name}: the worker died here")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return calls


#: Where each step fails once: after the call was placed, after the wait ended, after the file was
#: published, and while the summary reads it back.
STEP_FAILURES: dict[str, tuple[Any, str, bool]] = {
    "place_call": (IceGenerateAIAgentCallOperator, "send", True),
    "wait_for_call": (IceAIAgentInstanceSensor, "execute_complete", False),
    "fetch_call_log": (storage, "publish_file", True),
    # The summary's own read of the stored file (the fetch operator validates with the same parser,
    # imported when it runs, so patching the parser would make the fetch fail instead).
    "summarise_conversation": (ObjectStoragePath, "read_bytes", False),
}


@pytest.mark.parametrize("step", list(STEP_FAILURES))
def test_airflow_retry_after_an_exception_in_each_step_never_places_a_second_call(
    airflow_db: str,
    ice_emulator_factory: Callable[..., IceEmulator],
    dag_conn: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    step: str,
) -> None:
    # The sensor checks once before deferring; its call must still be running then (even on a loaded
    # machine), so that execute_complete, where its failure is injected, runs.
    call_duration = 3.0 if step == "wait_for_call" else 0.4
    emulator = ice_emulator_factory(user_join_delay=0.1, call_duration=call_duration)
    dag_conn(emulator)
    owner, name, run_first = STEP_FAILURES[step]
    calls = _fail_once(monkeypatch, owner, name, run_first=run_first)
    dag = importlib.import_module("tests.dags.ice_reliability_pipeline").dag
    run = run_dag(dag, run_conf={"agent_id": AGENT, "destination": str(tmp_path)})

    tries = task_tries(dag.dag_id, run.run_id)
    assert str(run.state) == "success", tries
    # The failure was injected (the retry may not call the patched function again: a retried
    # place_call adopts without sending, a retried sensor finds the call already Finished).
    assert calls, f"the injected failure in {name} never ran"
    assert tries[step] == ("success", 2)
    assert emulator.state()["request_counts"]["GenerateAIAgentCall"] == 1
    correlation_id = make_correlation_id(dag.dag_id, run.run_id, "place_call", -1)
    audit = audit_run(emulator, AGENT, correlation_id, tmp_path, run.run_id, str(run.state))
    assert not audit.problems, audit.problems
    assert audit.saved_once == 1
    if step == "place_call":
        assert xcom_value(dag.dag_id, run.run_id, "place_call")["adopted"] is True
