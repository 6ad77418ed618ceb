"""The campaign operator in DAGs: ``dag.test()`` against the emulator over real signed HTTP.

Every test counts the calls from the emulator's own state: per recipient, one call per attempt; a
second attempt only for a person who never joined the first; nobody skipped; nobody called twice,
including across a real Airflow retry after failures injected at the worst moments.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.emulator import IceEmulator
from tests.dags.ice_campaign_test_dags import AGENT_ID

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ice_emulator(user_join_delay=0.1, call_duration=0.4, user_online_timeout=0.4, no_show_rate=0.3),
]


def write_recipients(path: Path, count: int, *, extra: list[dict[str, Any]] | None = None) -> list[str]:
    """A JSONL file of ``count`` valid recipients (plus ``extra`` rows); returns the valid keys."""
    rows = [{"id": f"r{n:03d}", "name": f"Name {n}"} for n in range(count)]
    with path.open("w", encoding="utf-8") as handle:
        for row in rows + (extra or []):
            handle.write(json.dumps(row) + "\n")
    return [row["id"] for row in rows]


def calls_by_key(emulator: IceEmulator) -> dict[str, list[dict[str, Any]]]:
    """The emulator's instances of the campaign agent, grouped by the recipient key in UserData."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for instance in emulator.state(AGENT_ID)["instances"]:
        grouped.setdefault(json.loads(instance["UserData"])["customer"], []).append(instance)
    for calls in grouped.values():
        calls.sort(key=lambda i: i["CreatedAt"])
    return grouped


def assert_each_person_called_as_the_policy_says(emulator: IceEmulator, keys: list[str], max_attempts: int) -> None:
    grouped = calls_by_key(emulator)
    assert sorted(grouped) == sorted(keys), "every valid recipient is called, nobody else"
    cids = [json.loads(i["UserData"])[CORRELATION_KEY] for calls in grouped.values() for i in calls]
    assert len(cids) == len(set(cids)), "one call per correlation id"
    for key, calls in grouped.items():
        assert all(c["Status"] == "Finished" for c in calls)
        joined = [c["UserJoined"] for c in calls]
        # Redialed only after a call the person never joined, at most max_attempts calls.
        assert len(calls) <= max_attempts, key
        assert all(j is False for j in joined[:-1]), (key, joined)
        if len(calls) < max_attempts:
            assert joined[-1] is True, (key, joined)


def results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    from urllib.parse import unquote, urlparse

    directory = Path(unquote(urlparse(summary["uri"]).path))
    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]


def run_dag(dag_id: str, **params: Any) -> Any:
    from tests.dags import ice_campaign_test_dags as module

    return getattr(module, dag_id).test(run_conf=params)


def return_value(run: Any) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == "campaign",
                XComModel.key == "return_value",
            )
            .one()
        )
        return row.value


def tries(run: Any) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        [ti] = [ti for ti in run.get_task_instances(session=session) if ti.task_id == "campaign"]
        return int(ti.try_number)


@pytest.mark.parametrize("dag_id", ["ice_test_campaign_file", "ice_test_campaign_sync"])
def test_campaign_calls_everyone_once_redials_no_shows_and_reports_bad_rows(
    dag_id: str, ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
    bad = [
        {"id": "r001", "name": "Duplicate of r001"},
        {"id": "tz-bad", "name": "Nowhere", "tz": "Mars/Olympus"},
    ]
    keys = write_recipients(tmp_path / "people.jsonl", 20, extra=bad)
    run = run_dag(dag_id, recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path / "out"))
    assert str(run.state) == "success"
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)

    summary = return_value(run)
    grouped = calls_by_key(ice_connection)
    assert summary["recipients"] == 22
    assert summary["rejected"] == 2
    assert summary["attempts"] == sum(len(calls) for calls in grouped.values())
    assert summary["reached"] == sum(1 for calls in grouped.values() if calls[-1]["UserJoined"])
    rows = results(summary)
    assert len(rows) == summary["attempts"] + 2
    by_attempt = {(r["key"], r["attempt"]): r for r in rows if r["attempt"]}
    for key, calls in grouped.items():
        for number, call in enumerate(calls, start=1):
            row = by_attempt[(key, number)]
            assert row["correlation_id"] == json.loads(call["UserData"])[CORRELATION_KEY]
            assert row["channel_id"] == call["ChannelId"]
            assert row["instance_id"] == call["InstanceId"]
            assert row["joined"] is call["UserJoined"]
            assert row["status"] == "Finished"
    rejected = sorted((r["position"], r["key"]) for r in rows if r["outcome"] == "rejected")
    assert rejected == [(21, "r001"), (22, "tz-bad")]
    assert "Mars/Olympus" in next(r["error"] for r in rows if r["key"] == "tz-bad")


def test_phone_campaign_from_an_xcom_list(ice_connection: IceEmulator, airflow_db: str, tmp_path: Path) -> None:
    run = run_dag("ice_test_campaign_phone_xcom", destination=str(tmp_path / "out"))
    assert str(run.state) == "success"
    instances = ice_connection.state(AGENT_ID)["instances"]
    assert {i["Kind"] for i in instances} == {"outbound"}
    keys = [f"p{n}" for n in range(8)]
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)
    rows = results(return_value(run))
    [bad] = [r for r in rows if r["outcome"] == "rejected"]
    assert (bad["key"], bad["position"]) == ("p8", 9)
    assert "phone" in bad["error"]


Failure = Callable[..., Any]
