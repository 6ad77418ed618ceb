"""IceFetchCallLogOperator against the emulator over real signed HTTP (and a few seams for timing)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import Asset, ObjectStoragePath

from airflow_provider_ice._compat import make_asset
from airflow_provider_ice.api.call_log import parse_call_log
from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.models import AIAgentInstance
from airflow_provider_ice.api.waiting import Observation, Outcome
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.exceptions import IceCallLogError, IceCallLogInvalidError, IceCallLogNotReadyError
from airflow_provider_ice.operators import call_log as call_log_module
from airflow_provider_ice.operators.call_log import IceFetchCallLogOperator, default_asset

pytestmark = pytest.mark.integration

AGENT = "agent-fetch"
YESTERDAY = (datetime.now(timezone.utc) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def seeded(emulator: IceEmulator, count: int = 3) -> list[dict[str, Any]]:
    emulator.seed_history(AGENT, count, YESTERDAY, YESTERDAY + timedelta(hours=1))
    return emulator.state(AGENT)["instances"]


def operator(**kwargs: Any) -> IceFetchCallLogOperator:
    kwargs.setdefault("agent_id", AGENT)
    kwargs.setdefault("created_after", (YESTERDAY - timedelta(minutes=1)).isoformat())
    kwargs.setdefault("empty_url_poll_interval", 0.01)
    return IceFetchCallLogOperator(task_id="fetch", **kwargs)


def direct_bytes(emulator: IceEmulator, instance_id: str) -> bytes:
    """The call log as served, via a fresh URL from DescribeAIAgentInstance (an independent path)."""
    from airflow_provider_ice.api.client import IceClient

    with IceClient(emulator.credentials, endpoint=emulator.url) as client:
        url = client.describe_ai_agent_instance(instance_id).call_log_url
    assert url is not None
    return httpx.get(url.get_secret_value()).content


class _Events:
    """Stands in for ``context["outlet_events"]``: one accessor with an ``extra`` dict per asset.

    Keyed by URI, as Airflow keys its accessors by the asset's identity (an Airflow 3.0 asset is
    not hashable).
    """

    def __init__(self) -> None:
        self._by_uri: dict[str, Any] = {}

    def __getitem__(self, asset: Asset) -> Any:
        return self._by_uri.setdefault(asset.uri, type("Event", (), {"extra": {}})())


def test_fetches_by_correlation_id_keeping_raw_bytes(ice_connection: IceEmulator, tmp_path: Path) -> None:
    instance = seeded(ice_connection)[1]
    correlation = json.loads(instance["UserData"])["AirflowCorrelationId"]
    events = _Events()
    result = operator(correlation_id=correlation, destination=str(tmp_path) + "/").execute(
        {"outlet_events": events}  # type: ignore[arg-type]
    )
    final = tmp_path / f"{instance['ChannelId']}.json"
    raw = final.read_bytes()
    assert raw == direct_bytes(ice_connection, instance["InstanceId"])
    assert result["uri"] == final.resolve().as_uri()
    assert result["bytes"] == len(raw)
    assert result["sha256"] == hashlib.sha256(raw).hexdigest()
    assert result["channel_id"] == instance["ChannelId"]
    assert result["instance_id"] == instance["InstanceId"]
    assert result["correlation_id"] == correlation
    log = parse_call_log(raw)
    assert result["turns"] == len(log.turns) > 0
    assert result["duration_ms"] == log.duration_ms
    assert "Signature" not in json.dumps(result)
    assert "_calllogs" not in json.dumps(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]  # no temp file left
    asset = default_asset(AGENT)
    assert events[asset].extra["sha256"] == result["sha256"]


def test_accepts_the_generate_operator_output_and_defaults_its_destination(
    ice_connection: IceEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICE_DATA_DIR", str(tmp_path))
    instance = seeded(ice_connection)[0]
    call = {
        "agent_id": AGENT,
        "instance_id": instance["InstanceId"],
        "channel_id": instance["ChannelId"],
        "correlation_id": None,
        "created_at": instance["CreatedAt"],
    }
    op = IceFetchCallLogOperator(task_id="fetch", call=call)
    result = op.execute({})  # type: ignore[arg-type]
    expected = tmp_path / "call_logs" / AGENT / f"{instance['ChannelId']}.json"
    assert result["uri"] == expected.resolve().as_uri()
    assert expected.read_bytes() == direct_bytes(ice_connection, instance["InstanceId"])
    # The agent is only known at run time here, so the catch-all asset is declared.
    assert op.outlets == [make_asset("ice_call_logs_all", "ice://call-logs/all")]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_the_call_log_file_gets_the_mode_of_a_plain_write(
    ice_connection: IceEmulator, tmp_path: Path, umask: int
) -> None:
    instance = seeded(ice_connection)[0]
    final, plain = tmp_path / "log.json", tmp_path / "plain.json"
    previous = os.umask(umask)
    try:
        operator(channel_id=instance["ChannelId"], destination=str(final)).execute({})  # type: ignore[arg-type]
        plain.write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(final.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


@pytest.mark.ice_emulator(calllog_expire_first=True)
def test_an_expired_url_is_replaced_by_a_fresh_one(
    ice_connection: IceEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance = seeded(ice_connection)[0]
    final = tmp_path / "log.json"
    with caplog.at_level("DEBUG"):
        result = operator(channel_id=instance["ChannelId"], destination=str(final)).execute({})  # type: ignore[arg-type]
    # The task logger prints through structlog; stdlib loggers (httpx) reach caplog.
    captured = capsys.readouterr()
    logged = "\n".join([captured.out, captured.err, *(record.getMessage() for record in caplog.records)])
    assert "refused the URL (HTTP 403" in logged
    assert "ListAIAgentInstance" in logged  # the capture really holds the task's HTTP logging
    assert not [line for line in logged.splitlines() if "Signature=" in line and "Signature=***" not in line]
    state = ice_connection.state(AGENT)
    assert state["calllog_denied"] == 1  # the first URL was refused...
    assert state["request_counts"]["ListAIAgentInstance"] >= 2  # ...and a fresh one listed
    assert final.read_bytes() == direct_bytes(ice_connection, instance["InstanceId"])
    assert result["bytes"] == final.stat().st_size


@pytest.mark.ice_emulator(calllog_truncate_rate=1.0)
def test_a_truncated_body_fails_clearly_and_leaves_the_old_file(
    ice_connection: IceEmulator, tmp_path: Path
) -> None:
    instance = seeded(ice_connection)[0]
    final = tmp_path / "log.json"
    final.write_bytes(b'{"previous": "run"}')
    with pytest.raises(IceCallLogInvalidError, match="not complete JSON") as err:
        operator(channel_id=instance["ChannelId"], destination=str(final), max_url_refreshes=1).execute({})  # type: ignore[arg-type]
    assert "Signature" not in str(err.value)
    assert final.read_bytes() == b'{"previous": "run"}'  # never a partial file under the final name
    assert [p.name for p in tmp_path.iterdir()] == ["log.json"]
    assert ice_connection.state(AGENT)["calllog_downloads"][instance["InstanceId"]] == 2  # 1 + 1 refresh


def test_a_rerun_replaces_the_file(ice_connection: IceEmulator, tmp_path: Path) -> None:
    instance = seeded(ice_connection)[0]
    final = tmp_path / "nested" / "log.json"
    final.parent.mkdir()
    final.write_bytes(b"stale")
    op = operator(channel_id=instance["ChannelId"], destination=f"file://{final}")
    first = op.execute({})  # type: ignore[arg-type]
    second = op.execute({})  # type: ignore[arg-type]
    assert first["sha256"] == second["sha256"] == hashlib.sha256(final.read_bytes()).hexdigest()
    assert final.read_bytes() != b"stale"
    assert [p.name for p in final.parent.iterdir()] == ["log.json"]


def test_size_cap(ice_connection: IceEmulator, tmp_path: Path) -> None:
    instance = seeded(ice_connection)[0]
    final = tmp_path / "log.json"
    with pytest.raises(IceCallLogInvalidError, match="max_bytes=200"):
        operator(channel_id=instance["ChannelId"], destination=str(final), max_bytes=200).execute({})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_object_storage_destination(ice_connection: IceEmulator, tmp_path: Path) -> None:
    """Through the object-storage path (an in-memory filesystem stands in for s3/oss: no rename)."""
    from fsspec.implementations.memory import MemoryFileSystem

    from tests.airflow_compat import attach_filesystem

    attach_filesystem("memory", fs=MemoryFileSystem())
    instance = seeded(ice_connection)[0]
    destination = ObjectStoragePath("memory://ice-test/call_logs/latest.json")
    result = operator(channel_id=instance["ChannelId"], destination=destination).execute({})  # type: ignore[arg-type]
    # The destination's own URI (Airflow 2's universal-pathlib writes "memory:///...", 3.x "memory://...").
    assert result["uri"] == str(destination)
    assert result["uri"].endswith("ice-test/call_logs/latest.json")
    stored = ObjectStoragePath(result["uri"])
    assert stored.read_bytes() == direct_bytes(ice_connection, instance["InstanceId"])
    assert [p.name for p in stored.parent.iterdir()] == ["latest.json"]  # the temporary key is gone
    # A string ending in "/" is a directory: the file is named after the channel.
    again = operator(channel_id=instance["ChannelId"], destination="memory://ice-test/by_channel/").execute(
        {}
    )  # type: ignore[arg-type]
    assert again["uri"] == str(
        ObjectStoragePath(f"memory://ice-test/by_channel/{instance['ChannelId']}.json")
    )
    assert again["sha256"] == result["sha256"]


def _finished(url: str | None) -> Observation:
    wire = {"Status": "Finished", "RuntimeConfig": {"ChannelId": "ch-x"}, "CallLogUrl": url or ""}
    return Observation(Outcome.FINISHED, AIAgentInstance.model_validate(wire))


def test_waits_with_backoff_for_an_empty_call_log_url(
    ice_connection: IceEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = seeded(ice_connection)[0]
    from airflow_provider_ice.api.client import IceClient

    with IceClient(ice_connection.credentials, endpoint=ice_connection.url) as client:
        url = client.describe_ai_agent_instance(instance["InstanceId"]).call_log_url
    assert url is not None
    answers = [_finished(None), _finished(None), _finished(url.get_secret_value())]
    monkeypatch.setattr(call_log_module, "poll_instance", lambda _hook, _target: answers.pop(0))
    sleeps: list[float] = []
    monkeypatch.setattr(call_log_module.time, "sleep", sleeps.append)
    result = operator(channel_id="ch-x", destination=str(tmp_path) + "/", empty_url_poll_interval=2).execute(
        {}
    )  # type: ignore[arg-type]
    assert sleeps == [2, 4]
    assert (tmp_path / "ch-x.json").stat().st_size == result["bytes"]


def test_gives_up_when_the_url_stays_empty(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(call_log_module, "poll_instance", lambda _hook, _target: _finished(None))
    clock = iter(range(0, 1000, 7))
    monkeypatch.setattr(call_log_module.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(call_log_module.time, "sleep", lambda _s: None)
    op = operator(channel_id="ch-x", destination=str(tmp_path) + "/", empty_url_timeout=30)
    options = {"allow_http": True, "verify": True}
    op.__dict__["hook"] = type("Hook", (), {"download_options": lambda _self: options})()
    with pytest.raises(
        IceCallLogNotReadyError, match=r"CallLogUrl stayed empty for 30s \(empty_url_timeout\)"
    ):
        op.execute({})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ice_emulator(call_duration=600)
def test_an_unfinished_instance_is_not_fetched(ice_connection: IceEmulator, tmp_path: Path) -> None:
    from airflow_provider_ice.hooks.ice import IceHook

    response = IceHook().generate_ai_agent_call(AGENT, user_data={"AirflowCorrelationId": "af-unfinished"})
    op = operator(correlation_id="af-unfinished", created_after=None, destination=str(tmp_path) + "/")
    with pytest.raises(IceCallLogNotReadyError, match="not Finished"):
        op.execute({})  # type: ignore[arg-type]
    assert response.instance_id
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ice_emulator(call_duration=600, user_join_delay=0.05)
def test_an_executing_instance_that_already_carries_a_url_is_not_downloaded(
    ice_connection: IceEmulator, tmp_path: Path
) -> None:
    import time

    from airflow_provider_ice.hooks.ice import IceHook

    hook = IceHook()
    user_data = {"AirflowCorrelationId": "af-early-url", "EmulatorScenario": {"EarlyCallLogUrl": True}}
    hook.generate_ai_agent_call(AGENT, user_data=user_data)
    time.sleep(0.2)  # the user joined: Executing
    [listed] = list(hook.list_ai_agent_instances(AGENT))
    assert str(listed.status) == "Executing"
    assert listed.call_log_url is not None  # the URL is there: only the status may hold the fetch back
    op = operator(correlation_id="af-early-url", created_after=None, destination=str(tmp_path) + "/")
    with pytest.raises(IceCallLogNotReadyError, match="is Executing, not Finished"):
        op.execute({})  # type: ignore[arg-type]
    assert ice_connection.state(AGENT)["calllog_downloads"] == {}
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_instance_fails(ice_connection: IceEmulator, tmp_path: Path) -> None:
    with pytest.raises(
        IceCallLogNotReadyError, match="no instance found for agent 'agent-fetch', channel 'nope'"
    ):
        operator(channel_id="nope", destination=str(tmp_path) + "/").execute({})  # type: ignore[arg-type]


@pytest.mark.ice_emulator(calllog_error_rate=1.0)
def test_storage_errors_are_retried_then_reported(
    ice_connection: IceEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    instance = seeded(ice_connection)[0]
    op = operator(channel_id=instance["ChannelId"], destination=str(tmp_path) + "/", download_retries=1)
    with pytest.raises(IceCallLogError, match="HTTP 503") as err:
        op.execute({})  # type: ignore[arg-type]
    assert not isinstance(err.value, IceCallLogInvalidError)  # a retry of the task may succeed
    assert "gave up after 2 attempts" in str(err.value)
    assert sum("Call-log download attempt 1 failed" in r.getMessage() for r in caplog.records) == 1
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused_before_any_request() -> None:
    with pytest.raises(IceValidationError, match="agent_id"):
        IceFetchCallLogOperator(task_id="f", channel_id="c").target()
    with pytest.raises(IceValidationError, match="channel_id"):
        IceFetchCallLogOperator(task_id="f", agent_id="a").target()
    with pytest.raises(ValueError, match="call: must be a dict"):
        IceFetchCallLogOperator(task_id="f", call=["x"]).target()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_bytes"):
        IceFetchCallLogOperator(task_id="f", agent_id="a", max_bytes=0)
    with pytest.raises(IceValidationError, match="created_after: must be an ISO-8601 time"):
        IceFetchCallLogOperator(task_id="f", agent_id="a", channel_id="c", created_after="last week").target()


def test_templated_agent_gets_the_catch_all_asset() -> None:
    op = IceFetchCallLogOperator(task_id="f", agent_id="{{ params.agent }}", channel_id="c")
    assert op.outlets == [make_asset("ice_call_logs_all", "ice://call-logs/all")]
    mine = Asset("s3://bucket/call-logs")
    assert IceFetchCallLogOperator(task_id="g", agent_id="a", channel_id="c", outlets=[mine]).outlets == [
        mine
    ]
