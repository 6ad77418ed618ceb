"""The ledger: correlation ids, write-ahead chunks, reconciliation with a lagging listing, results."""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.api.models import AIAgentInstance
from airflow_provider_ice.campaign.ledger import AttemptState, Ledger, attempt_correlation_id
from airflow_provider_ice.campaign.recipients import Recipient, Rejected
from airflow_provider_ice.campaign.results import result_rows, summarise

T0 = 1_800_000_000.0
TOLERANCE = 120.0


def listed(cid: str, status: str = "Executing", channel: str = "ch-1") -> AIAgentInstance:
    return AIAgentInstance.model_validate(
        {
            "Status": status,
            "UserData": json.dumps({CORRELATION_KEY: cid}),
            "RuntimeConfig": {"VoiceChat": {"ChannelId": channel}},
        }
    )


def never_joined(attempt: Any, instance: AIAgentInstance) -> tuple[bool | None, str | None]:
    return False, None


def test_correlation_ids_are_stable_and_distinct_per_campaign_key_and_attempt() -> None:
    first = attempt_correlation_id("camp", "k1", 1)
    assert first == attempt_correlation_id("camp", "k1", 1)
    others = {
        attempt_correlation_id(c, k, n) for c, k, n in [("camp", "k1", 2), ("camp", "k2", 1), ("x", "k1", 1)]
    }
    assert first not in others
    assert len(others) == 3
    assert first.startswith("af-")
    assert len(first) == 35


def test_chunks_round_trip_through_the_checkpoint() -> None:
    ledger = Ledger("camp", T0)
    [a, b] = ledger.open_chunk([("k1", 1), ("k2", 1)], sent_by=T0 + 5)
    a.state, a.instance_id = AttemptState.PLACED, "i-1"
    assert ledger.dirty == {0}
    store = {i: ledger.chunk_payload(i) for i in range(ledger.chunks)}
    restored = Ledger.restore(ledger.header(), store.get)
    assert restored.attempts == ledger.attempts
    assert restored.attempts[a.correlation_id].state is AttemptState.PLACED
    assert restored.attempts[b.correlation_id].sent_by == T0 + 5
    # Resending an attempt moves it to the new chunk and marks the old one for rewriting.
    ledger.dirty.clear()
    [again] = ledger.open_chunk([("k2", 1)], sent_by=T0 + 50)
    assert (again.chunk, ledger.dirty) == (1, {0, 1})
    assert b.correlation_id not in ledger.chunk_payload(0)


def test_unknown_outcome_is_looked_for_until_the_tolerance_has_passed() -> None:
    ledger = Ledger("camp", T0)
    [attempt] = ledger.open_chunk([("k1", 1)], sent_by=T0)
    # The listing lags: not listed yet, and the tolerance has not passed: still in flight.
    ledger.reconcile({}, T0 + TOLERANCE - 1, TOLERANCE, never_joined)
    assert attempt.state is AttemptState.SENDING
    assert ledger.active() == [attempt]
    # Listed late (but before the tolerance): adopted.
    ledger.reconcile(
        {attempt.correlation_id: listed(attempt.correlation_id)}, T0 + 100, TOLERANCE, never_joined
    )
    assert (attempt.state, attempt.channel_id, attempt.status) == (AttemptState.PLACED, "ch-1", "Executing")


def test_unlisted_past_the_tolerance_is_not_placed_and_a_later_listing_still_wins() -> None:
    ledger = Ledger("camp", T0)
    [attempt] = ledger.open_chunk([("k1", 1)], sent_by=T0)
    ledger.reconcile({}, T0 + TOLERANCE, TOLERANCE, never_joined)
    assert attempt.state is AttemptState.NOT_PLACED
    assert ledger.active() == []
    ledger.reconcile(
        {attempt.correlation_id: listed(attempt.correlation_id, "Finished")},
        T0 + 500,
        TOLERANCE,
        never_joined,
    )
    assert (attempt.state, attempt.joined, attempt.finished_at) == (AttemptState.FINISHED, False, T0 + 500)


def test_placed_calls_are_never_concluded_missing_by_the_tolerance() -> None:
    ledger = Ledger("camp", T0)
    [attempt] = ledger.open_chunk([("k1", 1)], sent_by=T0)
    attempt.state = AttemptState.PLACED
    ledger.reconcile({}, T0 + 10 * TOLERANCE, TOLERANCE, never_joined)
    assert attempt.state is AttemptState.PLACED


def test_results_and_summary() -> None:
    ledger = Ledger("camp", T0)
    first, second, other = ledger.open_chunk([("a", 1), ("a", 2), ("b", 1)], sent_by=T0)
    first.state, first.joined = AttemptState.FINISHED, False
    second.state, second.joined, second.instance_id = AttemptState.FINISHED, True, "i-2"
    other.state, other.error = AttemptState.REFUSED, "InvalidParameter: bad number"
    recipients = [Recipient(1, "a", {}), Recipient(2, "b", {})]
    rows = result_rows(recipients, [Rejected(3, "a", "duplicate key 'a'")], ledger, agent_id="ag", kind="app")
    assert [(r["position"], r["key"], r["attempt"], r["outcome"]) for r in rows] == [
        (1, "a", 1, "not_reached"),
        (1, "a", 2, "reached"),
        (2, "b", 1, "refused"),
        (3, "a", 0, "rejected"),
    ]
    assert rows[1]["instance_id"] == "i-2"
    assert rows[1]["correlation_id"] == attempt_correlation_id("camp", "a", 2)
    summary = summarise(rows, recipients=3)
    assert summary["recipients_by_outcome"] == {"reached": 1, "refused": 1, "rejected": 1}
    assert (summary["attempts"], summary["calls_placed"], summary["reached"]) == (3, 2, 1)
    assert summary["attempts_by_number"] == {"1": 2, "2": 1}


def test_an_answer_after_the_listing_keeps_what_the_listing_said() -> None:
    from airflow_provider_ice.campaign.ledger import Placement

    ledger = Ledger("camp", T0)
    [attempt] = ledger.open_chunk([("k1", 1)], sent_by=T0)
    ledger.reconcile(
        {attempt.correlation_id: listed(attempt.correlation_id, "Finished")}, T0 + 1, TOLERANCE, never_joined
    )
    ledger.dirty.clear()
    ledger.record(attempt, Placement(AttemptState.PLACED, instance_id="i-1", channel_id="ch-9"))
    assert (attempt.state, attempt.instance_id, attempt.channel_id) == (AttemptState.FINISHED, "i-1", "ch-1")
    assert ledger.dirty == {0}


def test_an_answer_to_a_sending_attempt_sets_its_state() -> None:
    from airflow_provider_ice.campaign.ledger import Placement

    ledger = Ledger("camp", T0)
    placed, throttled, unknown = ledger.open_chunk([("a", 1), ("b", 1), ("c", 1)], sent_by=T0)
    ledger.record(placed, Placement(AttemptState.PLACED, instance_id="i-1"))
    ledger.record(throttled, Placement(AttemptState.NOT_PLACED, retry_at=T0 + 3))
    ledger.record(unknown, Placement(AttemptState.SENDING))
    assert (placed.state, placed.instance_id) == (AttemptState.PLACED, "i-1")
    assert (throttled.state, throttled.retry_at) == (AttemptState.NOT_PLACED, T0 + 3)
    assert unknown.state is AttemptState.SENDING


def test_a_request_still_in_flight_is_never_concluded_not_placed() -> None:
    ledger = Ledger("camp", T0)
    [attempt] = ledger.open_chunk([("k1", 1)], sent_by=T0)
    changed = ledger.reconcile({}, T0 + 10 * TOLERANCE, TOLERANCE, never_joined, {attempt.correlation_id})
    assert attempt.state is AttemptState.SENDING
    assert changed == set()
    assert ledger.reconcile({}, T0 + 10 * TOLERANCE, TOLERANCE, never_joined) == {"k1"}
    assert attempt.state is AttemptState.NOT_PLACED


def test_a_resent_attempt_is_restored_from_its_newest_chunk_even_if_the_old_one_was_not_rewritten() -> None:
    ledger = Ledger("camp", T0)
    [first] = ledger.open_chunk([("k1", 1)], sent_by=T0)
    first.state = AttemptState.NOT_PLACED
    stale = {0: ledger.chunk_payload(0)}  # the old chunk as written before the resend
    [again] = ledger.open_chunk([("k1", 1)], sent_by=T0 + 50)
    again.call_log_uri = "file:///logs/x.json"
    store = {**stale, 1: ledger.chunk_payload(1)}
    restored = Ledger.restore(ledger.header(), store.get)
    [attempt] = restored.attempts.values()
    assert (attempt.state, attempt.sent_by, attempt.chunk) == (AttemptState.SENDING, T0 + 50, 1)
    assert attempt.call_log_uri == "file:///logs/x.json"
    assert restored.attempts_of("k1") == [attempt]
    assert restored.chunk_payload(0) == {}
    assert restored.dirty == set()
