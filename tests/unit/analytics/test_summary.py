"""The interval summary: counts, totals, percentiles, pending sessions."""

from __future__ import annotations

import json

import pytest

from airflow_provider_ice.analytics.metrics import SessionMetrics
from airflow_provider_ice.analytics.summary import IntervalSummary, describe, percentile, summarise


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([10.0, 1.0, 5.0], 50, 5.0),  # unsorted input
        ([float(v) for v in range(1, 101)], 90, 90.1),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def test_percentile_rejects_bad_q() -> None:
    with pytest.raises(ValueError, match="q must be between 0 and 100"):
        percentile([1.0], 101)


def test_describe() -> None:
    assert describe([1.0, 3.0]) == {
        "count": 2,
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
        "p50": 2.0,
        "p90": 2.8,
        "p95": 2.9,
    }
    assert describe([])["p50"] is None


def finished(channel: str, duration: int, latency: float | None, **kw: object) -> SessionMetrics:
    base = SessionMetrics(
        agent_id="agent-a",
        channel_id=channel,
        correlation_id=None,
        status="Finished",
        has_call_log=True,
        duration_ms=duration,
        turns=4,
        turns_by_role={"agent": 2, "user": 2},
        interruptions=1,
        user_joined=True,
        first_response_latency_ms=latency,
        average_response_latency_ms=latency,
        end_reason="UserHangup",
    )
    for key, value in kw.items():
        setattr(base, key, value)
    return base


def test_summary_counts_totals_percentiles_and_pending() -> None:
    sessions = [
        finished("c1", 1000, 100.0),
        finished("c2", 3000, 300.0),
        finished("c3", 2000, None, user_joined=False, end_reason="UserOnlineTimeout"),
        SessionMetrics(agent_id="agent-b", channel_id="c4", correlation_id="af-4", status="Executing"),
        # Finished, but its CallLogUrl was still empty: pending too.
        SessionMetrics(agent_id="agent-b", channel_id="c5", correlation_id=None, status="Finished"),
        SessionMetrics(
            agent_id="agent-b",
            channel_id="c6",
            correlation_id=None,
            status="Finished",
            call_log_error="call log is not complete JSON (12 bytes)",
        ),
    ]
    doc = summarise(
        sessions, start="2026-01-01T00:00:00+00:00", end="2026-01-02T00:00:00+00:00", agent_ids=["a"]
    )
    assert doc["sessions"] == 6
    assert doc["by_status"] == {"Executing": 1, "Finished": 5}
    assert doc["by_agent"] == {"agent-a": 3, "agent-b": 3}
    assert doc["by_end_reason"] == {"UserHangup": 2, "UserOnlineTimeout": 1}
    assert doc["with_call_log"] == 3
    assert doc["pending_count"] == 2
    assert [p["channel_id"] for p in doc["pending"]] == ["c4", "c5"]
    assert doc["call_log_error_count"] == 1
    assert doc["call_log_errors"][0]["channel_id"] == "c6"
    assert doc["totals"] == {
        "duration_ms": 6000,
        "turns": 12,
        "turns_by_role": {"agent": 6, "user": 6},
        "interruptions": 3,
        "users_joined": 2,
    }
    assert doc["distributions"]["duration_ms"]["p50"] == 2000.0
    assert doc["distributions"]["duration_ms"]["p95"] == 2900.0
    assert doc["distributions"]["first_response_latency_ms"]["count"] == 2
    assert doc["distributions"]["first_response_latency_ms"]["p90"] == 280.0
    assert json.loads(json.dumps(doc)) == doc


def test_empty_interval() -> None:
    doc = IntervalSummary(start="s", end="e", agent_ids=["a", "b"]).to_dict()
    assert doc["sessions"] == 0
    assert doc["pending"] == []
    assert doc["distributions"]["duration_ms"] == {
        "count": 0,
        "min": None,
        "max": None,
        "mean": None,
        "p50": None,
        "p90": None,
        "p95": None,
    }
