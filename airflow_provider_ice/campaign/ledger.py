"""The campaign's ledger: every attempt, what is known of it, and how it is checkpointed.

Each attempt (recipient key, attempt number) has its own correlation id, put into its UserData, so
the listing tells which of them exist whatever happened to the worker. The ledger is checkpointed in
chunks: a chunk is written *before* its calls are sent (write-ahead: state ``sending`` and a
``sent_by`` time no send of the chunk happens after) and again once their responses are in. A resume
reads the chunks and reconciles them with the listing (:meth:`Ledger.reconcile`):

* listed: the call exists (adopted, whatever the checkpoint says);
* ``sending`` and not listed: looked for until ``lookup_tolerance`` after ``sent_by``, and only then
  concluded ``not_placed`` (the listing may lag); the same attempt is then placed again;
* ``placed`` and not listed: keeps waiting (a response said it exists).

Nothing here imports Airflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_ice.api.models import AIAgentInstance

#: Attempts per checkpoint chunk at most (a chunk is one write-ahead batch).
CHUNK_SIZE = 200


class AttemptState(str, Enum):
    """Where an attempt stands, as far as the checkpoint and the listing tell."""

    SENDING = "sending"  # write-ahead recorded; the outcome of the request is not known yet
    PLACED = "placed"  # the service accepted it, or the listing shows it
    NOT_PLACED = "not_placed"  # concluded not placed (throttled, or unlisted past the tolerance)
    REFUSED = "refused"  # the service refused the request for good
    FINISHED = "finished"  # the listing shows it Finished


@dataclass(frozen=True)
class Placement:
    """What the answer to an attempt's creating request said (SENDING: the outcome is unknown)."""

    state: AttemptState
    instance_id: str | None = None
    channel_id: str | None = None
    retry_at: float | None = None
    error: str | None = None


def attempt_correlation_id(campaign_id: str, key: str, number: int) -> str:
    """Return the correlation id of attempt ``number`` of recipient ``key`` (the same on every try)."""
    source = f"{campaign_id}\x1f{key}\x1f{number}"
    return "af-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


@dataclass
class Attempt:
    """One call attempt for one recipient (times are epoch seconds)."""

    key: str
    number: int
    correlation_id: str
    chunk: int
    state: AttemptState = AttemptState.SENDING
    sent_by: float | None = None
    instance_id: str | None = None
    channel_id: str | None = None
    status: str | None = None
    joined: bool | None = None
    answered_at: str | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    error: str | None = None
    call_log_uri: str | None = None

    def fingerprint(self) -> tuple[Any, ...]:
        """Return what a reconciliation may change (cheap to compare)."""
        return (
            self.state,
            self.status,
            self.channel_id,
            self.joined,
            self.answered_at,
            self.error,
            self.call_log_uri,
        )

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every field (most of a checkpoint write's CPU).
        data = {name: value for name in _FIELDS if (value := getattr(self, name)) is not None}
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], chunk: int) -> Attempt:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["state"] = AttemptState(values.get("state", AttemptState.SENDING.value))
        values["chunk"] = chunk
        return cls(**values)


#: The fields an attempt's checkpoint record keeps (its chunk is where the record is).
_FIELDS = tuple(f.name for f in fields(Attempt) if f.name != "chunk")


@dataclass
class Ledger:
    """All attempts of one campaign, indexed by correlation id, by recipient key and by chunk."""

    campaign_id: str
    started_at: float
    attempts: dict[str, Attempt] = field(default_factory=dict)
    chunks: int = 0
    dirty: set[int] = field(default_factory=set)
    _by_key: dict[str, list[Attempt]] = field(default_factory=dict, repr=False, compare=False)
    _members: dict[int, dict[str, Attempt]] = field(default_factory=dict, repr=False, compare=False)

    def by_key(self) -> dict[str, list[Attempt]]:
        """Return the attempts per recipient key, in attempt order (the ledger's own index: read only)."""
        return self._by_key

    def attempts_of(self, key: str) -> list[Attempt]:
        """Return the attempts of recipient ``key``, in attempt order."""
        return self._by_key.get(key, [])

    def _index(self, attempt: Attempt) -> None:
        previous = self.attempts.get(attempt.correlation_id)
        if previous is not None:
            self._members.get(previous.chunk, {}).pop(previous.correlation_id, None)
            self.dirty.add(previous.chunk)
        self.attempts[attempt.correlation_id] = attempt
        self._members.setdefault(attempt.chunk, {})[attempt.correlation_id] = attempt
        mine = [a for a in self._by_key.get(attempt.key, []) if a.correlation_id != attempt.correlation_id]
        mine.append(attempt)
        mine.sort(key=lambda a: a.number)
        self._by_key[attempt.key] = mine

    def open_chunk(self, wanted: Iterable[tuple[str, int]], sent_by: float) -> list[Attempt]:
        """Write-ahead records for ``(key, number)`` pairs in a new chunk (a resent attempt moves)."""
        chunk = self.chunks
        self.chunks += 1
        opened = []
        for key, number in wanted:
            cid = attempt_correlation_id(self.campaign_id, key, number)
            attempt = Attempt(key=key, number=number, correlation_id=cid, chunk=chunk, sent_by=sent_by)
            self._index(attempt)
            opened.append(attempt)
        self.dirty.add(chunk)
        return opened

    def record(self, attempt: Attempt, placement: Placement) -> None:
        """Apply the answer to ``attempt``'s creating request (a listing seen meanwhile is kept)."""
        attempt.instance_id = attempt.instance_id or placement.instance_id
        attempt.channel_id = attempt.channel_id or placement.channel_id
        if attempt.state is AttemptState.SENDING and placement.state is not AttemptState.SENDING:
            attempt.state = placement.state
            attempt.retry_at, attempt.error = placement.retry_at, placement.error
        self.dirty.add(attempt.chunk)

    def chunk_payload(self, chunk: int) -> dict[str, Any]:
        return {cid: a.to_json() for cid, a in self._members.get(chunk, {}).items()}

    def header(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "started_at": self.started_at, "chunks": self.chunks}

    @classmethod
    def restore(cls, header: Mapping[str, Any], chunk: Callable[[int], Mapping[str, Any] | None]) -> Ledger:
        """Return the ledger rebuilt from its header and a reader of chunk ``i`` (a later chunk wins)."""
        ledger = cls(str(header["campaign_id"]), float(header["started_at"]), chunks=int(header["chunks"]))
        for number in range(ledger.chunks):
            for data in (chunk(number) or {}).values():
                ledger._index(Attempt.from_json(data, number))
        ledger.dirty.clear()
        return ledger

    # -- reconciliation ------------------------------------------------------------------------

    def reconcile(
        self,
        listed: Mapping[str, AIAgentInstance],
        now: float,
        lookup_tolerance: float,
        joined: Callable[[Attempt, AIAgentInstance], tuple[bool | None, str | None]],
        in_flight: Collection[str] = (),
    ) -> set[str]:
        """Bring the attempts up to date with the listing (``listed``: correlation id -> instance).

        Only listed attempts and attempts of unknown outcome can change; one whose request is still
        ``in_flight`` (correlation ids) is never concluded not placed. ``joined(attempt, instance)``
        tells for a Finished instance whether the person joined, and when they answered. Return the
        keys of the recipients whose attempts changed.
        """
        candidates = [self.attempts[cid] for cid in listed if cid in self.attempts]
        candidates += [
            a
            for a in self.attempts.values()
            if a.state is AttemptState.SENDING and a.correlation_id not in listed
        ]
        changed: set[str] = set()
        for attempt in candidates:
            instance = listed.get(attempt.correlation_id)
            before = attempt.fingerprint()
            if instance is not None:
                self._observe(attempt, instance, now, joined)
            elif (
                attempt.state is AttemptState.SENDING
                and now >= (attempt.sent_by or 0) + lookup_tolerance
                and attempt.correlation_id not in in_flight
            ):
                attempt.state = AttemptState.NOT_PLACED
                attempt.error = "not listed within lookup_tolerance after the send: concluded not placed"
            if attempt.fingerprint() != before:
                self.dirty.add(attempt.chunk)
                changed.add(attempt.key)
        return changed

    @staticmethod
    def _observe(
        attempt: Attempt,
        instance: AIAgentInstance,
        now: float,
        joined: Callable[[Attempt, AIAgentInstance], tuple[bool | None, str | None]],
    ) -> None:
        if attempt.state in (AttemptState.SENDING, AttemptState.NOT_PLACED, AttemptState.REFUSED):
            attempt.state = AttemptState.PLACED  # it exists: adopt it
            attempt.error = None
        attempt.channel_id = attempt.channel_id or instance.channel_id
        attempt.status = str(instance.status) if instance.status is not None else None
        terminal = instance.status is not None and instance.status.is_terminal
        if terminal and attempt.state is not AttemptState.FINISHED:
            attempt.state = AttemptState.FINISHED
            attempt.finished_at = now
            attempt.joined, attempt.answered_at = joined(attempt, instance)

    def active(self) -> list[Attempt]:
        """Return the attempts that hold (or may hold) one of the agent's call slots."""
        return [a for a in self.attempts.values() if a.state in (AttemptState.SENDING, AttemptState.PLACED)]


def iso_epoch(epoch: float | None) -> str | None:
    """Return epoch seconds as ISO-8601 UTC (``Z``), or None."""
    from datetime import datetime, timezone

    from airflow_provider_ice.api.validation import iso

    return None if epoch is None else iso(datetime.fromtimestamp(epoch, timezone.utc))


def outcome_of(attempt: Attempt) -> str:
    """Return the attempt's outcome for the results.

    One of ``reached``, ``not_reached``, ``unknown``, ``refused``, ``not_placed``, ``in_progress``.
    """
    if attempt.state is AttemptState.FINISHED:
        return {True: "reached", False: "not_reached"}.get(attempt.joined, "unknown")  # type: ignore[arg-type]
    if attempt.state is AttemptState.REFUSED:
        return "refused"
    if attempt.state is AttemptState.NOT_PLACED:
        return "not_placed"
    return "in_progress"
