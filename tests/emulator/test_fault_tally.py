"""The emulator's own fault tally (by kind and action) and scripted faults (force over Python/HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_ice.emulator import IceEmulator
from tests.emulator.conftest import FakeClock, send, signed

LIST = "ListAIAgentInstance"
GENERATE = "GenerateAIAgentCall"
DESCRIBE = "DescribeAIAgentInstance"
KINDS = {
    "throttled",
    "server_error_5xx",
    "dropped_connection",
    "slow_create",
    "calllog_error",
    "calllog_truncated",
    "calllog_expired",
    "listing_lag",
}


def _call(emulator: IceEmulator, action: str, params: dict[str, Any], timeout: float = 5.0) -> httpx.Response:
    return send(emulator, signed(emulator, action, params), timeout=timeout)


def _status(emulator: IceEmulator, action: str = LIST, timeout: float = 5.0) -> int | str:
    """HTTP status of one call, or the name of the transport error it met (Describe: 404 unfaulted)."""
    params = {"InstanceId": "i-unknown"} if action == DESCRIBE else {"AIAgentId": "agent-t"}
    try:
        return _call(emulator, action, params, timeout=timeout).status_code
    except httpx.TransportError as err:
        return type(err).__name__


def test_counts_every_injected_fault_by_kind_and_action(
    ice_emulator_factory: Callable[..., IceEmulator],
) -> None:
    emulator = ice_emulator_factory(seed=3, throttle_rate=0.3, error_rate=0.2, drop_rate=0.1)
    outcomes = [_status(emulator, action) for action in (LIST, DESCRIBE) * 30]
    state = emulator.state()
    injected, totals = state["faults_injected"], state["faults_injected_total"]
    assert set(injected) == set(totals) == KINDS
    # Every answer is accounted for by the tally, kind by kind and action by action.
    by_action = {LIST: outcomes[0::2], DESCRIBE: outcomes[1::2]}
    for action, seen in by_action.items():
        assert injected["throttled"].get(action, 0) == seen.count(400)
        assert injected["server_error_5xx"].get(action, 0) == seen.count(500) + seen.count(503)
        assert injected["dropped_connection"].get(action, 0) == seen.count("RemoteProtocolError")
    assert totals["throttled"] == outcomes.count(400) > 0
    assert totals["server_error_5xx"] == outcomes.count(500) + outcomes.count(503) > 0
    assert totals["dropped_connection"] == outcomes.count("RemoteProtocolError") > 0
    assert totals["slow_create"] == 0  # reads are never slow creates
    assert state["request_counts"] == {LIST: 30, DESCRIBE: 30}
    errors = state["error_counts"]
    assert errors["Throttling.User"] == totals["throttled"]
    assert errors["InternalError"] + errors["ServiceUnavailable"] == totals["server_error_5xx"]


def test_slow_create_is_counted_on_the_creating_action(
    ice_emulator_factory: Callable[..., IceEmulator],
) -> None:
    emulator = ice_emulator_factory(slow_create_rate=1.0, slow_create_delay=1.0)
    assert _status(emulator, GENERATE, timeout=0.3) == "ReadTimeout"
    assert _status(emulator, LIST) == 200
    assert emulator.state()["faults_injected"]["slow_create"] == {GENERATE: 1}


def test_download_faults_are_counted_under_calllog_download(
    ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock
) -> None:
    emulator = ice_emulator_factory(clock=clock, calllog_url_ttl=60, calllog_error_rate=1.0)
    instance_id = _call(emulator, GENERATE, {"AIAgentId": "agent-t"}).json()["InstanceId"]
    clock.advance(3600)
    url = _call(emulator, DESCRIBE, {"InstanceId": instance_id}).json()["Instance"]["CallLogUrl"]
    assert httpx.get(url).status_code == 503
    emulator.set_faults(calllog_error_rate=0.0, calllog_truncate_rate=1.0)
    assert httpx.get(url).status_code == 200
    clock.advance(61)
    assert httpx.get(url).status_code == 403
    # A tampered URL is not an expiry, and a refused download meets no 503/truncation.
    assert httpx.get(url.replace("Signature=", "Signature=A")).status_code == 403
    injected = emulator.state()["faults_injected"]
    assert injected["calllog_error"] == {"CallLogDownload": 1}
    assert injected["calllog_truncated"] == {"CallLogDownload": 1}
    assert injected["calllog_expired"] == {"CallLogDownload": 1}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("throttled", {400}),
        ("server_error_5xx", {500, 503}),  # which one: the seeded draw decides
        ("dropped_connection", {"RemoteProtocolError"}),
        ("slow_create", {"ReadTimeout"}),
    ],
)
def test_forced_fault_hits_the_next_calls_for_sure(
    ice_emulator_factory: Callable[..., IceEmulator], kind: str, expected: set[int | str]
) -> None:
    # Forcing ignores the rates and the targeted actions.
    emulator = ice_emulator_factory(slow_create_delay=1.0, actions=[LIST])
    assert emulator.force_faults(GENERATE, kind, count=2) == [kind, kind]
    assert _status(emulator, LIST) == 200  # another action is untouched
    first, second = (_status(emulator, GENERATE, timeout=0.5) for _ in range(2))
    third = _status(emulator, GENERATE)  # untouched: no short timeout a loaded machine could miss
    assert {first, second} <= expected
    assert third == 200
    state = emulator.state()
    assert state["faults_injected"][kind] == {GENERATE: 2}
    assert sum(state["faults_injected_total"].values()) == 2
    assert state["faults_forced"] == {}


def test_forcing_leaves_the_seeded_sequence_unchanged(
    ice_emulator_factory: Callable[..., IceEmulator],
) -> None:
    def outcomes(force: bool) -> list[int | str]:
        emulator = ice_emulator_factory(seed=8, throttle_rate=0.3, error_rate=0.2)
        if force:
            emulator.force_faults(LIST, "dropped_connection", count=3)
        return [_status(emulator) for _ in range(20)]

    plain, forced = outcomes(False), outcomes(True)
    assert forced[:3] == ["RemoteProtocolError"] * 3
    assert forced[3:] == plain[3:]
    assert {200, 400} <= set(plain[3:])


def test_forced_download_faults(ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock) -> None:
    emulator = ice_emulator_factory(clock=clock)
    instance_id = _call(emulator, GENERATE, {"AIAgentId": "agent-t"}).json()["InstanceId"]
    clock.advance(3600)
    url = _call(emulator, DESCRIBE, {"InstanceId": instance_id}).json()["Instance"]["CallLogUrl"]
    emulator.force_faults("CallLogDownload", "calllog_truncated")
    emulator.force_faults("CallLogDownload", "calllog_error")
    # A refused URL does not use up a forced download fault.
    assert httpx.get(url.replace("Signature=", "Signature=A")).status_code == 403
    truncated = httpx.get(url)
    assert truncated.status_code == 200
    assert httpx.get(url).status_code == 503
    complete = httpx.get(url)
    assert complete.status_code == 200
    assert len(truncated.content) == len(complete.content) // 2
    assert emulator.state()["calllog_downloads"] == {instance_id: 2}


def test_force_over_http(ice_emulator: IceEmulator) -> None:
    answer = httpx.post(
        f"{ice_emulator.url}/_emulator/faults/force",
        json={"action": LIST, "kind": "server_error_5xx", "count": 2},
    )
    assert answer.status_code == 200
    assert answer.json() == {"forced": {LIST: ["server_error_5xx", "server_error_5xx"]}}
    default_count = httpx.post(
        f"{ice_emulator.url}/_emulator/faults/force", json={"action": LIST, "kind": "throttled"}
    )
    assert default_count.json()["forced"][LIST] == ["server_error_5xx", "server_error_5xx", "throttled"]
    assert [_status(ice_emulator) for _ in range(4)] == [503, 503, 400, 200]
    state = httpx.get(f"{ice_emulator.url}/_emulator/state").json()
    assert state["faults_injected"]["server_error_5xx"] == {LIST: 2}
    assert state["faults_injected_total"]["throttled"] == 1
    assert state["faults_forced"] == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"action": "NoSuchAction", "kind": "throttled"},
            "action: unknown 'NoSuchAction'; allowed: Generate",
        ),
        ({"action": LIST, "kind": "slow_create"}, "kind: 'slow_create' cannot be forced on ListAIAgent"),
        ({"action": LIST, "kind": "flood"}, "allowed: throttled, server_error_5xx, dropped_connection"),
        ({"action": "CallLogDownload", "kind": "throttled"}, "allowed: calllog_error, calllog_truncated"),
        ({"action": GENERATE, "kind": "calllog_expired"}, "dropped_connection, slow_create"),
        ({"action": LIST, "kind": "throttled", "count": 0}, "count: must be an integer >= 1, got 0"),
        ({"action": LIST, "kind": "throttled", "count": "2"}, "count: must be an integer >= 1, got '2'"),
        ({"action": LIST, "kind": "throttled", "count": True}, "count: must be an integer >= 1"),
    ],
)
def test_force_rejects_bad_names_with_the_allowed_values(
    ice_emulator: IceEmulator, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=r"allowed|count") as caught:
        ice_emulator.force_faults(body["action"], body["kind"], body.get("count", 1))
    assert message in str(caught.value)
    answer = httpx.post(f"{ice_emulator.url}/_emulator/faults/force", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["Message"]
    assert ice_emulator.state()["faults_forced"] == {}


def test_force_over_http_names_missing_fields(ice_emulator: IceEmulator) -> None:
    answer = httpx.post(f"{ice_emulator.url}/_emulator/faults/force", json={"action": LIST})
    assert answer.status_code == 400
    assert "missing field 'kind'" in answer.json()["Message"]


def test_reset_clears_tally_and_forced_faults(ice_emulator: IceEmulator) -> None:
    ice_emulator.force_faults(LIST, "throttled", count=3)
    assert _status(ice_emulator) == 400
    assert ice_emulator.state()["faults_injected_total"]["throttled"] == 1
    httpx.post(f"{ice_emulator.url}/_emulator/reset")
    state = ice_emulator.state()
    assert state["faults_injected_total"] == dict.fromkeys(KINDS, 0)
    assert state["faults_injected"] == {kind: {} for kind in KINDS}
    assert state["faults_forced"] == {}
    assert _status(ice_emulator) == 200  # the two forced faults left were dropped


def test_secrets_are_recorded_only_when_asked(
    ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock
) -> None:
    quiet = ice_emulator_factory()
    with pytest.raises(RuntimeError, match="record_secrets=True"):
        quiet.secrets()
    emulator = ice_emulator_factory(clock=clock, record_secrets=True, security_token="STS-TOKEN-1")
    created = _call(emulator, GENERATE, {"AIAgentId": "agent-t"})  # signed with the STS token
    assert created.status_code == 200, created.text
    clock.advance(3600)
    view = _call(emulator, DESCRIBE, {"InstanceId": created.json()["InstanceId"]}).json()["Instance"]
    secrets = emulator.secrets()
    assert secrets[emulator.access_key_secret] == "AccessKey secret"
    assert secrets["STS-TOKEN-1"] == "STS token"
    assert secrets[created.json()["Token"]] == "ARTC Token"
    assert secrets[view["RuntimeConfig"]["AuthToken"]] == "AuthToken"
    assert secrets[view["CallLogUrl"]] == "CallLogUrl"
    kinds = set(secrets.values())
    assert {"ARTC Token core", "CallLogUrl signature", "Authorization signature"} <= kinds
    emulator.reset()
    assert set(emulator.secrets().values()) == {"AccessKey secret", "STS token"}


def _listed(emulator: IceEmulator, agent: str) -> list[dict[str, Any]]:
    response = _call(emulator, LIST, {"AIAgentId": agent})
    assert response.status_code == 200
    return response.json()["Instances"]


def test_listing_lag_hides_a_new_instance_from_the_listing_only(
    ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock
) -> None:
    emulator = ice_emulator_factory(clock=clock, listing_lag=40.0)
    created = _call(emulator, GENERATE, {"AIAgentId": "agent-lag", "UserData": '{"n": 1}'}).json()
    clock.advance(39.0)
    assert _listed(emulator, "agent-lag") == []
    described = _call(emulator, DESCRIBE, {"InstanceId": created["InstanceId"]})
    assert described.status_code == 200  # Describe by InstanceId sees it at once
    clock.advance(1.0)
    [listed] = _listed(emulator, "agent-lag")
    assert listed["UserData"] == '{"n": 1}'
    state = emulator.state()
    assert state["faults_injected"]["listing_lag"] == {LIST: 1}  # one answer left it out
    assert state["faults"]["listing_lag"] == 40.0


def test_listing_lag_is_set_over_http_and_python(ice_emulator: IceEmulator) -> None:
    answer = httpx.post(f"{ice_emulator.url}/_emulator/faults", json={"listing_lag": 2.5})
    assert answer.status_code == 200
    assert ice_emulator.faults.config.listing_lag == 2.5
    _call(ice_emulator, GENERATE, {"AIAgentId": "agent-lag"})
    assert _listed(ice_emulator, "agent-lag") == []
    ice_emulator.set_faults(listing_lag=0.0)
    assert len(_listed(ice_emulator, "agent-lag")) == 1
    assert ice_emulator.state()["faults_injected_total"]["listing_lag"] == 1
    bad = httpx.post(f"{ice_emulator.url}/_emulator/faults", json={"listing_lag": -1})
    assert bad.status_code == 400
    assert "listing_lag" in bad.text
