"""The campaign's opt-in call logs, and its write-ahead record, against the emulator in a DAG.

Counts and times come from the emulator's own state (``dag.test()`` runs the task in this process).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from airflow_provider_ice.api.call_log import parse_call_log
from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.emulator import IceEmulator
from tests.dags.ice_campaign_test_dags import AGENT_ID
from tests.integration.test_campaign_dags import (
    CAMPAIGN_EMULATOR,
    assert_each_person_called_as_the_policy_says,
    results,
    return_value,
    run_dag,
    write_recipients,
)

pytestmark = [pytest.mark.integration, CAMPAIGN_EMULATOR]


def test_fetched_call_logs_are_published_and_named_in_the_results(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
    keys = write_recipients(tmp_path / "people.jsonl", 12)
    run = run_dag(
        "ice_test_campaign_call_logs", recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path)
    )
    assert str(run.state) == "success"
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)
    by_cid = {
        json.loads(i["UserData"])[CORRELATION_KEY]: i for i in ice_connection.state(AGENT_ID)["instances"]
    }
    rows = [r for r in results(return_value(run)) if r["attempt"]]
    assert {r["correlation_id"] for r in rows} == set(by_cid)
    folder = tmp_path / "call_logs"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{cid}.json" for cid in by_cid)
    for row in rows:
        path = Path(unquote(urlparse(row["call_log_uri"]).path))
        assert path == folder / f"{row['correlation_id']}.json"
        log = parse_call_log(path.read_bytes())
        instance = by_cid[row["correlation_id"]]
        assert log.instance_id == instance["InstanceId"]
        assert json.loads(log.user_data or "{}")[CORRELATION_KEY] == row["correlation_id"]
        assert row["joined"] is instance["UserJoined"] is log.user_joined


def test_without_fetch_call_logs_no_log_is_kept(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
    write_recipients(tmp_path / "people.jsonl", 4)
    run = run_dag(
        "ice_test_campaign_file", recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path)
    )
    assert str(run.state) == "success"
    rows = [r for r in results(return_value(run)) if r["attempt"]]
    assert rows
    assert all(r["call_log_uri"] is None for r in rows)
    assert not list(tmp_path.rglob("af-*.json"))


def test_every_call_was_written_ahead_before_the_service_created_it(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    from datetime import datetime

    from airflow_provider_ice.operators import _campaign_io

    durable: dict[str, float] = {}  # correlation id -> when its record was first written
    original = _campaign_io.Checkpoint._set

    def recording(self: Any, key: str, value: Any) -> None:
        original(self, key, value)
        written = time.time()
        if ":" in key:  # a chunk
            for cid in value:
                durable.setdefault(cid, written)

    monkeypatch.setattr(_campaign_io.Checkpoint, "_set", recording)
    keys = write_recipients(tmp_path / "people.jsonl", 30)
    run = run_dag(
        "ice_test_campaign_file", recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path)
    )
    assert str(run.state) == "success"
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)
    instances = ice_connection.state(AGENT_ID)["instances"]
    assert len(instances) >= 30
    for instance in instances:
        cid = json.loads(instance["UserData"])[CORRELATION_KEY]
        # CreatedAt is truncated to the millisecond: it may read up to 1 ms before the creation.
        created = datetime.fromisoformat(instance["CreatedAt"]).timestamp() + 0.001
        assert cid in durable, "a call was created with no write-ahead record"
        assert durable[cid] <= created, (cid, durable[cid], created)
