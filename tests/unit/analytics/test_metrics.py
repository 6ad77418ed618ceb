"""Per-session metrics on hand-made call logs, including the awkward ones."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from airflow_provider_ice.analytics.metrics import (
    LATENCY_FROM_SERVICE,
    LATENCY_FROM_TURNS,
    response_latencies,
    session_duration_ms,
    session_metrics,
    turns_by_role,
)
from airflow_provider_ice.api.call_log import CallLog, parse_call_log
from airflow_provider_ice.api.models import AIAgentInstance


def log_of(turns: list[dict[str, Any]], **fields: Any) -> CallLog:
    return parse_call_log(json.dumps({"Turns": turns, **fields}).encode())


def turn(role: str, begin: int | None, end: int | None, *, interrupted: bool = False) -> dict[str, Any]:
    return {"Role": role, "Text": "…", "BeginMs": begin, "EndMs": end, "Interrupted": interrupted}


def instance(status: str = "Finished", **extra: Any) -> AIAgentInstance:
    wire = {
        "Status": status,
        "RuntimeConfig": {"ChannelId": "ch-1", "AgentUserId": "agent-u", "AuthToken": "tok"},
        "UserData": json.dumps({"AirflowCorrelationId": "af-123", "customer": "c9"}),
        **extra,
    }
    return AIAgentInstance.model_validate(wire)


def test_a_normal_conversation() -> None:
    log = log_of(
        [
            turn("agent", 0, 1800),
            turn("user", 2300, 3100),
            turn("agent", 3700, 5000),
            turn("user", 6000, 7000, interrupted=True),
            turn("agent", 7400, 9000),
        ],
        StartTime="2026-01-01T10:00:00Z",
        EndTime="2026-01-01T10:00:09Z",
        UserJoined=True,
        EndReason="UserHangup",
    )
    metrics = session_metrics(instance(), log, agent_id="agent-a")
    assert metrics.status == "Finished"
    assert metrics.agent_id == "agent-a"
    assert metrics.channel_id == "ch-1"
    assert metrics.correlation_id == "af-123"
    assert metrics.duration_ms == 9000
    assert metrics.turns == 5
    assert metrics.turns_by_role == {"agent": 3, "user": 2}
    assert metrics.interruptions == 1
    assert metrics.user_joined is True
    assert metrics.first_response_latency_ms == 600.0
    assert metrics.average_response_latency_ms == 500.0  # (600 + 400) / 2
    assert metrics.response_count == 2
    assert metrics.latency_source == LATENCY_FROM_TURNS
    assert metrics.end_reason == "UserHangup"
    assert metrics.has_call_log
    record = metrics.to_dict()
    assert record == dataclasses.asdict(metrics)
    record["turns_by_role"]["agent"] = 99
    assert metrics.turns_by_role["agent"] == 3, "to_dict must copy the nested dict"
    record = metrics.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert "tok" not in json.dumps(record)


def test_no_user_turns_gives_no_latency_and_falls_back_to_service_metrics() -> None:
    log = log_of(
        [turn("agent", 0, 1500)],
        Metrics={"FirstResponseLatencyMs": 640, "AverageResponseLatencyMs": 710},
    )
    metrics = session_metrics(instance(), log)
    assert metrics.turns_by_role == {"agent": 1}
    assert metrics.user_joined is False
    assert metrics.first_response_latency_ms == 640
    assert metrics.average_response_latency_ms == 710
    assert metrics.response_count == 0
    assert metrics.latency_source == LATENCY_FROM_SERVICE


def test_no_user_turns_and_no_service_metrics() -> None:
    metrics = session_metrics(instance(), log_of([turn("agent", 0, 1500)]))
    assert metrics.first_response_latency_ms is None
    assert metrics.average_response_latency_ms is None
    assert metrics.latency_source is None


def test_empty_turns() -> None:
    metrics = session_metrics(instance(), log_of([]))
    assert metrics.turns == 0
    assert metrics.turns_by_role == {}
    assert metrics.interruptions == 0
    assert metrics.user_joined is None  # unknown, not "no"
    assert metrics.duration_ms is None
    assert metrics.has_call_log


def test_missing_times_break_the_pair_instead_of_guessing() -> None:
    turns = [
        turn("user", 0, None),  # no end: cannot anchor
        turn("agent", 500, 900),
        turn("user", 1000, 1200),
        turn("agent", None, 2000),  # no begin: cannot close
        turn("user", 2100, 2500),
        turn("agent", 2900, 3500),
    ]
    assert response_latencies(log_of(turns).turns) == [400.0]


def test_unknown_roles_are_counted_but_ignored_for_latency() -> None:
    log = log_of(
        [
            turn("user", 0, 1000),
            turn("system", 1100, 1150),
            turn("Agent", 1300, 2000),
            {"Text": "no role at all"},
        ]
    )
    assert turns_by_role(log.turns) == {"agent": 1, "system": 1, "unknown": 1, "user": 1}
    assert response_latencies(log.turns) == [300.0]


def test_consecutive_user_turns_count_from_the_last_one_and_barge_in_is_zero() -> None:
    log = log_of(
        [
            turn("user", 0, 1000),
            turn("user", 1200, 2000),
            turn("agent", 2250, 3000),
            turn("user", 3500, 4200),
            turn("agent", 4000, 4500),  # started before the user finished
        ]
    )
    assert response_latencies(log.turns) == [250.0, 0.0]


def test_duration_falls_back_to_times_then_turns() -> None:
    assert session_duration_ms(log_of([], DurationMs=1234)) == 1234
    assert (
        session_duration_ms(log_of([], StartTime="2026-01-01T00:00:00Z", EndTime="2026-01-01T00:01:05Z"))
        == 65000
    )
    assert session_duration_ms(log_of([turn("agent", 0, 800), turn("user", 900, 1700)])) == 1700
    # Naive and aware times cannot be subtracted: no guess.
    assert (
        session_duration_ms(log_of([], StartTime="2026-01-01T00:00:00", EndTime="2026-01-01T00:01:05Z"))
        is None
    )


def test_pending_instance_without_log() -> None:
    metrics = session_metrics(instance("Executing"), None, agent_id="agent-a")
    assert metrics.status == "Executing"
    assert not metrics.has_call_log
    assert metrics.turns == 0
    assert metrics.duration_ms is None
    assert metrics.correlation_id == "af-123"


def test_identifiers_fall_back_to_the_log_and_unknown_status_is_kept() -> None:
    log = log_of([], AIAgentId="agent-z", ChannelId="ch-log", InstanceId="i-1", SessionId="s-1")
    metrics = session_metrics(AIAgentInstance.model_validate({"Status": "Paused"}), log)
    assert (metrics.agent_id, metrics.channel_id, metrics.instance_id, metrics.session_id) == (
        "agent-z",
        "ch-log",
        "i-1",
        "s-1",
    )
    assert metrics.status == "Paused"
    assert session_metrics(None, None).status == "Unknown"


def test_error_is_recorded() -> None:
    metrics = session_metrics(instance(), None, call_log_error="call log is not complete JSON (10 bytes)")
    assert metrics.call_log_error == "call log is not complete JSON (10 bytes)"
    assert not metrics.has_call_log


@pytest.mark.parametrize(
    ("user_joined", "turns", "expected"),
    [
        (True, [], True),
        (False, [turn("user", 0, 1)], False),  # the service's word wins
        (None, [turn("user", 0, 1)], True),
        (None, [turn("agent", 0, 1)], False),
    ],
)
def test_user_joined(user_joined: bool | None, turns: list[dict[str, Any]], expected: bool) -> None:
    fields = {} if user_joined is None else {"UserJoined": user_joined}
    assert session_metrics(None, log_of(turns, **fields)).user_joined is expected
