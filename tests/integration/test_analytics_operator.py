"""IceSessionAnalyticsOperator against the emulator: pagination, window split, pending, reruns, faults."""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice._compat import AIRFLOW_V_3_0_PLUS
from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.exceptions import IceCallLogError
from airflow_provider_ice.operators.analytics import (
    IceSessionAnalyticsOperator,
    last_complete_interval,
    partition_name,
)

pytestmark = pytest.mark.integration

AGENT = "agent-stats"
DAY = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
NEXT_DAY = DAY + timedelta(days=1)


def run(destination: Path, start: datetime = DAY, end: datetime = NEXT_DAY, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("agent_ids", AGENT)
    op = IceSessionAnalyticsOperator(task_id="analytics", destination=str(destination), **kwargs)
    return op.execute({"data_interval_start": start, "data_interval_end": end})  # type: ignore[arg-type]


def committed(partition: Any) -> dict[str, bytes]:
    """The committed files of a partition, read as the README tells readers to (manifest first)."""
    manifest = json.loads((partition / "_manifest.json").read_text())
    files = {name: (partition / manifest["version"] / name).read_bytes() for name in manifest["files"]}
    for name, data in files.items():  # the manifest describes exactly what was committed
        assert manifest["files"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return files


def read_partition(destination: Path, start: datetime = DAY) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    files = committed(destination / f"date={start:%Y-%m-%d}")
    sessions = [json.loads(line) for line in files["sessions.jsonl"].decode().splitlines()]
    return sessions, json.loads(files["summary.json"])


def seeded_correlations(emulator: IceEmulator, agent_id: str = AGENT) -> list[str]:
    return sorted(
        json.loads(i["UserData"])["AirflowCorrelationId"] for i in emulator.state(agent_id)["instances"]
    )


@pytest.mark.parametrize(("count", "page_size"), [(95, 10), (230, 2)], ids=["many-pages", "window-split"])
def test_every_instance_exactly_once_across_pages_and_split_windows(
    ice_connection: IceEmulator, tmp_path: Path, count: int, page_size: int
) -> None:
    ice_connection.seed_history(AGENT, count, DAY, NEXT_DAY)
    # Instances just outside the interval must not leak in.
    ice_connection.seed_history(AGENT, 5, DAY - timedelta(hours=2), DAY)
    ice_connection.seed_history(AGENT, 5, NEXT_DAY, NEXT_DAY + timedelta(hours=2))
    result = run(tmp_path, page_size=page_size, concurrency=4)
    sessions, summary = read_partition(tmp_path)
    inside = [
        json.loads(i["UserData"])["AirflowCorrelationId"]
        for i in ice_connection.state(AGENT)["instances"]
        if DAY.isoformat()[:10] == i["CreatedAt"][:10]
    ]
    assert len(inside) == count
    assert sorted(s["correlation_id"] for s in sessions) == sorted(inside)  # each exactly once
    assert summary["sessions"] == result["sessions"] == count
    assert summary["by_status"] == {"Finished": count}
    assert summary["with_call_log"] == count
    assert summary["pending"] == []
    lists = ice_connection.state(AGENT)["request_counts"]["ListAIAgentInstance"]
    assert lists >= count // page_size  # really paged
    if page_size * 100 < count:  # 100 pages cannot reach them all: the window was split
        assert lists > 100
    assert all(s["has_call_log"] and s["turns"] > 0 for s in sessions)
    assert {s["agent_id"] for s in sessions} == {AGENT}


def test_rerun_is_idempotent_and_leaves_no_temporary_files(
    ice_connection: IceEmulator, tmp_path: Path
) -> None:
    ice_connection.seed_history(AGENT, 40, DAY, NEXT_DAY)
    first = run(tmp_path)
    partition = tmp_path / f"date={DAY:%Y-%m-%d}"
    before = committed(partition)
    second = run(tmp_path)
    after = {k: v.decode() for k, v in committed(partition).items()}
    assert {k: v.decode() for k, v in before.items()} == after
    assert sorted(after) == ["sessions.jsonl", "summary.json"]
    assert first["version"] != second["version"]
    assert {**first, "version": None} == {**second, "version": None}
    # Only the manifest and the version it names are left: the replaced version is gone.
    assert sorted(p.name for p in partition.iterdir()) == ["_manifest.json", second["version"]]
    assert [p.name for p in tmp_path.iterdir()] == [partition.name]
    summary = json.loads(after["summary.json"])
    assert summary["distributions"]["duration_ms"]["count"] == 40
    # The percentiles are those of the sessions written, computed independently (linear interpolation).
    durations = [json.loads(x)["duration_ms"] for x in after["sessions.jsonl"].splitlines()]
    assert len(set(durations)) > 10  # distinct values: a wrong rank gives a wrong number
    cuts = statistics.quantiles(durations, n=100, method="inclusive")
    distribution = summary["distributions"]["duration_ms"]
    assert distribution["p50"] == pytest.approx(statistics.median(durations), abs=0.001)
    assert distribution["p90"] == pytest.approx(cuts[89], abs=0.001)
    assert distribution["p95"] == pytest.approx(cuts[94], abs=0.001)
    assert (distribution["min"], distribution["max"]) == (min(durations), max(durations))
    assert summary["totals"]["turns"] == sum(
        json.loads(x)["turns"] for x in after["sessions.jsonl"].splitlines()
    )


def test_pending_instances_are_listed_then_picked_up_by_a_rerun(
    ice_emulator_factory: Callable[..., IceEmulator], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    now = [datetime.now(timezone.utc).timestamp()]
    emulator = ice_emulator_factory(clock=lambda: now[0], user_join_delay=5, call_duration=30)
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", emulator.airflow_conn_json())
    from airflow_provider_ice.hooks.ice import IceHook

    start = datetime.fromtimestamp(now[0], timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    end = start + timedelta(hours=2)
    emulator.seed_history(AGENT, 4, start, start + timedelta(minutes=30))
    hook = IceHook()
    for n in range(3):
        hook.generate_ai_agent_call(AGENT, user_data={"AirflowCorrelationId": f"af-live-{n}"})
    now[0] += 10  # the users joined: Executing

    first = run(tmp_path, start, end)
    partition = tmp_path / partition_name(start, end)
    summary = json.loads(committed(partition)["summary.json"])
    assert summary["by_status"] == {"Executing": 3, "Finished": 4}
    assert sorted(p["correlation_id"] for p in summary["pending"]) == ["af-live-0", "af-live-1", "af-live-2"]
    assert first["pending"] == 3

    now[0] += 60  # the calls are over
    second = run(tmp_path, start, end)
    files = committed(partition)
    summary = json.loads(files["summary.json"])
    sessions = [json.loads(x) for x in files["sessions.jsonl"].decode().splitlines()]
    assert summary["by_status"] == {"Finished": 7}
    assert summary["pending"] == []
    assert second["pending"] == 0
    assert sum(s["has_call_log"] for s in sessions) == 7


def test_an_executing_instance_that_already_carries_a_url_stays_pending_without_a_download(
    ice_emulator_factory: Callable[..., IceEmulator], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    now = [datetime.now(timezone.utc).timestamp()]
    emulator = ice_emulator_factory(clock=lambda: now[0], user_join_delay=1, call_duration=600)
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", emulator.airflow_conn_json())
    from airflow_provider_ice.hooks.ice import IceHook

    start = datetime.fromtimestamp(now[0], timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    end = start + timedelta(hours=2)
    user_data = {"AirflowCorrelationId": "af-early", "EmulatorScenario": {"EarlyCallLogUrl": True}}
    IceHook().generate_ai_agent_call(AGENT, user_data=user_data)
    now[0] += 5  # the user joined: Executing, and the listing already carries a CallLogUrl
    [listed] = list(IceHook().list_ai_agent_instances(AGENT, start_time=start, end_time=end))
    assert (str(listed.status), listed.call_log_url is not None) == ("Executing", True)

    result = run(tmp_path, start, end)
    files = committed(tmp_path / partition_name(start, end))
    summary = json.loads(files["summary.json"])
    [session] = [json.loads(x) for x in files["sessions.jsonl"].decode().splitlines()]
    assert result["pending"] == 1
    assert [p["correlation_id"] for p in summary["pending"]] == ["af-early"]
    assert (session["status"], session["has_call_log"]) == ("Executing", False)
    assert emulator.state(AGENT)["calllog_downloads"] == {}


@pytest.mark.ice_emulator(calllog_expire_first=True)
def test_expired_urls_are_refreshed_with_one_new_listing(ice_connection: IceEmulator, tmp_path: Path) -> None:
    ice_connection.seed_history(AGENT, 30, DAY, NEXT_DAY)
    run(tmp_path)
    _sessions, summary = read_partition(tmp_path)
    state = ice_connection.state(AGENT)
    assert summary["with_call_log"] == 30
    assert summary["call_log_error_count"] == 0
    assert state["calllog_denied"] == 30
    assert state["request_counts"]["ListAIAgentInstance"] == 2  # one page, listed twice: not once per session


@pytest.mark.ice_emulator(calllog_truncate_rate=1.0)
def test_unparsable_call_logs_are_recorded_not_fatal(ice_connection: IceEmulator, tmp_path: Path) -> None:
    ice_connection.seed_history(AGENT, 6, DAY, NEXT_DAY)
    result = run(tmp_path, max_url_refreshes=1)
    sessions, summary = read_partition(tmp_path)
    assert result["call_log_errors"] == summary["call_log_error_count"] == 6
    assert all("not complete JSON" in s["call_log_error"] for s in sessions)
    assert summary["pending"] == []  # an error, not a pending session
    assert "Signature" not in json.dumps(summary)


def test_unavailable_call_logs_fail_without_replacing_the_partition(
    ice_connection: IceEmulator, tmp_path: Path
) -> None:
    ice_connection.seed_history(AGENT, 3, DAY, NEXT_DAY)
    good = run(tmp_path)
    partition = tmp_path / f"date={DAY:%Y-%m-%d}"
    before = committed(partition)
    ice_connection.set_faults(calllog_error_rate=1.0)
    with pytest.raises(IceCallLogError, match="3 call log"):
        run(tmp_path, max_url_refreshes=0, download_retries=0)
    assert committed(partition) == before
    # The failed run's staging is gone; the committed version is untouched.
    assert sorted(p.name for p in partition.iterdir()) == ["_manifest.json", good["version"]]
    assert [p.name for p in tmp_path.iterdir()] == [partition.name]


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS,
    reason="concurrent runs in threads: Airflow 2's ExecutorSafeguard refuses execute() outside the main "
    "thread (real task runs are separate processes)",
)
def test_several_agents_and_concurrent_runs_of_different_days(
    ice_connection: IceEmulator, tmp_path: Path
) -> None:
    days = [DAY - timedelta(days=n) for n in range(3)]
    for day in days:
        ice_connection.seed_history(AGENT, 20, day, day + timedelta(days=1))
        ice_connection.seed_history("agent-other", 10, day, day + timedelta(days=1))
    errors: list[BaseException] = []

    def one(day: datetime) -> None:
        try:
            run(tmp_path, day, day + timedelta(days=1), agent_ids=f"{AGENT}, agent-other")
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(day,)) for day in days]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seen: list[str] = []
    for day in days:
        sessions, summary = read_partition(tmp_path, day)
        assert summary["by_agent"] == {AGENT: 20, "agent-other": 10}
        seen += [s["correlation_id"] for s in sessions]
    assert sorted(seen) == sorted(
        seeded_correlations(ice_connection) + seeded_correlations(ice_connection, "agent-other")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"date={d:%Y-%m-%d}" for d in days)


def test_templated_times_and_defaults(
    ice_connection: IceEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICE_DATA_DIR", str(tmp_path))
    ice_connection.seed_history(AGENT, 4, DAY, DAY + timedelta(hours=6))
    op = IceSessionAnalyticsOperator(
        task_id="a",
        agent_ids=[AGENT],
        start_time=DAY.isoformat().replace("+00:00", "Z"),
        end_time=(DAY + timedelta(hours=6)).isoformat(),
    )
    result = op.execute({})  # type: ignore[arg-type]
    expected = tmp_path / "sessions" / f"interval={DAY:%Y%m%d}T000000Z_{DAY:%Y%m%d}T060000Z"
    assert result["uri"] == expected.resolve().as_uri()
    assert json.loads(committed(expected)["summary.json"])["sessions"] == 4


def test_agent_ids_forms() -> None:
    from airflow_provider_ice.operators.analytics import _agent_list

    assert _agent_list("b, a,,a") == ["a", "b"]
    assert _agent_list(["b", "a", "a"]) == ["a", "b"]
    assert _agent_list("['x', 'y']") == ["x", "y"]  # a Jinja-rendered list param
    assert _agent_list('["x"]') == ["x"]
    with pytest.raises(IceValidationError, match="agent_ids"):
        _agent_list("[oops")
    with pytest.raises(IceValidationError, match="agent_ids"):
        _agent_list([1, 2])


def test_partition_names() -> None:
    assert partition_name(DAY, NEXT_DAY) == f"date={DAY:%Y-%m-%d}"
    assert (
        partition_name(DAY, DAY + timedelta(hours=1)) == f"interval={DAY:%Y%m%d}T000000Z_{DAY:%Y%m%d}T010000Z"
    )
    assert partition_name(DAY + timedelta(hours=1), NEXT_DAY + timedelta(hours=1)).startswith("interval=")


def test_bad_input_is_refused_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(IceValidationError, match="start_time"):
        IceSessionAnalyticsOperator(task_id="a", agent_ids="x").execute({})  # type: ignore[arg-type]
    with pytest.raises(IceValidationError, match="end_time: must be after start_time"):
        run(tmp_path, NEXT_DAY, DAY)
    with pytest.raises(IceValidationError, match="start_time: must be an ISO-8601 time"):
        IceSessionAnalyticsOperator(
            task_id="a", agent_ids="x", start_time="yesterday", end_time="2026-01-01"
        ).execute(
            {}  # type: ignore[arg-type]
        )
    with pytest.raises(IceValidationError, match="agent_ids"):
        run(tmp_path, agent_ids=" , ")
    with pytest.raises(ValueError, match="concurrency"):
        IceSessionAnalyticsOperator(task_id="a", agent_ids="x", concurrency=0)
    with pytest.raises(ValueError, match="page_size"):
        IceSessionAnalyticsOperator(task_id="a", agent_ids="x", page_size=101)
    assert list(tmp_path.iterdir()) == []


def test_object_storage_destination_replaces_the_partition(ice_connection: IceEmulator) -> None:
    """Object stores have no rename of directories: files are uploaded aside, then moved in."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath
    from fsspec.implementations.memory import MemoryFileSystem

    from tests.airflow_compat import attach_filesystem

    attach_filesystem("memory", fs=MemoryFileSystem())
    ice_connection.seed_history(AGENT, 12, DAY, NEXT_DAY)
    root = ObjectStoragePath("memory://ice-analytics/sessions")
    stale = root / f"date={DAY:%Y-%m-%d}" / "old-part.jsonl"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("stale")
    op = IceSessionAnalyticsOperator(
        task_id="a", agent_ids=AGENT, destination="memory://ice-analytics/sessions"
    )
    result = op.execute({"data_interval_start": DAY, "data_interval_end": NEXT_DAY})  # type: ignore[arg-type]
    partition = ObjectStoragePath(result["uri"])
    files = committed(partition)
    assert json.loads(files["summary.json"])["sessions"] == 12
    assert len(files["sessions.jsonl"].splitlines()) == 12
    # The stale file is gone with the commit; only the manifest and its version are left.
    assert sorted(p.name for p in partition.iterdir()) == ["_manifest.json", result["version"]]
    again = op.execute({"data_interval_start": DAY, "data_interval_end": NEXT_DAY})  # type: ignore[arg-type]
    assert committed(partition) == files
    assert sorted(p.name for p in partition.iterdir()) == ["_manifest.json", again["version"]]
    assert [p.name for p in root.iterdir()] == [partition.name]  # no temporary prefix left


@pytest.mark.parametrize(
    ("expression", "timezone_name", "run_after", "expected"),
    [
        (
            "0 0 * * *",
            "UTC",
            "2026-12-02T00:30:00+00:00",
            ("2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00"),
        ),
        (
            "0 0 * * *",
            "UTC",
            "2026-12-02T00:00:00+00:00",
            ("2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00"),
        ),
        (
            "0 9 * * 1-5",
            "Europe/Berlin",
            "2026-12-07T12:00:00+00:00",  # a Monday: the interval runs from Friday 9:00 Berlin time
            ("2026-12-04T08:00:00+00:00", "2026-12-07T08:00:00+00:00"),
        ),
    ],
)
def test_last_complete_interval(
    expression: str, timezone_name: str, run_after: str, expected: tuple[str, str]
) -> None:
    start, end = last_complete_interval(expression, timezone_name, datetime.fromisoformat(run_after))
    assert (start.isoformat(), end.isoformat()) == expected


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS, reason="runs without a logical date: Airflow 2 gives every run one"
)
def test_a_run_without_a_logical_date_covers_the_last_complete_interval() -> None:
    """``airflow dags trigger`` gives no data interval; a cron DAG's run then covers the last whole day."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_provider_ice._compat import CronDataIntervalTimetable

    dag = DAG("analytics_no_date", schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"))
    run_after = datetime(2026, 12, 2, 0, 30, tzinfo=timezone.utc)
    context = {"dag": dag, "dag_run": type("Run", (), {"run_after": run_after})()}
    op = IceSessionAnalyticsOperator(task_id="analytics", agent_ids=AGENT)
    start, end = op.interval(context)  # type: ignore[arg-type]
    assert (start, end) == (
        datetime(2026, 12, 1, tzinfo=timezone.utc),
        datetime(2026, 12, 2, tzinfo=timezone.utc),
    )
    unscheduled = {"dag": DAG("analytics_manual", schedule=None), "dag_run": context["dag_run"]}
    with pytest.raises(IceValidationError, match="no interval"):
        op.interval(unscheduled)  # type: ignore[arg-type]
