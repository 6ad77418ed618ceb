"""What each recipient needs next, kept up to date incrementally: due now, due later, or nothing.

A campaign of tens of thousands of recipients cannot decide for all of them on every pass. The
:class:`Agenda` decides for everyone once (:meth:`Agenda.refresh` of all keys), then only again for
the recipients whose attempts changed and for those whose time has come. The decisions are
:func:`~airflow_provider_ice.campaign.plan.decide`'s. Nothing here imports Airflow.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping

from .ledger import Ledger
from .plan import CallingWindow, Decision, Next, RedialPolicy, decide
from .recipients import Recipient


class Agenda:
    """The recipients due now (in input order, then as they came due) and when the others come due.

    :param recipients: by key.
    :param ledger: the attempts so far (read when deciding).
    """

    def __init__(
        self,
        recipients: Mapping[str, Recipient],
        ledger: Ledger,
        *,
        policy: RedialPolicy,
        window: CallingWindow | None,
        default_timezone: str,
    ) -> None:
        self.recipients = recipients
        self.ledger = ledger
        self.policy = policy
        self.window = window
        self.default_timezone = default_timezone
        self.due: dict[str, int] = {}  # key -> attempt number to place now
        self.later: dict[str, float] = {}  # key -> epoch seconds its next attempt comes due
        self._heap: list[tuple[float, str]] = []

    def decide(self, key: str, now: float) -> Decision:
        recipient = self.recipients[key]
        return decide(
            self.ledger.attempts_of(key),
            now,
            policy=self.policy,
            window=self.window,
            tz=recipient.timezone or self.default_timezone,
        )

    def refresh(self, keys: Iterable[str], now: float) -> None:
        """Decide again what the recipients of ``keys`` need next."""
        for key in keys:
            if key not in self.recipients:
                continue
            decision = self.decide(key, now)
            self.due.pop(key, None)
            self.later.pop(key, None)
            if decision.next is Next.CALL:
                self.due[key] = decision.number
            elif decision.next is Next.LATER and decision.at is not None:
                self.later[key] = decision.at
                heapq.heappush(self._heap, (decision.at, key))

    def advance(self, now: float) -> None:
        """Decide again for the recipients whose time has come by ``now``."""
        keys = []
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self.later.get(key) == at:  # else an outdated entry
                keys.append(key)
        self.refresh(keys, now)

    def take(self, count: int, now: float) -> list[tuple[Recipient, int]]:
        """Take up to ``count`` due calls, each decided again at ``now`` (a window may have closed)."""
        taken: list[tuple[Recipient, int]] = []
        for key in list(itertools.islice(self.due, count)):
            del self.due[key]
            decision = self.decide(key, now)
            if decision.next is Next.CALL:
                taken.append((self.recipients[key], decision.number))
            else:
                self.refresh([key], now)
        return taken
