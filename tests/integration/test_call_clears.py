"""Exactly one call per task instance through real Airflow retries and Clears, against the emulator.

The DAGs (tests/dags/ice_clear_test_dags.py) run with ``dag.test()`` and real task retries; Clears
go through Airflow's own ``clear_task_instances`` on the DagRun in the test database, either between
two tries of a running ``dag.test()`` or after it, followed by :func:`resume`, the same minimal
scheduling loop ``dag.test()`` uses. Every count comes from the emulator's own state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_ice.api.correlation import CORRELATION_KEY, make_correlation_id
from airflow_provider_ice.emulator import IceEmulator
from tests.airflow_clears import clear, clear_number, resume
from tests.airflow_compat import run_dag
from tests.dags import ice_clear_test_dags as dags
from tests.dags.ice_clear_test_dags import AGENT_ID

pytestmark = [pytest.mark.integration, pytest.mark.ice_emulator(user_join_delay=0.2, call_duration=0.5)]

CREATES = ("GenerateAIAgentCall", "StartAIAgentOutboundCall")


# -- Airflow state ---------------------------------------------------------------------------------


@pytest.fixture
def before_retry(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, int, Callable[[Any], None]], None]:
    """``before_retry(task_id, map_index, action)``: run ``action(ti)`` just before that task
    instance's second try starts in ``run_dag(dag)`` (between its tries, outside any task)."""
    import airflow.sdk.definitions.dag as dag_module

    original = dag_module._run_task
    hooks: dict[tuple[str, int], Callable[[Any], None]] = {}

    def running(*, ti: Any, task: Any, run_triggerer: bool = False) -> Any:
        action = hooks.pop((ti.task_id, ti.map_index), None) if ti.try_number == 2 else None
        if action is not None:
            action(ti)
        return original(ti=ti, task=task, run_triggerer=run_triggerer)

    monkeypatch.setattr(dag_module, "_run_task", running)

    def register(task_id: str, map_index: int, action: Callable[[Any], None]) -> None:
        hooks[(task_id, map_index)] = action

    return register


def task_instances(dag_id: str, run_id: str) -> dict[tuple[str, int], tuple[str, int, int]]:
    """``{(task_id, map_index): (state, try_number, max_tries)}`` from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).all()
        return {(r.task_id, r.map_index): (str(r.state), r.try_number, r.max_tries) for r in rows}


def result(dag_id: str, run_id: str, map_index: int = -1) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id="call", key="return_value", map_index=map_index)
            .one()
        )
        return XComModel.deserialize_value(row)


# -- the emulator's state --------------------------------------------------------------------------


def calls(emulator: IceEmulator) -> list[dict[str, Any]]:
    """The instances of the agent under test, oldest first."""
    return sorted(emulator.state(AGENT_ID)["instances"], key=lambda i: i["CreatedAt"])


def creates(emulator: IceEmulator) -> int:
    """Creating requests the emulator received (every agent)."""
    counts = emulator.state()["request_counts"]
    return sum(counts.get(action, 0) for action in CREATES)


def correlation_of(instance: dict[str, Any]) -> str:
    return json.loads(instance["UserData"])[CORRELATION_KEY]


def wait_until_finished(emulator: IceEmulator, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while any(i["Status"] != "Finished" for i in calls(emulator)):
        assert time.monotonic() < deadline, "the emulator's calls did not finish"
        time.sleep(0.1)


@pytest.fixture
def lose_first_answer(ice_connection: IceEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first creating request is answered after the client gave up (its outcome is unknown)."""
    conn = json.loads(ice_connection.airflow_conn_json())
    conn["extra"]["timeout"] = 0.5
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", json.dumps(conn))
    ice_connection.set_faults(slow_create_delay=2.0)
    ice_connection.force_faults("GenerateAIAgentCall", "slow_create")


# -- a sibling cleared between tries ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["app", "phone", "nostore"])
def test_a_sibling_cleared_between_tries_does_not_make_the_retry_call_again(
    kind: str, ice_connection: IceEmulator, airflow_db: str, before_retry: Callable[..., None]
) -> None:
    dag = getattr(dags, f"ice_clear_sibling_{kind}")
    cleared: list[int] = []

    def clear_sibling(ti: Any) -> None:
        clear(ti.dag_id, ti.run_id, "sibling")
        cleared.append(clear_number(ti.dag_id, ti.run_id))

    before_retry("call", -1, clear_sibling)
    run = run_dag(dag)
    assert str(run.state) == "success"
    assert cleared == [1], "the sibling was cleared between the call's tries"
    assert task_instances(dag.dag_id, run.run_id)[("call", -1)][1] == 2  # it really retried
    [only] = calls(ice_connection)  # the sibling's own calls go to another agent
    record = result(dag.dag_id, run.run_id)
    original_id = make_correlation_id(dag.dag_id, run.run_id, "call", -1)
    assert correlation_of(only) == original_id
    assert (record["adopted"], record["correlation_id"]) == (True, original_id)


# -- the same task cleared --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["app", "phone"])
def test_the_same_task_cleared_after_its_call_finished_places_a_new_call(
    kind: str, ice_connection: IceEmulator, airflow_db: str
) -> None:
    dag = getattr(dags, f"ice_clear_self_{kind}")
    run = run_dag(dag)
    assert str(run.state) == "success"
    [first] = calls(ice_connection)
    wait_until_finished(ice_connection)

    clear(dag.dag_id, run.run_id, "call")
    assert resume(dag, run.run_id) == "success"
    first_now, second = calls(ice_connection)
    assert creates(ice_connection) == 2
    assert first_now["InstanceId"] == first["InstanceId"]
    assert correlation_of(first) == make_correlation_id(dag.dag_id, run.run_id, "call", -1)
    # Cleared after try 1: max_tries = 1 + retries, one try before the Clear.
    new_id = make_correlation_id(dag.dag_id, run.run_id, "call", -1, 1)
    assert correlation_of(second) == new_id
    record = result(dag.dag_id, run.run_id)
    assert (record["adopted"], record["instance_id"], record["correlation_id"]) == (
        False,
        second["InstanceId"],
        new_id,
    )


@pytest.mark.ice_emulator(user_join_delay=0.2, call_duration=4.0)
def test_the_same_task_cleared_while_its_call_runs_adopts_it_then_calls_anew_once_finished(
    ice_connection: IceEmulator, airflow_db: str
) -> None:
    dag = dags.ice_clear_self_app
    run = run_dag(dag)
    [first] = calls(ice_connection)
    assert first["Status"] != "Finished"

    clear(dag.dag_id, run.run_id, "call")
    assert resume(dag, run.run_id) == "success"
    assert creates(ice_connection) == 1
    [still] = calls(ice_connection)
    assert still["Status"] != "Finished", "the Clear must have seen the call running"
    record = result(dag.dag_id, run.run_id)
    assert (record["adopted"], record["instance_id"], record["correlation_id"]) == (
        True,
        first["InstanceId"],
        correlation_of(first),
    )

    # A retry after that Clear stands for the same call; a Clear after it finished calls anew.
    wait_until_finished(ice_connection)
    clear(dag.dag_id, run.run_id, "call")
    assert resume(dag, run.run_id) == "success"
    assert creates(ice_connection) == 2
    assert result(dag.dag_id, run.run_id)["adopted"] is False
    assert len({correlation_of(i) for i in calls(ice_connection)}) == 2


# -- a retry while the instance is not listed yet --------------------------------------------------


@pytest.mark.ice_emulator(user_join_delay=0.2, call_duration=0.5, listing_lag=40.0)
def test_a_retry_while_the_instance_is_unlisted_for_40_s_adopts_it(
    ice_connection: IceEmulator, airflow_db: str, lose_first_answer: None
) -> None:
    dag = dags.ice_clear_lagging_listing
    started = time.monotonic()
    run = run_dag(dag)
    elapsed = time.monotonic() - started
    assert str(run.state) == "success"
    assert task_instances(dag.dag_id, run.run_id)[("call", -1)][1] == 2  # the retry did the looking
    [only] = calls(ice_connection)
    assert creates(ice_connection) == 1
    state = ice_connection.state()
    assert state["faults_injected"]["slow_create"] == {"GenerateAIAgentCall": 1}
    assert state["faults_injected"]["listing_lag"]["ListAIAgentInstance"] >= 2  # it was hidden
    record = result(dag.dag_id, run.run_id)
    assert (record["adopted"], record["correlation_id"]) == (True, correlation_of(only))
    assert 38 < elapsed < 70


# -- mapped tasks ------------------------------------------------------------------------------------


@pytest.mark.ice_emulator(user_join_delay=0.2, call_duration=6.0)
def test_mapped_calls_one_index_retried_while_another_is_cleared(
    ice_connection: IceEmulator, airflow_db: str, before_retry: Callable[..., None]
) -> None:
    dag = dags.ice_clear_mapped
    cleared: list[int] = []

    def clear_index_0(ti: Any) -> None:
        clear(ti.dag_id, ti.run_id, "call", 0)
        cleared.append(clear_number(ti.dag_id, ti.run_id))

    before_retry("call", 1, clear_index_0)
    run = run_dag(dag)
    assert str(run.state) == "success"
    tis = task_instances(dag.dag_id, run.run_id)
    assert tis[("call", 1)][1] == 2  # index 1 retried
    assert tis[("call", 0)][1] == 2  # index 0 ran again after its Clear
    assert cleared == [1], (
        f"index 0 was cleared between index 1's tries (end: {clear_number(dag.dag_id, run.run_id)})"
    )
    assert creates(ice_connection) == 3
    by_id = {correlation_of(i): i for i in calls(ice_connection)}
    expected = {make_correlation_id(dag.dag_id, run.run_id, "call", index) for index in range(3)}
    assert set(by_id) == expected
    for index in range(3):
        record = result(dag.dag_id, run.run_id, index)
        assert record["correlation_id"] == make_correlation_id(dag.dag_id, run.run_id, "call", index)
        assert record["adopted"] is (index in (0, 1))


# -- UserData in every shape ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dag_id", "user_data", "sent"),
    [
        ("ice_clear_user_data", '{"customer": "dee"}', {"customer": "dee"}),
        ("ice_clear_user_data_native", {"customer": "dee"}, {"customer": "dee"}),
        ("ice_clear_user_data", "call Dee about the parcel", None),
        ("ice_clear_user_data", ["dee", "eli"], None),  # rendered to the repr "['dee', 'eli']"
        ("ice_clear_user_data", {"customer": "dee"}, None),  # rendered to the repr "{'customer': ...}"
        ("ice_clear_user_data_native", ["dee", "eli"], None),
    ],
    ids=["json-string", "native-dict", "plain-string", "list", "dict-as-repr", "native-list"],
)
def test_user_data_shapes(
    dag_id: str,
    user_data: Any,
    sent: dict[str, Any] | None,
    ice_connection: IceEmulator,
    airflow_db: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag = getattr(dags, dag_id)
    run = run_dag(dag, run_conf={"user_data": user_data})
    if sent is None:
        assert str(run.state) == "failed"
        assert creates(ice_connection) == 0
        out = capfd.readouterr().out
        assert "user_data: must be a dict or a string holding a JSON object" in out
        assert "correlation=False" in out
        return
    assert str(run.state) == "success"
    [only] = calls(ice_connection)
    assert json.loads(only["UserData"]) == {
        **sent,
        CORRELATION_KEY: make_correlation_id(dag.dag_id, run.run_id, "call", -1),
    }


def test_a_lost_answer_without_correlation_fails_without_retry(
    ice_connection: IceEmulator, airflow_db: str, lose_first_answer: None, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = dags.ice_clear_uncorrelated_lost_answer
    run = run_dag(dag)
    assert str(run.state) == "failed"
    state, tries, _ = task_instances(dag.dag_id, run.run_id)[("call", -1)]
    assert (state, tries) == ("failed", 1)  # retries=2, yet no retry
    assert creates(ice_connection) == 1
    assert [i["UserData"] for i in calls(ice_connection)] == ["plain text is fine without correlation"]
    assert "ICE (IMS) console" in capfd.readouterr().out
