"""Secret-leak scan: the whole pipeline at DEBUG with distinctive secrets, then search everywhere.

The example DAG ``ice_call_log_pipeline`` (and the reliability twin, with a failed first try of the
call) runs through ``dag.test()`` against an emulator whose AccessKey secret and STS token are
unique strings. The emulator records (``record_secrets=True``) every ARTC Token, AuthToken,
CallLogUrl (and its signature) and Authorization signature it handled. None of those values may
appear in: the captured output and log records (DEBUG), files under AIRFLOW_HOME/logs, XCom
values, rendered template fields, trigger kwargs (``serialize()``, as stored), task-instance rows
(``next_kwargs``), the metadata DB file as a whole, or the messages and tracebacks of the
provider's exceptions.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice._compat import has_feature
from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.download import CallLogDownloader
from airflow_provider_ice.api.signing import Credentials
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger
from tests.airflow_compat import plain_text, run_dag, without_masking_echo, wrap_inline_trigger
from tests.reliability._support import start_emulator

AGENT = "leak-scan-agent"


def find_leaks(secrets: dict[str, str], sources: dict[str, str]) -> list[str]:
    return [
        f"{kind} found in {where}"
        for where, text in sources.items()
        for secret, kind in secrets.items()
        if secret and secret in text
    ]


def _db_sources(dag_ids: set[str]) -> dict[str, str]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session

    from tests.airflow_compat import XComRow

    with create_session() as session:
        xcoms = session.query(XComRow).filter(XComRow.dag_id.in_(dag_ids)).all()
        rendered = session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.dag_id.in_(dag_ids)
        )
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id.in_(dag_ids)).all()
        triggers = session.query(Trigger).all()
        return {
            "XCom values": "\n".join(json.dumps(x.value, default=str) for x in xcoms),
            "rendered template fields": "\n".join(
                json.dumps(r.rendered_fields, default=str) for r in rendered
            ),
            "task instance next_kwargs": "\n".join(json.dumps(ti.next_kwargs, default=str) for ti in tis),
            "trigger table kwargs": "\n".join(str(t.kwargs) for t in triggers),
        }


@pytest.fixture
def debug_logging() -> Iterator[None]:
    """Airflow's logging (structlog and stdlib) at DEBUG for the test, then back to the configured level."""
    from airflow.configuration import conf
    from airflow.logging_config import configure_logging

    previous = conf.get("logging", "logging_level")
    root = logging.getLogger()
    pytest_handlers = list(root.handlers)
    conf.set("logging", "logging_level", "DEBUG")
    configure_logging()
    for handler in pytest_handlers:  # Airflow's dictConfig replaces the root handlers; keep pytest's
        if handler not in root.handlers:
            root.addHandler(handler)
    try:
        yield
    finally:
        conf.set("logging", "logging_level", previous)
        configure_logging()
        for handler in pytest_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)


def test_no_secret_reaches_logs_xcom_rendered_fields_trigger_kwargs_or_errors(
    airflow_db: str,
    request: pytest.FixtureRequest,
    dag_conn: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    debug_logging: None,
    reliability_report: dict[str, Any],
) -> None:
    emulator = start_emulator(
        record_secrets=True,
        calllog_expire_first=True,
        user_join_delay=0.1,
        # Long enough that every sensor defers (it checks once first), so trigger kwargs exist.
        call_duration=2.0,
        seed=11,
        access_key_id="LTAIleakscan",
        access_key_secret=f"AKSECRET{uuid.uuid4().hex}",
        security_token=f"STSTOKEN{uuid.uuid4().hex}",
        throttle_rate=0.2,
        retry_after_ms=20,
    )
    request.addfinalizer(emulator.stop)
    dag_conn(emulator, timeout=1.0)

    serialized: list[str] = []
    original_serialize = IceAIAgentInstanceTrigger.serialize

    def recording_serialize(self: IceAIAgentInstanceTrigger) -> tuple[str, dict[str, Any]]:
        result = original_serialize(self)
        serialized.append(json.dumps(result))
        return result

    monkeypatch.setattr(IceAIAgentInstanceTrigger, "serialize", recording_serialize)

    def serialize_then_run(original: Callable[..., Any], trigger: Any, *rest: Any) -> Any:
        # A triggerer stores the serialized trigger; Airflow 2's dag.test() skips that step.
        trigger.serialize()
        return original(trigger, *rest)

    wrap_inline_trigger(monkeypatch, serialize_then_run)

    example = importlib.import_module("example_dags.ice_call_log_pipeline").dag
    monkeypatch.setattr(example.task_dict["wait_for_call"], "poke_interval", 0.1)
    twin = importlib.import_module("tests.dags.ice_reliability_pipeline").dag
    states = []
    with caplog.at_level(logging.DEBUG):
        for number in range(2):
            run = run_dag(
                example, run_conf={"agent_id": AGENT, "destination": str(tmp_path / f"example-{number}")}
            )
            states.append(str(run.state))
        # A lost answer, a failed first try and an Airflow retry: error paths log too.
        emulator.force_faults("GenerateAIAgentCall", "slow_create")
        emulator.force_faults("GenerateAIAgentCall", "server_error_5xx")
        run = run_dag(twin, run_conf={"agent_id": AGENT, "destination": str(tmp_path / "twin-0")})
        states.append(str(run.state))
        run = run_dag(twin, run_conf={"agent_id": AGENT, "destination": str(tmp_path / "twin-1")})
        states.append(str(run.state))
        errors = _provoke_errors(emulator)
        shown = _model_and_request_texts(emulator)
    # The last create meets a 5xx and nothing is listed: a retry places the call where the task state
    # store has the write-ahead record; without it (Airflow < 3.3) the task fails without retry.
    assert states == ["success"] * 3 + ["success" if has_feature("the task state store") else "failed"]

    captured = capfd.readouterr()
    # Without colour codes, which could split a secret in two (Airflow 3.0 colours tracebacks).
    stdout, echoed = without_masking_echo(plain_text(captured.out))
    home = Path(os.environ["AIRFLOW_HOME"])
    log_files = [p for p in (home / "logs").rglob("*") if p.is_file()] if (home / "logs").exists() else []
    sources = {
        "captured stdout": stdout,
        "captured stderr": plain_text(captured.err),
        "log records": "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records),
        "log files under AIRFLOW_HOME/logs": "\n".join(p.read_text(errors="replace") for p in log_files),
        "trigger kwargs (serialize)": "\n".join(serialized),
        "exception messages and tracebacks": "\n".join(errors),
        "model reprs and dumps, signed-request reprs": "\n".join(shown),
        **_db_sources({example.dag_id, twin.dag_id}),
        "metadata DB file": Path(airflow_db.removeprefix("sqlite:///")).read_bytes().decode("latin-1"),
    }
    secrets = emulator.secrets()
    kinds = sorted(set(secrets.values()))
    # The scan must have had something to find, and places to look at.
    assert {
        "ARTC Token",
        "AuthToken",
        "CallLogUrl",
        "CallLogUrl signature",
        "Authorization signature",
    } <= set(kinds)
    assert serialized
    assert sources["XCom values"]
    assert sources["rendered template fields"]
    channel_ids = [i["ChannelId"] for i in emulator.state()["instances"]]
    # Task output: stdout under Airflow 3, stderr under Airflow 2's dag.test().
    looked_at = {
        "captured output": sources["captured stdout"] + sources["captured stderr"],
        "XCom values": sources["XCom values"],
        "rendered template fields": sources["rendered template fields"],
    }
    for where, text in looked_at.items():
        assert any(c in text for c in channel_ids) or AGENT in text, f"{where}: no run data"
    debug_line = "ICE ListAIAgentInstance -> HTTP 200"
    print({k: v.count(debug_line) for k, v in sources.items()})
    assert debug_line in looked_at["captured output"] + sources["log records"], "DEBUG lines are missing"
    print({k: len(v) for k, v in sources.items()})

    leaks = find_leaks(secrets, sources)
    if os.environ.get("ICE_LEAK_DUMP"):
        with open(os.environ["ICE_LEAK_DUMP"], "w") as dump:
            for where, text in sources.items():
                for line in text.splitlines():
                    for secret, kind in secrets.items():
                        if secret in line:
                            dump.write(f"{where} | {kind} | {line[:600]}\n")
    reliability_report["secret_leak_scan"] = {
        "dag_runs": len(states),
        "secret_values_checked": len(secrets),
        "secret_kinds": kinds,
        "places_scanned": sorted(sources),
        "bytes_scanned": sum(len(text) for text in sources.values()),
        "secrets_leaked": len(leaks),
        "excluded_airflow_dag_test_masking_echo_lines": echoed,
    }
    assert not leaks, "\n".join(leaks)


def _model_and_request_texts(emulator: IceEmulator) -> list[str]:
    """How listed instances and signed requests print and dump: every AuthToken (top level and the
    deprecated ``VoiceChat``/``VisionChat``/``AvatarChat3D`` copies) and the STS token must stay out."""
    from airflow_provider_ice.api.models import AIAgentInstance
    from airflow_provider_ice.api.signing import sign_request

    credentials = emulator.credentials
    assert credentials.security_token, "the scan needs an STS token to look for"
    with IceClient(credentials, endpoint=emulator.url) as client:
        listed = client.call_api("ListAIAgentInstance", {"AIAgentId": AGENT, "PageSize": 20})
    texts: list[str] = []
    for raw in listed["Instances"]:
        runtime = raw["RuntimeConfig"]
        assert runtime["VoiceChat"]["AuthToken"] == runtime["AuthToken"]  # the copy is there to leak
        for scenario in ("VisionChat", "AvatarChat3D"):  # the other documented copies, alike
            runtime[scenario] = {**runtime["VoiceChat"], "AuthToken": runtime["AuthToken"]}
        instance = AIAgentInstance.model_validate(raw)
        texts += [repr(instance), str(instance), repr(instance.runtime_config), repr(instance.model_dump())]
        texts += [instance.model_dump_json(), repr(instance.runtime_config.resolved())]
        texts += [repr(instance.runtime_config.voice_chat), repr(instance.runtime_config.avatar_chat_3d)]
    request = sign_request(
        credentials,
        host="ice.example.com",
        action="StartAIAgentInstance",
        params={"AIAgentId": AGENT, "RuntimeConfig": listed["Instances"][0]["RuntimeConfig"]},
    )
    assert request.headers["x-acs-security-token"] == credentials.security_token
    texts += [repr(request), str(request)]
    return texts


def _provoke_errors(emulator: IceEmulator) -> list[str]:
    """The provider's exceptions on paths that handle secrets: wrong secret, STS token, lost answer,
    expired and refused signed URLs. Returns their messages, reprs and tracebacks."""
    import io

    texts: list[str] = []

    def keep(call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as error:
            texts.extend([str(error), repr(error), "".join(traceback.format_exception(error))])
        else:  # pragma: no cover - each call below is built to fail
            raise AssertionError(f"{call} did not fail")

    credentials = emulator.credentials
    wrong = Credentials(
        credentials.access_key_id, credentials.access_key_secret + "x", credentials.security_token
    )
    with IceClient(wrong, endpoint=emulator.url, max_retries=0) as client:
        keep(lambda: client.describe_ai_agent_instance("i-1"))
    with IceClient(credentials, endpoint=emulator.url, max_retries=0, timeout=0.5) as client:
        emulator.set_faults(slow_create_rate=1.0, slow_create_delay=1.0, throttle_rate=0.0)
        keep(lambda: client.generate_ai_agent_call(AGENT))
        emulator.set_faults(slow_create_rate=0.0)
    # The listing gets the default timeout: 0.5 s is only for the create to time out.
    with IceClient(credentials, endpoint=emulator.url, max_retries=0) as client:
        finished = [i for i in client.list_ai_agent_instances(AGENT) if i.status == "Finished"]
    assert finished
    assert finished[0].call_log_url is not None
    url = finished[0].call_log_url.get_secret_value()
    with CallLogDownloader(allow_http=True, max_retries=0) as downloader:
        keep(lambda: downloader.download(url.replace("Signature=", "Signature=X"), io.BytesIO()))
        keep(lambda: downloader.download(url.replace("http://", "https://"), io.BytesIO()))
    with CallLogDownloader(allow_http=False, max_retries=0) as downloader:
        keep(lambda: downloader.download(url, io.BytesIO()))
    return texts
