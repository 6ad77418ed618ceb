"""The campaign operator in DAGs: ``dag.test()`` against the emulator over real signed HTTP.

Every test counts the calls from the emulator's own state: per recipient, one call per attempt; a
second attempt only for a person who never joined the first; nobody skipped; nobody called twice,
including across a real Airflow retry after failures injected at the worst moments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice._compat import has_feature
from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.emulator import IceEmulator
from tests import airflow_compat
from tests.dags.ice_campaign_test_dags import AGENT_ID

#: Short calls, some people never join: the emulator of every campaign DAG test.
CAMPAIGN_EMULATOR = pytest.mark.ice_emulator(
    user_join_delay=0.1, call_duration=0.4, user_online_timeout=0.4, no_show_rate=0.3
)
pytestmark = [pytest.mark.integration, CAMPAIGN_EMULATOR]


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


def assert_each_person_called_as_the_policy_says(
    emulator: IceEmulator, keys: list[str], max_attempts: int
) -> None:
    grouped = calls_by_key(emulator)
    assert sorted(grouped) == sorted(keys), "every valid recipient is called, nobody else"
    cids = [json.loads(i["UserData"])[CORRELATION_KEY] for calls in grouped.values() for i in calls]
    assert len(cids) == len(set(cids)), "one call per correlation id"
    for key, calls in grouped.items():
        assert all(c["Status"] == "Finished" for c in calls)
        joined = [c["UserJoined"] for c in calls]
        # Redialed only after a call the person never joined, at most max_attempts calls.
        assert len(calls) <= max_attempts, (key, [(c["UserData"], c["CreatedAt"]) for c in calls])
        assert all(j is False for j in joined[:-1]), (key, joined)
        if len(calls) < max_attempts:
            assert joined[-1] is True, (key, joined)


def peak_concurrency(emulator: IceEmulator) -> int:
    """The most calls of the agent that were in progress at once (from created/finished times)."""
    from datetime import datetime

    edges = []
    for instance in emulator.state(AGENT_ID)["instances"]:
        edges.append((datetime.fromisoformat(instance["CreatedAt"]), 1))
        edges.append((datetime.fromisoformat(instance["ModifiedAt"]), -1))
    peak = current = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # ends before starts on ties
        current += step
        peak = max(peak, current)
    return peak


def results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    from urllib.parse import unquote, urlparse

    from airflow_provider_ice.storage import committed_files

    files = committed_files(Path(unquote(urlparse(summary["uri"]).path)))
    assert sorted(files) == ["results.jsonl", "summary.json"]
    return [json.loads(line) for line in files["results.jsonl"].read_text().splitlines()]


def run_dag(dag_id: str, **params: Any) -> Any:
    from tests.dags import ice_campaign_test_dags as module

    return airflow_compat.run_dag(getattr(module, dag_id), run_conf=params)


def return_value(run: Any) -> Any:
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = airflow_compat.xcom_rows(session, run.dag_id, run.run_id)
        [row] = [r for r in rows if (r.task_id, r.key) == ("campaign", "return_value")]
        return airflow_compat.xcom_value(row)


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

    assert peak_concurrency(ice_connection) <= 6, "max_active_calls"
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


def test_phone_campaign_from_an_xcom_list(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
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


def _fail_once_in_send(monkeypatch: pytest.MonkeyPatch, *, on_call: int, after_sending: bool) -> list[int]:
    """Make the ``on_call``-th send of the first try die, after or before the request was sent."""
    from airflow_provider_ice.operators._campaign_cycle import CampaignCycle

    original = CampaignCycle._send
    calls: list[int] = []

    def dying(self: CampaignCycle, recipient: Any, attempt: Any) -> bool:
        calls.append(1)
        if len(calls) == on_call:
            if after_sending:
                original(self, recipient, attempt)
            raise RuntimeError("injected: the worker died here")
        return original(self, recipient, attempt)

    monkeypatch.setattr(CampaignCycle, "_send", dying)
    return calls


@pytest.mark.parametrize("after_sending", [True, False], ids=["died-after-send", "died-before-send"])
@pytest.mark.parametrize("dag_id", ["ice_test_campaign_file", "ice_test_campaign_sync"])
def test_retried_campaign_calls_nobody_twice_and_skips_nobody(
    dag_id: str,
    after_sending: bool,
    ice_connection: IceEmulator,
    airflow_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The 9th send dies: the first 6 are in progress, the first resume is placing more.
    _fail_once_in_send(monkeypatch, on_call=9, after_sending=after_sending)
    keys = write_recipients(tmp_path / "people.jsonl", 15)
    run = run_dag(dag_id, recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path / "out"))
    assert str(run.state) == "success"
    assert tries(run) == 2, "Airflow retried the task once"
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)
    summary = return_value(run)
    assert summary["attempts"] == len(ice_connection.state(AGENT_ID)["instances"])
    # A call whose response died with the worker (or was not yet checkpointed) is known from the
    # listing only: adopted by its correlation id, without an InstanceId; every other row has the
    # emulator's InstanceId of its correlation id.
    by_cid = {
        json.loads(i["UserData"])[CORRELATION_KEY]: i for i in ice_connection.state(AGENT_ID)["instances"]
    }
    rows = [r for r in results(summary) if r["attempt"]]
    assert {r["correlation_id"] for r in rows} == set(by_cid)
    for row in rows:
        instance = by_cid[row["correlation_id"]]
        assert row["instance_id"] in (instance["InstanceId"], None)
        assert (row["channel_id"], row["status"]) == (instance["ChannelId"], "Finished")
    adopted = [r for r in rows if r["instance_id"] is None]
    # The store's checkpoint knows all but the last few; without it (Airflow < 3.3) the retry knows
    # every call of the failed try (at most the 9 it sent) only from the listing.
    assert len(adopted) <= (3 if has_feature("the task state store") else 9)
    if after_sending:
        assert adopted, "the call sent just before the worker died was adopted from the listing"
    assert summary["recipients_by_outcome"].get("in_progress", 0) == 0


def test_listing_failure_mid_campaign_is_retried_from_the_checkpoint(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_ice.operators import _campaign_cycle

    original = _campaign_cycle.list_campaign_instances
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected: the listing failed")
        return original(*args, **kwargs)

    monkeypatch.setattr(_campaign_cycle, "list_campaign_instances", flaky)
    keys = write_recipients(tmp_path / "people.jsonl", 15)
    run = run_dag(
        "ice_test_campaign_file", recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path)
    )
    assert str(run.state) == "success"
    assert tries(run) == 2
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)


@pytest.mark.ice_emulator(drop_rate=0.3, actions=["GenerateAIAgentCall"], seed=3)
def test_lost_responses_are_adopted_from_the_listing(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
    keys = write_recipients(tmp_path / "people.jsonl", 15)
    run = run_dag(
        "ice_test_campaign_file", recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path)
    )
    assert str(run.state) == "success"
    state = ice_connection.state(AGENT_ID)
    assert sum(state["faults_injected"].get("dropped_connection", {}).values()) >= 2, "responses were lost"
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)
    rows = results(return_value(run))
    lost = [r for r in rows if r["attempt"] and r["instance_id"] is None]
    assert lost, "some attempts are known only from the listing"
    assert all(r["status"] == "Finished" and r["channel_id"] for r in lost)


def test_worker_killed_mid_campaign_then_rerun_calls_nobody_twice(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from datetime import datetime, timezone

    from tests.dags.ice_campaign_test_dags import ice_test_campaign_slow

    keys = write_recipients(tmp_path / "people.jsonl", 40)
    conf = {
        "recipients": str(tmp_path / "people.jsonl"),
        "destination": str(tmp_path),
        "campaign": "kill-test",
    }
    logical_date = datetime(2026, 6, 1, tzinfo=timezone.utc)
    script = (
        "import json, sys; from datetime import datetime;"
        "from tests.airflow_compat import run_dag;"
        "from tests.dags.ice_campaign_test_dags import ice_test_campaign_slow as d;"
        "run_dag(d, logical_date=datetime.fromisoformat(sys.argv[1]), run_conf=json.loads(sys.argv[2]))"
    )
    repo = Path(__file__).resolve().parents[2]
    worker = subprocess.Popen(
        [sys.executable, "-c", script, logical_date.isoformat(), json.dumps(conf)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "worker.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(ice_connection.state(AGENT_ID)["instances"]) < 12:
            assert worker.poll() is None, "the worker ended before it could be killed"
            assert time.monotonic() < deadline, "the campaign did not start placing calls"
            time.sleep(0.05)
    finally:
        # The whole process group: a task process forked by the runner dies with it.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    placed_before = len(ice_connection.state(AGENT_ID)["instances"])
    assert placed_before < len(keys), "killed mid-campaign"

    # dag.test() cannot resume the killed task instance (it starts a new run): the new run resumes
    # the campaign by its campaign_id and reconciles with the listing (no checkpoint of the old run).
    run = airflow_compat.run_dag(ice_test_campaign_slow, logical_date=logical_date, run_conf=conf)
    assert str(run.state) == "success"
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)
    summary = return_value(run)
    assert summary["attempts"] == len(ice_connection.state(AGENT_ID)["instances"])
    adopted = [r for r in results(summary) if r["attempt"] and r["instance_id"] is None]
    assert len(adopted) >= placed_before, "the calls of the killed worker were adopted from the listing"


def test_outside_the_calling_window_the_task_defers_until_it_opens(
    ice_connection: IceEmulator,
    airflow_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    triggers: list[tuple[str, dict[str, Any]]],
) -> None:
    import importlib
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    zones = ["Asia/Shanghai", "America/New_York"]
    # Far enough ahead that dag.test() has parsed the DAG and started the task before it opens.
    opens = (datetime.now(ZoneInfo(zones[0])) + timedelta(seconds=30)).replace(microsecond=0)
    window = f"{opens:%H:%M:%S}-{(opens + timedelta(minutes=30)):%H:%M:%S}"
    monkeypatch.setenv("ICE_TEST_CAMPAIGN_WINDOW", window)
    module = importlib.reload(importlib.import_module("tests.dags.ice_campaign_test_dags"))
    people = tmp_path / "people.jsonl"
    # The same local hours 12-13 hours later in New York: those recipients are not due in this test,
    # so they are left out; the window is per recipient time zone.
    people.write_text(
        "\n".join(json.dumps({"id": f"s{n}", "name": "S", "tz": zones[0]}) for n in range(4)) + "\n"
    )
    dag = module.ice_test_campaign_window
    run = dag.test(run_conf={"recipients": str(people), "destination": str(tmp_path)})
    assert str(run.state) == "success"
    created = [datetime.fromisoformat(i["CreatedAt"]) for i in ice_connection.state(AGENT_ID)["instances"]]
    assert len(created) >= 4
    assert min(created) >= opens, "nobody was called before the window opened"
    first = triggers[0][1]
    assert first["correlation_ids"] == [], "waiting for the window holds no calls"
    assert abs(first["wake_at"] - opens.timestamp()) < 1.0
    assert triggers[0][0] == "airflow_provider_ice.triggers.campaign.IceCampaignTrigger"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"id": "a", "name": "A"}, {"name": "no key"}], "recipient #2: has no key field 'id'"),
        ([{"id": "a", "name": "A"}, {"id": "b"}], "recipient #2: user_data_template does not render"),
        ([{"id": "a", "name": "A"}, ["not", "an", "object"]], "recipient #2: must be an object"),
    ],
    ids=["no-key", "unknown-field", "not-an-object"],
)
def test_structural_error_fails_before_any_call_without_retry(
    rows: list[Any],
    expected: str,
    ice_connection: IceEmulator,
    airflow_db: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    people = tmp_path / "people.jsonl"
    people.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    run = run_dag("ice_test_campaign_file", recipients=str(people), destination=str(tmp_path))
    assert str(run.state) == "failed"
    assert tries(run) == 1, "a structural error is not retried"
    assert ice_connection.state(AGENT_ID)["instances"] == []
    assert ice_connection.state()["request_counts"].get("GenerateAIAgentCall", 0) == 0
    assert expected in airflow_compat.task_output(capfd), "the task log names the recipient's position"
