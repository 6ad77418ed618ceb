"""The campaign's sending thread: pace, the write-ahead horizon, pauses and errors, reported in order."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from airflow_provider_ice.campaign.ledger import Attempt, AttemptState, Ledger, Placement
from airflow_provider_ice.campaign.recipients import Recipient
from airflow_provider_ice.operators._campaign_send import Report, Sender


def batch(keys: list[str], ledger: Ledger) -> list[tuple[Recipient, Attempt]]:
    attempts = ledger.open_chunk([(key, 1) for key in keys], sent_by=time.time() + 60)
    return [(Recipient(n, key, {}), a) for n, (key, a) in enumerate(zip(keys, attempts, strict=True))]


def reports(sender: Sender, batches: int) -> list[Report]:
    """Every report until ``batches`` batches are done (fails after 10 s)."""
    seen: list[Report] = []
    deadline = time.monotonic() + 10
    while sum(1 for r in seen if r.done) < batches:
        report = sender.next_report(deadline - time.monotonic())
        assert report is not None, f"no report in time: {seen}"
        seen.append(report)
    return seen


def placed(sent: list[str]) -> Callable[[Recipient, Attempt], Placement]:
    def send(recipient: Recipient, attempt: Attempt) -> Placement:
        sent.append(recipient.key)
        return Placement(AttemptState.PLACED, instance_id=f"i-{recipient.key}")

    return send


def test_batches_are_sent_in_order_at_the_pace_and_reported() -> None:
    sent: list[str] = []
    sender = Sender(placed(sent), calls_per_second=50)  # a burst of 5, then 20 ms apart
    ledger = Ledger("camp", time.time())
    keys = [f"k{n}" for n in range(20)]
    started = time.monotonic()
    sender.submit(batch(keys[:10], ledger), time.time() + 60)
    sender.submit(batch(keys[10:], ledger), time.time() + 60)
    seen = reports(sender, 2)
    elapsed = time.monotonic() - started
    sender.close()
    assert sent == keys
    assert [r.attempt.key for r in seen if r.attempt] == keys
    assert all(
        r.placement == Placement(AttemptState.PLACED, instance_id=f"i-{r.attempt.key}")
        for r in seen
        if r.attempt
    )
    assert elapsed >= 0.28, "15 calls beyond the burst at 50/s take at least 0.3 s"


def test_nothing_is_sent_past_the_write_ahead_horizon() -> None:
    sent: list[str] = []
    sender = Sender(placed(sent), calls_per_second=1000)
    ledger = Ledger("camp", time.time())
    sender.submit(batch(["a", "b"], ledger), time.time() + 0.2)  # within the margin already
    seen = reports(sender, 1)
    sender.close()
    assert sent == []
    assert [(r.attempt.key, r.placement.state) for r in seen if r.attempt and r.placement] == [
        ("a", AttemptState.NOT_PLACED),
        ("b", AttemptState.NOT_PLACED),
    ]


def test_a_throttled_send_returns_the_rest_and_the_queued_batch_unsent() -> None:
    sent: list[str] = []

    def send(recipient: Recipient, attempt: Attempt) -> Placement:
        sent.append(recipient.key)
        if recipient.key == "b":
            return Placement(AttemptState.NOT_PLACED, retry_at=123.0)
        return Placement(AttemptState.PLACED)

    sender = Sender(send, calls_per_second=1000)
    ledger = Ledger("camp", time.time())
    sender.submit(batch(["a", "b", "c"], ledger), time.time() + 60)
    sender.submit(batch(["d"], ledger), time.time() + 60)
    seen = reports(sender, 2)
    sender.close()
    assert sent == ["a", "b"]
    outcome = {r.attempt.key: r.placement for r in seen if r.attempt and r.placement}
    assert outcome["b"].retry_at == 123.0
    assert outcome["c"].state is outcome["d"].state is AttemptState.NOT_PLACED
    assert outcome["c"].retry_at is None


def test_an_error_is_reported_and_nothing_more_is_sent() -> None:
    sent: list[str] = []

    def send(recipient: Recipient, attempt: Attempt) -> Placement:
        sent.append(recipient.key)
        if recipient.key == "a":
            raise RuntimeError("boom")
        return Placement(AttemptState.PLACED)

    sender = Sender(send, calls_per_second=1000)
    sender.submit(batch(["a", "b"], Ledger("camp", time.time())), time.time() + 60)
    seen = reports(sender, 1)
    sender.close()
    assert sent == ["a"]
    [error] = [r.error for r in seen if r.error is not None]
    with pytest.raises(RuntimeError, match="boom"):
        raise error


def test_a_call_starts_only_in_a_free_slot_and_waits_no_longer_than_its_record_allows() -> None:
    sent: list[str] = []
    sender = Sender(placed(sent), calls_per_second=1000)
    sender.allow(0, 2)
    ledger = Ledger("camp", time.time())
    sender.submit(batch(["a", "b", "c", "d", "e"], ledger), time.time() + 1.5)  # gives up 1 s from now
    time.sleep(0.3)
    assert sent == ["a", "b"], "two free slots"
    assert sender.counts() == (2, 3)
    sender.allow(2, 1)  # a call finished
    seen = reports(sender, 1)
    sender.close()
    assert sent == ["a", "b", "c"]
    outcome = {r.attempt.key: r.placement.state for r in seen if r.attempt and r.placement}
    assert outcome == {
        "a": AttemptState.PLACED,
        "b": AttemptState.PLACED,
        "c": AttemptState.PLACED,
        "d": AttemptState.NOT_PLACED,
        "e": AttemptState.NOT_PLACED,
    }
    assert sender.counts() == (3, 0)


def test_after_an_error_a_batch_handed_over_later_is_not_sent_either() -> None:
    sent: list[str] = []

    def send(recipient: Recipient, attempt: Attempt) -> Placement:
        sent.append(recipient.key)
        if recipient.key == "a":
            raise RuntimeError("boom")
        return Placement(AttemptState.PLACED)

    sender = Sender(send, calls_per_second=1000)
    ledger = Ledger("camp", time.time())
    sender.submit(batch(["a"], ledger), time.time() + 60)
    reports(sender, 1)  # the queue is empty when the failed batch ends
    sender.submit(batch(["b"], ledger), time.time() + 60)
    seen = reports(sender, 1)
    sender.close()
    assert sent == ["a"]
    assert [(r.attempt.key, r.placement.state) for r in seen if r.attempt and r.placement] == [
        ("b", AttemptState.NOT_PLACED)
    ]
