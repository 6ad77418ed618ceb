"""The adaptive token bucket (pure, on a fake clock), its process-wide sharing and its configuration."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from airflow_provider_ice.api import ratelimit
from airflow_provider_ice.api.client import AsyncIceClient, IceClient
from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.ratelimit import (
    RECOVERY_SECONDS,
    RateLimits,
    TokenBucket,
    rate_limits_from_extras,
    shared_bucket,
)
from airflow_provider_ice.api.signing import Credentials

CREDS = Credentials("LTAIratelimit", "secret")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    ratelimit.reset_shared_buckets()
    yield
    ratelimit.reset_shared_buckets()


def test_bucket_paces_requests_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock)
    # One token to start with (a tenth of a second of 10/s), then each reservation queues 0.1 s later.
    waits = [bucket.reserve()[0] for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    clock.now += 0.5  # the queue has drained: the next request goes at once again
    assert bucket.reserve() == pytest.approx((0.0, clock.now))
    assert bucket.reserve() == pytest.approx((0.1, clock.now + 0.1))


def test_over_a_long_run_admits_exactly_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(50.0, clock=clock)
    sent_at = []
    for _ in range(500):
        sent_at.append(bucket.reserve()[1])
    span = sent_at[-1] - sent_at[0]
    assert 499 / span == pytest.approx(50.0, rel=0.01)
    # Never more than the burst (5 requests = 0.1 s of 50/s) plus 0.1 s of the rate in any 0.1 s.
    assert max(sum(1 for t in sent_at if s <= t < s + 0.1) for s in sent_at) <= 10


def test_throttling_halves_the_rate_once_per_signal_then_recovers_linearly() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20.0, clock=clock)
    in_flight = [bucket.reserve()[1] for _ in range(5)]
    clock.now += 0.5
    bucket.on_throttled(in_flight[0])
    assert bucket.current_rate() == pytest.approx(10.0)
    # Answers to requests sent before that decrease: one signal, not five halvings.
    for ticket in in_flight[1:]:
        bucket.on_throttled(ticket)
    assert bucket.current_rate() == pytest.approx(10.0)
    assert (bucket.throttled, bucket.decreases) == (5, 1)
    # A request sent at the new rate and throttled again: the rate is still too high.
    _, ticket = bucket.reserve()
    clock.now = ticket + 0.05
    bucket.on_throttled(ticket)
    assert bucket.decreases == 2
    expected = (10.0 + 20.0 * (clock.now - 1000.5) / RECOVERY_SECONDS) / 2
    assert bucket.current_rate() == pytest.approx(expected)
    # Slow recovery: a quarter of the way back takes a quarter of RECOVERY_SECONDS.
    rate = bucket.current_rate()
    clock.now += RECOVERY_SECONDS / 4
    assert bucket.current_rate() == pytest.approx(min(20.0, rate + 5.0))
    clock.now += RECOVERY_SECONDS
    assert bucket.current_rate() == pytest.approx(20.0)


def test_throttling_empties_the_bucket_and_never_goes_below_the_floor() -> None:
    clock = FakeClock()
    bucket = TokenBucket(16.0, clock=clock)
    for _ in range(20):
        bucket.on_throttled(clock.now)
        clock.now += 1.0
    # At the floor (a sixteenth), plus one second's recovery.
    floor = 16.0 * ratelimit.MIN_RATE_SHARE
    assert bucket.current_rate() == pytest.approx(floor + 16.0 / RECOVERY_SECONDS)
    bucket.on_throttled(clock.now)
    assert bucket.reserve()[0] > 0  # emptied: the next request waits


def test_buckets_are_shared_by_identity_and_action_and_reconfigured_by_the_latest() -> None:
    a = shared_bucket(("LTAI1", "https://ice"), "ListAIAgentInstance", 5.0)
    assert shared_bucket(("LTAI1", "https://ice"), "ListAIAgentInstance", 5.0) is a
    assert shared_bucket(("LTAI1", "https://ice"), "GenerateAIAgentCall", 5.0) is not a
    assert shared_bucket(("LTAI2", "https://ice"), "ListAIAgentInstance", 5.0) is not a
    assert shared_bucket(("LTAI1", "https://other"), "ListAIAgentInstance", 5.0) is not a
    assert shared_bucket(("LTAI1", "https://ice"), "ListAIAgentInstance", 2.0) is a
    assert a.ceiling == 2.0
    assert a.current_rate() == 2.0


def test_sync_and_async_clients_of_one_account_share_a_bucket() -> None:
    limits = RateLimits(10, {"GenerateAIAgentCall": 2, "StopAIAgentInstance": None})
    sync = IceClient(CREDS, endpoint="http://127.0.0.1:1", rate_limits=limits)
    other = AsyncIceClient(CREDS, endpoint="http://127.0.0.1:1", rate_limits=RateLimits(10))
    assert sync._limiter is not None
    assert other._limiter is not None
    assert sync._limiter.bucket("ListAIAgentInstance") is other._limiter.bucket("ListAIAgentInstance")
    assert sync._limiter.bucket("StopAIAgentInstance") is None
    generate = sync._limiter.bucket("GenerateAIAgentCall")
    assert generate is not None
    assert generate.ceiling == 2


def test_off_unless_configured() -> None:
    assert IceClient(CREDS, endpoint="http://127.0.0.1:1")._limiter is None
    assert IceClient(CREDS, endpoint="http://127.0.0.1:1", rate_limits=RateLimits())._limiter is None
    assert RateLimits(None, {"ListAIAgentInstance": None}).enabled is False
    assert rate_limits_from_extras({}) is None
    assert rate_limits_from_extras({"rate_limit": "", "rate_limits": ""}) is None


def test_limits_from_extras() -> None:
    limits = rate_limits_from_extras(
        {"rate_limit": "20", "rate_limits": '{"GenerateAIAgentCall": 5, "StopAIAgentInstance": null}'}
    )
    assert limits is not None
    assert limits.rate_for("ListAIAgentInstance") == 20.0
    assert limits.rate_for("GenerateAIAgentCall") == 5.0
    assert limits.rate_for("StopAIAgentInstance") is None
    only_one = rate_limits_from_extras({"rate_limits": {"GenerateAIAgentCall": 1.5}})
    assert only_one is not None
    assert only_one.rate_for("ListAIAgentInstance") is None


@pytest.mark.parametrize(
    ("extras", "parameter"),
    [
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": -3}, "rate_limit"),
        ({"rate_limit": float("nan")}, "rate_limit"),
        ({"rate_limit": True}, "rate_limit"),
        ({"rate_limits": "{not json"}, "rate_limits"),
        ({"rate_limits": "[1, 2]"}, "rate_limits"),
        ({"rate_limits": {"GenerateAIAgentCall": 0}}, "rate_limits.GenerateAIAgentCall"),
        ({"rate_limits": {"": 3}}, "rate_limits"),
    ],
)
def test_bad_limits_name_the_extra(extras: dict[str, object], parameter: str) -> None:
    with pytest.raises(IceValidationError) as caught:
        rate_limits_from_extras(extras)
    assert caught.value.parameter == parameter


def test_concurrent_threads_never_exceed_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            wait, _ = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 400 reservations at a frozen clock: every slot distinct, 10 ms apart after the
    # burst of 10, the last at 3.90 s.
    assert sorted(waits) == pytest.approx([max(0.0, (i - 9) / 100) for i in range(400)])
