"""The agent call in a DAG: ``dag.test()`` against the emulator over real signed HTTP.

Every test proves from the emulator's own state how many instances exist per task instance, and
that no Token, AuthToken, AccessKey secret or signed URL reached the logs, XCom or trigger kwargs.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.correlation import CORRELATION_KEY, make_correlation_id
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.emulator.identity import derive
from tests.airflow_compat import (
    run_dag,
    task_output,
    without_masking_echo,
    wrap_inline_trigger,
    xcom_rows,
    xcom_value,
)
from tests.dags.ice_agent_call_test_dags import AGENT_ID

pytestmark = [pytest.mark.integration, pytest.mark.ice_emulator(user_join_delay=0.2, call_duration=0.5)]

MODES = ("sync", "deferrable")


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ARTC Token the emulator handed out, captured below the operator (to look for leaks)."""
    captured: list[str] = []
    original = IceClient.generate_ai_agent_call

    def spy(self: IceClient, *args: Any, **kwargs: Any) -> Any:
        response = original(self, *args, **kwargs)
        if response.token is not None:
            captured.append(response.token.get_secret_value())
        return response

    monkeypatch.setattr(IceClient, "generate_ai_agent_call", spy)
    return captured


def run(dag_id: str, **conf: Any) -> Any:
    """``dag.test()`` of a DAG in tests/dags (it is also in the DAGs folder, as dag.test() needs)."""
    from tests.dags import ice_agent_call_test_dags as module

    return run_dag(getattr(module, dag_id), run_conf=conf or None)


def instances(emulator: IceEmulator) -> list[dict[str, Any]]:
    return emulator.state(AGENT_ID)["instances"]


def correlation_ids(emulator: IceEmulator) -> list[str]:
    return [json.loads(i["UserData"])[CORRELATION_KEY] for i in instances(emulator)]


def xcom_values(dag_id: str, run_id: str) -> dict[tuple[str, int, str], Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = xcom_rows(session, dag_id, run_id)
        return {(row.task_id, row.map_index, row.key): xcom_value(row) for row in rows}


def task_states(run_: Any) -> dict[tuple[str, int], str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {(ti.task_id, ti.map_index): str(ti.state) for ti in run_.get_task_instances(session=session)}


def assert_no_secrets(emulator: IceEmulator, tokens: list[str], *texts: str) -> None:
    seed = emulator.config.seed
    secrets = [emulator.access_key_secret, *tokens]
    secrets += [derive(seed, i["InstanceId"], "auth-token", 24) for i in instances(emulator)]
    # dag.test()'s own echo of the masking request is not a leak of ours (see without_masking_echo).
    blob = "\n".join(without_masking_echo(text)[0] for text in texts)
    for secret in secrets:
        assert secret not in blob
    # Signed call-log URLs (served by the emulator under /_calllogs/ with an OSS signature).
    assert "_calllogs/" not in blob
    assert "Signature=" not in blob


@pytest.mark.parametrize("mode", MODES)
def test_call_and_wait_places_exactly_one_call(
    mode: str,
    ice_connection: IceEmulator,
    airflow_db: str,
    tokens: list[str],
    triggers: list,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag_id = f"ice_test_call_wait_{mode}"
    run_ = run(dag_id, customer="zoe")
    assert str(run_.state) == "success"
    [only] = instances(ice_connection)
    assert only["Status"] == "Finished"
    assert json.loads(only["UserData"]) == {
        "customer": "zoe",
        CORRELATION_KEY: make_correlation_id(dag_id, run_.run_id, "call", -1),
    }
    values = xcom_values(dag_id, run_.run_id)
    result = values[("call", -1, "return_value")]
    assert result["instance_id"] == only["InstanceId"]
    assert result["channel_id"] == only["ChannelId"]
    assert result["adopted"] is False
    assert values[("call", -1, "ice_instance_console_url")].endswith(f"instanceId={only['InstanceId']}")
    assert tokens, "the emulator handed out a Token (so the leak check below means something)"
    assert (len(triggers) == 1) is (mode == "deferrable")
    assert_no_secrets(
        ice_connection,
        tokens,
        task_output(capfd),
        json.dumps(list(values.values()), default=str),
        json.dumps(triggers),
    )


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_a_worker_crash_adopts_the_call(
    mode: str,
    ice_connection: IceEmulator,
    airflow_db: str,
    tokens: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag_id = f"ice_test_call_crash_retry_{mode}"
    run_ = run(dag_id)
    assert str(run_.state) == "success"
    out = task_output(capfd)
    assert "simulated worker crash" in out  # the first try really died after the call
    [only] = instances(ice_connection)  # ...and the retry did not call again
    assert ice_connection.state()["request_counts"].get("GenerateAIAgentCall") == 1
    values = xcom_values(dag_id, run_.run_id)
    assert values[("call", -1, "return_value")]["adopted"] is True
    assert values[("call", -1, "return_value")]["channel_id"] == only["ChannelId"]
    assert values[("wait", -1, "return_value")]["status"] == "Finished"
    assert_no_secrets(ice_connection, tokens, out, json.dumps(list(values.values()), default=str))


@pytest.mark.parametrize("mode", MODES)
def test_lost_generate_response_is_adopted_not_repeated(
    mode: str,
    ice_connection: IceEmulator,
    airflow_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    conn = json.loads(ice_connection.airflow_conn_json())
    conn["extra"]["timeout"] = 0.5  # the client gives up long before the slow create answers
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", json.dumps(conn))
    ice_connection.set_faults(slow_create_rate=1.0, slow_create_delay=2.0, actions=["GenerateAIAgentCall"])
    dag_id = f"ice_test_call_lost_response_{mode}"
    run_ = run(dag_id)
    assert str(run_.state) == "success"
    [only] = instances(ice_connection)
    assert only["Status"] == "Finished"
    assert ice_connection.state()["request_counts"].get("GenerateAIAgentCall") == 1
    result = xcom_values(dag_id, run_.run_id)[("call", -1, "return_value")]
    assert result["adopted"] is True
    assert result["channel_id"] == only["ChannelId"]
    assert "outcome is unknown" in task_output(capfd)


@pytest.mark.ice_emulator(user_join_delay=0.2, call_duration=1.5)
def test_trigger_restarted_from_its_serialized_form_finishes_without_a_second_call(
    ice_connection: IceEmulator, airflow_db: str, monkeypatch: pytest.MonkeyPatch, tokens: list[str]
) -> None:
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    lives: list[dict[str, Any]] = []

    class DiesAfter(BaseTrigger):
        """The first triggerer: runs the real trigger briefly, then the process 'dies'."""

        def __init__(self, inner: BaseTrigger, seconds: float) -> None:
            super().__init__()
            self.inner, self.seconds = inner, seconds

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return self.inner.serialize()

        async def run(self) -> AsyncIterator[TriggerEvent]:
            events = self.inner.run()
            try:
                yield await asyncio.wait_for(anext(events), self.seconds)
            except asyncio.TimeoutError:
                yield TriggerEvent({"died": True})
            finally:
                await events.aclose()

    def restarting(original: Any, trigger: BaseTrigger, *rest: Any) -> Any:
        classpath, kwargs = trigger.serialize()
        lists_before = ice_connection.state()["request_counts"].get("ListAIAgentInstance", 0)
        first = original(DiesAfter(trigger, 0.5), *rest)
        lives.append(
            {
                "first_event": first.payload,
                "first_polls": ice_connection.state()["request_counts"].get("ListAIAgentInstance", 0)
                - lists_before,
                "status_at_death": instances(ice_connection)[0]["Status"],
                "kwargs": kwargs,
            }
        )
        module, name = classpath.rsplit(".", 1)
        revived = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
        return original(revived, *rest)

    wrap_inline_trigger(monkeypatch, restarting)
    run_ = run("ice_test_call_wait_deferrable")
    assert str(run_.state) == "success"
    [life] = lives
    assert life["first_event"] == {"died": True}
    assert life["first_polls"] >= 1
    assert life["status_at_death"] != "Finished"
    [only] = instances(ice_connection)
    assert only["Status"] == "Finished"
    assert ice_connection.state()["request_counts"].get("GenerateAIAgentCall") == 1
    assert_no_secrets(ice_connection, tokens, json.dumps(life["kwargs"]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.ice_emulator(user_join_delay=0.2, call_duration=30)
def test_timed_out_wait_stops_its_instance(
    mode: str, ice_connection: IceEmulator, airflow_db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    run_ = run(f"ice_test_call_timeout_{mode}")
    assert str(run_.state) == "failed"
    [only] = instances(ice_connection)
    assert only["Status"] == "Finished"
    assert only["EndReason"] == "Stopped"
    assert ice_connection.state()["request_counts"].get("StopAIAgentInstance") == 1
    assert "did not finish" in task_output(capfd)


@pytest.mark.parametrize("mode", MODES)
def test_mapped_calls_one_per_map_index(
    mode: str,
    ice_connection: IceEmulator,
    airflow_db: str,
    tokens: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    dag_id = f"ice_test_call_mapped_{mode}"
    run_ = run(dag_id)
    assert str(run_.state) == "success"
    expected = {make_correlation_id(dag_id, run_.run_id, "call", index) for index in range(3)}
    ids = correlation_ids(ice_connection)
    assert sorted(ids) == sorted(expected)  # one instance per map index, none twice
    customers = sorted(json.loads(i["UserData"])["customer"] for i in instances(ice_connection))
    assert customers == ["eve", "fay", "gus"]
    values = xcom_values(dag_id, run_.run_id)
    waits = [values[("wait", index, "return_value")] for index in range(3)]
    assert {w["status"] for w in waits} == {"Finished"}
    assert {w["correlation_id"] for w in waits} == expected
    assert_no_secrets(
        ice_connection, tokens, task_output(capfd), json.dumps(list(values.values()), default=str)
    )


def test_example_dag_scheduled_agent_calls(
    ice_connection: IceEmulator,
    airflow_db: str,
    monkeypatch: pytest.MonkeyPatch,
    tokens: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ICE_POKE_INTERVAL", "0.2")
    import importlib

    import example_dags.ice_scheduled_agent_calls as module

    dag = importlib.reload(module).dag
    recipients = [{"name": "Ann"}, {"name": "Bo"}]
    run_ = run_dag(dag, run_conf={"agent_id": AGENT_ID, "recipients": recipients})
    assert str(run_.state) == "success"
    assert sorted(json.loads(i["UserData"])["name"] for i in instances(ice_connection)) == ["Ann", "Bo"]
    values = xcom_values(dag.dag_id, run_.run_id)
    assert values[("summarise", -1, "return_value")] == {
        "calls": 2,
        "by_status": {"Finished": 2},
        "with_call_log": 2,
    }
    assert_no_secrets(
        ice_connection, tokens, task_output(capfd), json.dumps(list(values.values()), default=str)
    )
