"""The pytest fixtures users get, and the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.emulator.cli import build_parser, config_from_args
from tests.emulator.conftest import send, signed


@pytest.mark.ice_emulator(call_duration=7, throttle_rate=0.25, seed=9)
def test_marker_configures_the_fixture(ice_emulator: IceEmulator) -> None:
    assert ice_emulator.config.call_duration == 7
    assert ice_emulator.config.seed == 9
    assert ice_emulator.faults.config.throttle_rate == 0.25
    assert ice_emulator.config.user_join_delay == 0.2  # the fixture's short default stays


@pytest.mark.parametrize("ice_emulator", [{"no_show_rate": 1.0}], indirect=True)
def test_indirect_parametrization(ice_emulator: IceEmulator) -> None:
    assert ice_emulator.config.no_show_rate == 1.0


def test_ice_connection_sets_the_airflow_connection(ice_connection: IceEmulator) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_ICE_DEFAULT"])
    assert conn == {
        "conn_type": "alibaba_ice",
        "login": ice_connection.access_key_id,
        "password": ice_connection.access_key_secret,
        "extra": {"endpoint": ice_connection.url, "region": "cn-shanghai"},
    }


def test_ice_connection_works_through_the_hook(ice_connection: IceEmulator) -> None:
    from airflow_provider_ice.hooks.ice import IceHook

    hook = IceHook()
    created = hook.generate_ai_agent_call("agent-hook", user_data={"k": "v"})
    assert [s["InstanceId"] for s in ice_connection.state()["instances"]] == [created.instance_id]


def test_factory_gives_independent_emulators(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    first, second = ice_emulator_factory(seed=1), ice_emulator_factory(seed=2)
    assert first.url != second.url
    assert send(first, signed(first, "GenerateAIAgentCall", {"AIAgentId": "a"})).status_code == 200
    assert len(first.state()["instances"]) == 1
    assert second.state()["instances"] == []


def test_stopped_emulator_refuses_connections(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory()
    url = emulator.url
    emulator.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_emulator/health")
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.url


def test_unknown_fixture_setting_is_named(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    with pytest.raises(TypeError, match="call_duraton"):
        ice_emulator_factory(call_duraton=3)


def test_cli_flags_become_the_config() -> None:
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--seed",
            "4",
            "--throttle-rate",
            "0.1",
            "--fault-actions",
            "GenerateAIAgentCall",
            "--drop-before-execute",
            "--call-duration",
            "3",
            "--calllog-expire-first",
            "--listing-lag",
            "40",
        ]
    )
    config = config_from_args(args)
    assert (config.port, config.seed, config.call_duration) == (0, 4, 3)
    assert config.faults.throttle_rate == 0.1
    assert config.faults.actions == frozenset({"GenerateAIAgentCall"})
    assert config.faults.drop_after_execute is False
    assert config.faults.calllog_expire_first is True
    assert config.faults.listing_lag == 40.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--throttle-rate", "1.5"])


def test_command_prints_the_connection_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_ice.emulator",
            "--port",
            "0",
            "--seed-history",
            "agent-x:100:1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        # A shell's background job inherits an ignored SIGINT; Ctrl-C must reach the emulator.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        lines = [process.stdout.readline() for _ in range(4)]  # type: ignore[union-attr]
        export = next(line for line in lines if line.startswith("export AIRFLOW_CONN_ICE_DEFAULT="))
        conn = json.loads(export.split("=", 1)[1].strip().strip("'"))
        endpoint = conn["extra"]["endpoint"]
        state = httpx.get(f"{endpoint}/_emulator/state", timeout=5).json()
        assert len(state["instances"]) == 100
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert "stopped" in process.stdout.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()


def _first_ids(emulator: IceEmulator) -> tuple[str, str]:
    response = send(emulator, signed(emulator, "GenerateAIAgentCall", {"AIAgentId": "a"}))
    assert response.status_code == 200
    (instance,) = emulator.state()["instances"]
    return instance["InstanceId"], instance["ChannelId"]


def test_ids_are_unique_per_emulator_unless_seeded(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    """A restarted emulator (default ``--seed``) never reuses an earlier InstanceId or ChannelId."""
    unseeded = [config_from_args(build_parser().parse_args(["--port", "0"])) for _ in range(2)]
    assert [config.seed for config in unseeded] == [None, None]
    first, second = (_first_ids(ice_emulator_factory(seed=config.seed)) for config in unseeded)
    assert first[0] != second[0]
    assert first[1] != second[1]
    seeded = [config_from_args(build_parser().parse_args(["--seed", "4"])).seed for _ in range(2)]
    assert seeded == [4, 4]
    assert _first_ids(ice_emulator_factory(seed=4)) == _first_ids(ice_emulator_factory(seed=4))
