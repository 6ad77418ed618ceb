"""The agenda: who is due now, who later, decided again only for what changed or came due."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow_provider_ice.campaign.agenda import Agenda
from airflow_provider_ice.campaign.ledger import AttemptState, Ledger
from airflow_provider_ice.campaign.plan import CallingWindow, RedialPolicy
from airflow_provider_ice.campaign.recipients import Recipient

# 2027-01-15 10:00 UTC
T0 = datetime(2027, 1, 15, 10, 0, tzinfo=timezone.utc).timestamp()


def agenda(keys: list[str], *, window: CallingWindow | None = None, attempts: int = 2) -> Agenda:
    recipients = {key: Recipient(n, key, {}) for n, key in enumerate(keys, start=1)}
    return Agenda(
        recipients,
        Ledger("camp", T0),
        policy=RedialPolicy(max_attempts=attempts, redial_after=60.0),
        window=window,
        default_timezone="UTC",
    )


def test_everyone_is_due_in_input_order_and_taken_in_batches() -> None:
    plan = agenda(["a", "b", "c"])
    plan.refresh(plan.recipients, T0)
    assert list(plan.due.items()) == [("a", 1), ("b", 1), ("c", 1)]
    taken = plan.take(2, T0)
    assert [(r.key, n) for r, n in taken] == [("a", 1), ("b", 1)]
    assert list(plan.due) == ["c"]


def test_a_window_that_closed_since_the_plan_moves_the_recipient_to_later() -> None:
    plan = agenda(["a"], window=CallingWindow.parse("09:00-11:00"))
    plan.refresh(plan.recipients, T0)
    assert plan.due == {"a": 1}
    closed = T0 + 2 * 3600  # 12:00 UTC: closed until 09:00 the next day
    assert plan.take(1, closed) == []
    assert plan.due == {}
    assert plan.later == {"a": T0 + 23 * 3600}


def test_a_redial_comes_due_when_its_time_comes_and_not_before() -> None:
    plan = agenda(["a", "b"])
    [first] = plan.ledger.open_chunk([("a", 1)], sent_by=T0)
    first.state, first.joined, first.finished_at = AttemptState.FINISHED, False, T0
    plan.refresh(["a"], T0)
    assert plan.later == {"a": T0 + 60}
    assert "a" not in plan.due
    plan.advance(T0 + 59)
    assert "a" not in plan.due
    plan.advance(T0 + 60)
    assert plan.due == {"a": 2}
    assert plan.later == {}


def test_outdated_later_entries_are_ignored() -> None:
    plan = agenda(["a"])
    [first] = plan.ledger.open_chunk([("a", 1)], sent_by=T0)
    first.state, first.joined, first.finished_at = AttemptState.FINISHED, False, T0
    plan.refresh(["a"], T0)
    # The person was reached after all (a late listing): nothing is due, the old entry is stale.
    first.joined = True
    plan.refresh(["a"], T0 + 1)
    plan.advance(T0 + 120)
    assert (plan.due, plan.later) == ({}, {})


def test_unknown_keys_and_active_attempts_are_neither_due_nor_later() -> None:
    plan = agenda(["a"])
    plan.ledger.open_chunk([("a", 1)], sent_by=T0)
    plan.refresh(["a", "ghost"], T0)
    assert (plan.due, plan.later) == ({}, {})
