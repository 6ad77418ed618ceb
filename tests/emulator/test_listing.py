"""ListAIAgentInstance over seeded history: creation-time window, newest first, pages, ranges, memory."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.emulator import EmulatorConfig, IceEmulator
from airflow_provider_ice.emulator.store import Store
from tests.emulator.conftest import FakeClock, send, signed

AGENT = "agent-history"
T0 = datetime(2025, 12, 1, tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(emulator: IceEmulator, **params: Any) -> httpx.Response:
    return send(emulator, signed(emulator, "ListAIAgentInstance", {"AIAgentId": AGENT, **params}))


def _created(emulator: IceEmulator) -> dict[str, str]:
    """UserData → CreatedAt of every instance (List has no InstanceId; UserData is the key)."""
    return {s["UserData"]: s["CreatedAt"] for s in emulator.state(agent_id=AGENT)["instances"]}


@pytest.fixture
def seeded(ice_emulator_factory: Callable[..., IceEmulator], clock: FakeClock) -> IceEmulator:
    emulator = ice_emulator_factory(clock=clock, seed=3)
    emulator.seed_history(AGENT, 500, T0, T0 + timedelta(days=10))
    emulator.seed_history("other-agent", 50, T0, T0 + timedelta(days=10))
    return emulator


def test_seeded_instances_are_finished_with_correlation_ids(seeded: IceEmulator) -> None:
    states = seeded.state(agent_id=AGENT)["instances"]
    assert len(states) == 500
    assert {s["Status"] for s in states} == {"Finished"}
    ids = {correlation_id_of(s["UserData"]) for s in states}
    assert len(ids) == 500
    assert f"seed-{AGENT}-000000" in ids
    assert all(T0.isoformat()[:10] <= s["CreatedAt"][:10] <= "2025-12-11" for s in states)


def test_list_filters_on_creation_time_newest_first(seeded: IceEmulator) -> None:
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=5)
    created = _created(seeded)
    expected = sorted((c for c in created.values() if _iso(start) <= c[:19] + "Z" < _iso(end)), reverse=True)
    got: list[str] = []
    for page in range(1, 100):
        items = _list(seeded, StartTime=_iso(start), EndTime=_iso(end), PageSize=40, PageNumber=page).json()[
            "Instances"
        ]
        got.extend(created[item["UserData"]] for item in items)
        if len(items) < 40:
            break
    assert got == expected
    assert 100 < len(got) < 200


def test_list_items_have_the_documented_fields_only(seeded: IceEmulator) -> None:
    [item] = _list(seeded, PageSize=1).json()["Instances"]
    assert set(item) == {"Status", "RuntimeConfig", "UserData", "CallLogUrl"}
    assert set(item["RuntimeConfig"]) == {"ChannelId", "AgentUserId", "AuthToken", "VoiceChat"}
    # The deprecated per-scenario copy carries the same channel and AuthToken.
    assert item["RuntimeConfig"]["VoiceChat"] == {
        k: item["RuntimeConfig"][k] for k in ("ChannelId", "AgentUserId", "AuthToken")
    }
    assert "InstanceId" not in item


def test_paging_defaults_and_empty_pages(seeded: IceEmulator) -> None:
    assert len(_list(seeded).json()["Instances"]) == 10  # PageSize defaults to 10
    assert len(_list(seeded, PageSize=100, PageNumber=5).json()["Instances"]) == 100
    assert _list(seeded, PageSize=100, PageNumber=6).json()["Instances"] == []
    assert _list(seeded, PageSize=0).json()["Instances"] == []
    last = _list(seeded, PageSize=7, PageNumber=72).json()["Instances"]  # 500 = 71 * 7 + 3
    assert [i["UserData"] for i in last] == [
        i["UserData"] for i in _list(seeded, PageSize=100, PageNumber=5).json()["Instances"][-3:]
    ]


def test_newly_created_instances_come_first(seeded: IceEmulator) -> None:
    send(seeded, signed(seeded, "GenerateAIAgentCall", {"AIAgentId": AGENT, "UserData": "fresh"}))
    assert _list(seeded, PageSize=1).json()["Instances"][0]["UserData"] == "fresh"


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"PageSize": 101}, "PageSize"),
        ({"PageSize": -1}, "PageSize"),
        ({"PageNumber": 0}, "PageNumber"),
        ({"PageNumber": 101}, "PageNumber"),
        ({"PageNumber": "two"}, "PageNumber"),
        ({"StartTime": "yesterday"}, "StartTime"),
        ({"EndTime": "2025-12-01T00:00:00"}, "EndTime"),
    ],
)
def test_out_of_range_parameters_are_rejected(
    seeded: IceEmulator, params: dict[str, Any], parameter: str
) -> None:
    response = _list(seeded, **params)
    assert response.status_code == 400
    assert response.json()["Code"] == "InvalidParameter"
    assert parameter in response.json()["Message"]


def test_missing_agent_id(seeded: IceEmulator) -> None:
    response = send(seeded, signed(seeded, "ListAIAgentInstance", {}))
    assert (response.status_code, response.json()["Code"]) == (400, "MissingParameter")


def test_seed_over_http_and_validation(seeded: IceEmulator, clock: FakeClock) -> None:
    body = {
        "agent_id": "http-agent",
        "count": 20,
        "start": "2025-11-01T00:00:00Z",
        "end": "2025-11-02T00:00:00Z",
    }
    answer = httpx.post(f"{seeded.url}/_emulator/seed", json=body)
    assert answer.json()["seeded"] == 20
    assert len(seeded.state(agent_id="http-agent")["instances"]) == 20
    assert httpx.post(f"{seeded.url}/_emulator/seed", json={"agent_id": "x"}).status_code == 400
    future = {**body, "end": clock.now + 3600}
    assert httpx.post(f"{seeded.url}/_emulator/seed", json=future).status_code == 400


def test_seed_history_custom_user_data(seeded: IceEmulator) -> None:
    seeded.seed_history("custom", 3, T0, T0 + timedelta(hours=1), user_data=lambda n: json.dumps({"n": n}))
    assert sorted(s["UserData"] for s in seeded.state(agent_id="custom")["instances"]) == [
        '{"n": 0}',
        '{"n": 1}',
        '{"n": 2}',
    ]


def test_ten_thousand_seeded_instances_stay_small() -> None:
    store = Store(EmulatorConfig(clock=FakeClock()))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store.seed_history(AGENT, 10_000, T0.timestamp(), (T0 + timedelta(days=30)).timestamp())
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == 10_000
    # No timers or tasks per instance: storage stays around a few hundred bytes each.
    assert grown < 10_000 * 1_500, f"{grown / 10_000:.0f} bytes per seeded instance"
