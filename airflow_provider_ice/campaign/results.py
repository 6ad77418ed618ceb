"""Campaign results: one row per recipient and attempt, and the summary the operator returns.

Nothing here imports Airflow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from .ledger import Attempt, Ledger, iso_epoch, outcome_of
from .recipients import Recipient, Rejected


def result_rows(
    recipients: Iterable[Recipient], rejected: Iterable[Rejected], ledger: Ledger, *, agent_id: str, kind: str
) -> list[dict[str, Any]]:
    """Every attempt of every recipient (in input order), then each rejected recipient's row."""
    by_key = ledger.by_key()
    rows: list[dict[str, Any]] = []
    for recipient in recipients:
        for attempt in by_key.get(recipient.key, ()):
            rows.append(_row(recipient.position, attempt, agent_id, kind))
    for item in rejected:
        rows.append(
            {
                "position": item.position,
                "key": item.key,
                "attempt": 0,
                "agent_id": agent_id,
                "kind": kind,
                "outcome": "rejected",
                "joined": None,
                "error": item.problem,
            }
        )
    rows.sort(key=lambda row: (row["position"], row["attempt"]))
    return rows


def _row(position: int, attempt: Attempt, agent_id: str, kind: str) -> dict[str, Any]:
    return {
        "position": position,
        "key": attempt.key,
        "attempt": attempt.number,
        "agent_id": agent_id,
        "kind": kind,
        "correlation_id": attempt.correlation_id,
        "instance_id": attempt.instance_id,
        "channel_id": attempt.channel_id,
        "state": attempt.state.value,
        "status": attempt.status,
        "outcome": outcome_of(attempt),
        "joined": attempt.joined,
        "sent_by": iso_epoch(attempt.sent_by),
        "answered_at": attempt.answered_at,
        "finished_seen_at": iso_epoch(attempt.finished_at),
        "call_log_uri": attempt.call_log_uri,
        "error": attempt.error,
    }


def summarise(rows: list[dict[str, Any]], *, recipients: int) -> dict[str, Any]:
    """Count the result rows: recipients by final outcome, attempts by outcome and by number."""
    final: dict[str, dict[str, Any]] = {}
    for row in rows:
        final[row["key"] if row["attempt"] else f"#{row['position']}"] = row  # rows are in attempt order
    by_outcome = Counter(row["outcome"] for row in final.values())
    attempts = [row for row in rows if row["attempt"]]
    return {
        "recipients": recipients,
        "rejected": by_outcome.get("rejected", 0),
        "reached": by_outcome.get("reached", 0),
        "not_reached": by_outcome.get("not_reached", 0),
        "recipients_by_outcome": dict(sorted(by_outcome.items())),
        "attempts": len(attempts),
        "calls_placed": sum(1 for row in attempts if row["outcome"] not in ("refused", "not_placed")),
        "attempts_by_outcome": dict(sorted(Counter(row["outcome"] for row in attempts).items())),
        "attempts_by_number": {str(k): v for k, v in sorted(Counter(r["attempt"] for r in attempts).items())},
    }
