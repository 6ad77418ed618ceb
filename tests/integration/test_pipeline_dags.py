"""DAG-level runs (``dag.test()``) of the example pipelines against the emulator over real signed HTTP."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.storage import committed_files
from tests.airflow_compat import asset_events, run_dag, xcom_rows, xcom_value

pytestmark = pytest.mark.integration

AGENTS = ("agent-north", "agent-south")
TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def unique(agent: str, batch: datetime) -> Callable[[int], str]:
    """UserData with a correlation id unique across seeding batches (the default restarts at 0)."""
    return lambda n: json.dumps({"AirflowCorrelationId": f"{agent}-{batch:%Y%m%d%H}-{n:05d}", "Seeded": True})


def test_session_analytics_backfill_sees_every_instance_exactly_once(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
    from airflow.utils.state import DagRunState

    from example_dags.ice_session_analytics import dag

    days = [TODAY - timedelta(days=n) for n in (5, 4, 3)]
    in_range: set[str] = set()
    for agent, per_day in zip(AGENTS, (900, 300), strict=True):
        for day in days:
            in_range.update(
                ice_connection.seed_history(agent, per_day, day, day + timedelta(days=1), unique(agent, day))
            )
        # Neighbours of the backfilled range: must not appear in any partition.
        before, after = days[0] - timedelta(hours=3), days[-1] + timedelta(days=1)
        ice_connection.seed_history(agent, 20, before, days[0], unique(agent, before))
        ice_connection.seed_history(agent, 20, after, after + timedelta(hours=3), unique(agent, after))

    destination = tmp_path / "sessions"
    conf = {"agent_ids": ",".join(AGENTS), "destination": str(destination)}
    # dag.test() makes a manual run, whose data interval is the last complete day before its
    # logical date: the run for day D is triggered at D + 1 day (a backfill run's logical date is D).
    for day in days:
        run = run_dag(dag, logical_date=day + timedelta(days=1), run_conf=conf)
        assert run.state == DagRunState.SUCCESS, f"run for {day:%Y-%m-%d} ended {run.state}"
    # A rerun of the middle day (as `airflow backfill create --reprocess-behavior completed` would do).
    middle = destination / f"date={days[1]:%Y-%m-%d}"
    before = committed_files(middle)["sessions.jsonl"].read_bytes()
    assert run_dag(dag, logical_date=days[2], run_conf=conf).state == DagRunState.SUCCESS
    assert committed_files(middle)["sessions.jsonl"].read_bytes() == before

    assert sorted(p.name for p in destination.iterdir()) == [f"date={d:%Y-%m-%d}" for d in days]
    seen: Counter[str] = Counter()
    correlations: Counter[str] = Counter()
    for day in days:
        partition = destination / f"date={day:%Y-%m-%d}"
        files = committed_files(partition)  # the reader contract: the manifest first
        summary = json.loads(files["summary.json"].read_text())
        assert summary["interval"] == {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()}
        assert summary["by_agent"] == {"agent-north": 900, "agent-south": 300}
        assert summary["by_status"] == {"Finished": 1200}
        assert summary["pending_count"] == 0
        assert summary["call_log_error_count"] == 0
        for line in files["sessions.jsonl"].read_text().splitlines():
            session = json.loads(line)
            assert session["has_call_log"]
            seen[session["instance_id"]] += 1  # from the call log: List itself has no InstanceId
            correlations[session["correlation_id"]] += 1

    assert len(in_range) == 3600
    assert set(seen) == in_range
    assert set(seen.values()) == {1}  # exactly once across the partitions
    assert len(correlations) == 3600
    assert set(correlations.values()) == {1}


def test_call_log_pipeline_end_to_end(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    monkeypatch.setenv("ICE_POKE_INTERVAL", "1")
    import example_dags.ice_call_log_pipeline as module

    dag = importlib.reload(module).dag
    run = run_dag(
        dag, run_conf={"agent_id": "agent-pipeline", "customer": "c-42", "destination": str(tmp_path)}
    )
    assert run.state == DagRunState.SUCCESS

    instances = ice_connection.state("agent-pipeline")["instances"]
    assert len(instances) == 1  # exactly one call placed
    instance = instances[0]
    assert json.loads(instance["UserData"])["customer"] == "c-42"  # templated UserData
    files = list((tmp_path / "call_logs").rglob("*.json"))
    assert [f.name for f in files] == [f"{instance['ChannelId']}.json"]

    with create_session() as session:
        rows = xcom_rows(session, dag.dag_id, run.run_id)
        values = {row.task_id: xcom_value(row) for row in rows if row.key == "return_value"}
        events = asset_events(session, dag.dag_id, run.run_id)
    fetched, summary = values["fetch_call_log"], values["summarise_conversation"]
    if isinstance(fetched, str):
        fetched, summary = json.loads(fetched), json.loads(summary)
    assert fetched["uri"] == files[0].resolve().as_uri()
    # The fetch emitted an asset event, annotated with what was written.
    assert [uri for uri, _extra in events] == ["ice://call-logs/all"]
    assert events[0][1]["sha256"] == fetched["sha256"]
    assert fetched["channel_id"] == instance["ChannelId"]
    assert summary["channel_id"] == instance["ChannelId"]
    assert summary["turns_by_role"]
    assert summary["opening"]
    everything = json.dumps([xcom_value(r) for r in rows], default=str)
    assert "Signature" not in everything
    assert "_calllogs" not in everything
