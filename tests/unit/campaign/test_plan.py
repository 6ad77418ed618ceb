"""Scheduling decisions: calling windows per time zone, the redial policy, unknown outcomes."""

from __future__ import annotations

from datetime import datetime, time, timezone

import pytest

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.campaign.ledger import Attempt, AttemptState
from airflow_provider_ice.campaign.plan import CallingWindow, Decision, Next, RedialPolicy, decide

NOON_UTC = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
POLICY = RedialPolicy(max_attempts=3, redial_after=600)


def attempt(number: int, state: AttemptState, **fields: object) -> Attempt:
    return Attempt(key="k", number=number, correlation_id=f"c{number}", chunk=0, state=state, **fields)  # type: ignore[arg-type]


def test_window_parsing() -> None:
    assert CallingWindow.parse((9, 18)) == CallingWindow(time(9), time(18))
    assert CallingWindow.parse("09:30-20:00") == CallingWindow(time(9, 30), time(20))
    assert CallingWindow.parse(None) is None
    for bad in ((9, 9), (9,), "nine-five", (25, 3), (True, 5)):
        with pytest.raises(IceValidationError, match=r"calling_window"):
            CallingWindow.parse(bad)


def test_window_is_in_each_recipients_time_zone() -> None:
    window = CallingWindow.parse((9, 18))
    assert window is not None
    # 12:00 UTC is 20:00 in Shanghai (closed) and 08:00 in New York (EDT since 8 March: closed).
    assert not window.is_open(NOON_UTC, "Asia/Shanghai")
    assert not window.is_open(NOON_UTC, "America/New_York")
    assert window.is_open(NOON_UTC, "Europe/Berlin")
    assert window.next_open(NOON_UTC, "Asia/Shanghai") == datetime(2026, 3, 11, 1, 0, tzinfo=timezone.utc)
    assert window.next_open(NOON_UTC, "America/New_York") == datetime(2026, 3, 10, 13, 0, tzinfo=timezone.utc)
    assert window.next_open(NOON_UTC, "Europe/Berlin") == NOON_UTC


def test_window_across_midnight() -> None:
    window = CallingWindow.parse("20:00-02:00")
    assert window is not None
    assert window.is_open(NOON_UTC, "Asia/Shanghai")  # 20:00 local
    assert not window.is_open(NOON_UTC, "UTC")
    assert window.next_open(NOON_UTC, "UTC") == datetime(2026, 3, 10, 20, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("max_attempts", "redial_after"), [(0, 1), (21, 1), (True, 1), (2, -1), (2, float("nan"))]
)
def test_policy_validation(max_attempts: int, redial_after: float) -> None:
    with pytest.raises(IceValidationError, match=r"max_attempts|redial_after"):
        RedialPolicy(max_attempts=max_attempts, redial_after=redial_after)


def test_first_call_waits_for_the_window() -> None:
    now = NOON_UTC.timestamp()
    window = CallingWindow.parse((9, 18))
    assert decide([], now, policy=POLICY, window=None, tz="UTC") == Decision(Next.CALL, 1)
    assert decide([], now, policy=POLICY, window=window, tz="Europe/Berlin") == Decision(Next.CALL, 1)
    later = decide([], now, policy=POLICY, window=window, tz="Asia/Shanghai")
    assert later == Decision(Next.LATER, 1, datetime(2026, 3, 11, 1, 0, tzinfo=timezone.utc).timestamp())


def test_redial_only_after_a_call_nobody_joined_and_after_redial_after() -> None:
    now = NOON_UTC.timestamp()
    finished = now - 100
    no_show = attempt(1, AttemptState.FINISHED, joined=False, finished_at=finished)
    assert decide([no_show], now, policy=POLICY, window=None, tz="UTC") == Decision(
        Next.LATER, 2, finished + 600
    )
    assert decide([no_show], finished + 600, policy=POLICY, window=None, tz="UTC") == Decision(Next.CALL, 2)
    reached = attempt(1, AttemptState.FINISHED, joined=True, finished_at=finished)
    assert decide([reached], now + 9999, policy=POLICY, window=None, tz="UTC").next is Next.DONE
    unknown = attempt(1, AttemptState.FINISHED, joined=None, finished_at=finished)
    assert decide([unknown], now + 9999, policy=POLICY, window=None, tz="UTC").next is Next.DONE
    last = [
        no_show,
        attempt(2, AttemptState.FINISHED, joined=False),
        attempt(3, AttemptState.FINISHED, joined=False),
    ]
    assert decide(last, now + 9999, policy=POLICY, window=None, tz="UTC") == Decision(Next.DONE, 3)


def test_in_flight_refused_and_not_placed_attempts() -> None:
    now = NOON_UTC.timestamp()
    for state in (AttemptState.SENDING, AttemptState.PLACED):
        assert decide([attempt(1, state)], now, policy=POLICY, window=None, tz="UTC") == Decision(
            Next.ACTIVE, 1
        )
    refused = attempt(1, AttemptState.REFUSED, error="InvalidParameter")
    assert decide([refused], now, policy=POLICY, window=None, tz="UTC") == Decision(Next.DONE, 1)
    # Not placed: the same attempt again (same number, so the same correlation id), after retry_at.
    throttled = attempt(1, AttemptState.NOT_PLACED, retry_at=now + 5)
    assert decide([throttled], now, policy=POLICY, window=None, tz="UTC") == Decision(Next.LATER, 1, now + 5)
    assert decide([throttled], now + 5, policy=POLICY, window=None, tz="UTC") == Decision(Next.CALL, 1)
