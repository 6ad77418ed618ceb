"""A campaign on the worker: reconcile, place what is due for as long as it can, then finish or wait.

:class:`CampaignCycle` is built on every start and resume of the task (a resumed task is a new
operator object), reads the recipients and the checkpoint, and :meth:`CampaignCycle.step` places
until nothing more can be placed now. Who is due is decided by
:class:`~airflow_provider_ice.campaign.agenda.Agenda`; the requests go out from a
:class:`~._campaign_send.Sender` thread.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api.correlation import make_correlation_id
from airflow_provider_ice.api.waiting import WINDOW_MARGIN
from airflow_provider_ice.campaign.agenda import Agenda
from airflow_provider_ice.campaign.ledger import (
    CHUNK_SIZE,
    Attempt,
    AttemptState,
    Ledger,
    attempt_correlation_id,
    iso_epoch,
)
from airflow_provider_ice.campaign.recipients import Recipient, RecipientSpec, prepare
from airflow_provider_ice.campaign.results import result_rows, summarise

from ._campaign_io import (
    Checkpoint,
    JoinedProbe,
    campaign_client,
    list_campaign_instances,
    read_recipients,
    write_results,
)
from ._campaign_send import Placement, Sender, place_call

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ice.api.models import AIAgentInstance
    from airflow_provider_ice.triggers.campaign import IceCampaignTrigger

    from ._campaign_settings import CampaignSettings

log = logging.getLogger(__name__)

#: The write-ahead record promises that its sends happen within this many seconds of it.
SEND_HORIZON = 10.0
#: A write-ahead batch holds at most this many seconds of sends at ``calls_per_second``.
BATCH_SECONDS = 2.0
#: Responses and statuses (InstanceIds, outcomes) are checkpointed at most this often while placing:
#: a resume would learn them again from the listing, so they need not hold up the sends.
CHECKPOINT_EVERY = 2.0
#: While the sender is busy, the main thread tells who joined for at most this long at a time.
PROBE_SLICE = 0.05
#: Waiting for free slots stays on the worker (sweeping every ``poll_interval``) for at most this
#: long; a longer wait is handed to the triggerer.
CAPACITY_WAIT = 10.0


@dataclass
class StepOutcome:
    """Finished (``summary``), or wait for ``resume_after`` of ``waiting`` to finish or until ``wake_at``."""

    summary: dict[str, Any] | None = None
    waiting: list[str] = field(default_factory=list)
    resume_after: int = 0
    wake_at: float | None = None
    window_start: str = ""

    def trigger(self, operator: CampaignSettings) -> IceCampaignTrigger:
        from airflow_provider_ice.triggers.campaign import IceCampaignTrigger

        return IceCampaignTrigger(
            ice_conn_id=operator.ice_conn_id,
            agent_id=operator.agent_id,
            correlation_ids=self.waiting,
            window_start=self.window_start,
            poll_interval=operator.poll_interval,
            resume_after=self.resume_after,
            wake_at=self.wake_at,
        )


class CampaignCycle:
    """The campaign's state on the worker between a start (or resume) and the next deferral."""

    def __init__(self, operator: CampaignSettings, context: Context) -> None:
        self.op = operator
        self.context = context
        spec = RecipientSpec(
            key=operator.recipient_key,
            user_data_template=operator.user_data_template,
            phone_field=operator.phone_field if operator.call_type == "phone" else None,
            timezone_field=operator.timezone_field,
            default_timezone=operator.default_timezone,
        )
        raw = read_recipients(operator.recipients, operator.recipients_format, operator.destination_conn_id)
        # Every recipient is validated and rendered before anything is sent.
        self.recipients, self.rejected = prepare(raw, spec)
        self.by_key = {r.key: r for r in self.recipients}
        ti = context["ti"]
        self.campaign_id = operator.campaign_id or make_correlation_id(
            ti.dag_id, ti.run_id, ti.task_id, ti.map_index
        )
        self.checkpoint = Checkpoint(context)
        ledger, self.extra = self.checkpoint.load(self.campaign_id)
        now = time.time()
        #: A new ledger knows nothing: its first reconciliation reads the whole listing to adopt.
        self.fresh = ledger is None
        if ledger is None:
            ledger = Ledger(self.campaign_id, started_at=self._started_at(now))
            if getattr(ti, "try_number", 1) > 1 and not self.checkpoint.durable:
                # No record of what the failed try had in flight: let the listing catch up first.
                self.extra["hold_until"] = now + operator.lookup_tolerance
                log.warning(
                    "Retry without a task state store: placing nothing for %.0f s (lookup_tolerance) "
                    "so that calls of the failed try are listed before anyone is called",
                    operator.lookup_tolerance,
                )
        self.ledger = ledger
        self.expected = {
            attempt_correlation_id(self.campaign_id, r.key, n): (r.key, n)
            for r in self.recipients
            for n in range(1, operator.policy.max_attempts + 1)
        }
        self.client = campaign_client(operator.hook)
        self.probe = JoinedProbe(
            self.client,
            operator.call_type,
            operator.hook.download_options(),
            call_logs=operator.call_log_folder(),
        )
        self.send_client = campaign_client(operator.hook)  # the sender thread's own
        self.in_flight: set[str] = set()  # correlation ids handed to the sender, not answered yet
        self.probes: dict[str, tuple[Attempt, AIAgentInstance]] = {}  # Finished, joined not yet told
        self._submitted: collections.deque[int] = collections.deque()  # chunks handed over, in order
        self._paused_until = 0.0  # after a throttling or agent-full answer
        self.agenda = Agenda(
            self.by_key,
            self.ledger,
            policy=operator.policy,
            window=operator.window,
            default_timezone=operator.default_timezone,
        )
        self._swept = -math.inf
        self._saved = time.monotonic()
        log.info(
            "Campaign %s: %d recipient(s), %d rejected, %d attempt(s) on record",
            self.campaign_id,
            len(self.recipients),
            len(self.rejected),
            len(self.ledger.attempts),
        )

    def _started_at(self, now: float) -> float:
        """Where a new ledger's listing window starts: the run's start, or ``lookback`` ago.

        A campaign bound to this task instance cannot have placed calls before its run started; a
        ``campaign_id`` given by the user may have been run before (a rerun after a lost worker).
        """
        dag_run = self.context.get("dag_run")
        started = getattr(dag_run, "start_date", None)
        if isinstance(started, datetime) and not self.op.campaign_id:
            return min(now, started.timestamp())
        return now - self.op.lookback

    def close(self) -> None:
        self.probe.close()
        self.client.close()
        self.send_client.close()

    # -- one pass -------------------------------------------------------------------------------

    def step(self) -> StepOutcome:
        """Reconcile, then place calls for as long as any can be placed; finish or say how to wait.

        The worker keeps placing while calls are due and slots free up (the listing is swept every
        ``poll_interval`` meanwhile); a wait for free slots stays on the worker for at most
        :data:`CAPACITY_WAIT`. Any other wait (the last calls' outcomes, a redial or the calling
        window) is the triggerer's. Sends run in the :class:`~._campaign_send.Sender` thread.
        """
        self.reconcile()
        self.agenda.refresh(self.by_key, time.time())
        sender = Sender(self._send, self.op.calls_per_second)
        try:
            self._loop(sender)
        finally:
            sender.close()
            self._drain(sender)
        self._probe(None)
        return self._outcome()

    def _loop(self, sender: Sender) -> None:
        blocked_since: float | None = None
        while True:
            self._drain(sender)
            now = time.time()
            self.agenda.advance(now)
            if time.monotonic() - self._swept >= self.op.poll_interval and self.ledger.active():
                self.reconcile()
            hold = max(float(self.extra.get("hold_until") or 0), self._paused_until)
            # Calls started and not seen Finished; the sender starts at most the free slots.
            sent, waiting = sender.counts()
            free = self.op.max_active_calls - (len(self.ledger.active()) - waiting)
            sender.allow(sent, free)
            if self.agenda.due and hold <= now and free > 0 and sender.in_flight < 2:
                self._place(sender, self.agenda.take(self._batch_size(), now))
                blocked_since = None
            elif sender.in_flight and self.probes:
                self._probe(PROBE_SLICE)  # while the sender has a batch in hand
                self._drain(sender)
            elif sender.in_flight:
                self._drain(sender, wait=self._swept + self.op.poll_interval - time.monotonic())
            elif self.agenda.due and hold <= now + CAPACITY_WAIT:
                # Paused (a throttling answer) until ``hold``, or full until a sweep frees a slot.
                blocked_since = now if blocked_since is None else blocked_since
                sweep_at = now + self._swept + self.op.poll_interval - time.monotonic()
                until = hold if hold > now else sweep_at
                if until - blocked_since > CAPACITY_WAIT:
                    return
                if self.probes:
                    self._probe(max(0.0, until - now))
                else:
                    time.sleep(max(0.0, until - now))
            else:
                return
            if time.monotonic() - self._saved >= CHECKPOINT_EVERY:
                self._save()

    def _outcome(self) -> StepOutcome:
        self._save()
        active = self.ledger.active()
        later = list(self.agenda.later.values())
        hold = float(self.extra.get("hold_until") or 0)
        if hold > time.time():
            later.append(hold)
        if not active and not later and not self.agenda.due:
            return StepOutcome(summary=self._finish())
        # A redial or window coming due matters only if a slot will be free for it: with more calls
        # due than free slots, finished calls (which the trigger reports) are what wakes the task.
        wake = later if len(self.agenda.due) < self.op.max_active_calls - len(active) else []
        wake += [
            (a.sent_by or 0) + self.op.lookup_tolerance for a in active if a.state is AttemptState.SENDING
        ]
        wake += [(a.sent_by or 0) + self.op.not_found_timeout for a in active if a.status is None]
        # With calls still due, resume as soon as a quarter of the slots (or all that are due) free up.
        due = len(self.agenda.due)
        need = min(due, max(1, self.op.max_active_calls // 4)) if due else len(active)
        log.info(
            "Campaign %s: %d call(s) in progress, %d due, %d waiting for their time",
            self.campaign_id,
            len(active),
            len(self.agenda.due),
            len(later),
        )
        return StepOutcome(
            waiting=[a.correlation_id for a in active],
            resume_after=max(1, need),
            wake_at=min(wake) if wake else None,
            window_start=iso_epoch(self.ledger.started_at - WINDOW_MARGIN.total_seconds()) or "",
        )

    def _save(self) -> None:
        self.checkpoint.save(self.ledger, **self.extra)
        self._saved = time.monotonic()

    def reconcile(self) -> None:
        """Bring the ledger up to date with the listing, adopting listed attempts it does not know.

        A new ledger reads the whole window. Otherwise only the calls in progress are looked for,
        newest first, up to the first call of ours sent before all of them.
        """
        active = self.ledger.active()
        if self.fresh:
            listed = list_campaign_instances(
                self.client, self.op.agent_id, self.expected, start=self.ledger.started_at
            )
        else:
            oldest = min((a.sent_by or 0 for a in active), default=time.time())
            attempts = self.ledger.attempts

            def is_older(cid: str) -> bool:
                attempt = attempts.get(cid)
                return attempt is not None and (attempt.sent_by or 0) < oldest

            listed = list_campaign_instances(
                self.client,
                self.op.agent_id,
                self.expected,
                start=max(self.ledger.started_at, oldest - SEND_HORIZON),
                wanted=[a.correlation_id for a in active],
                is_older=is_older,
            )
        self._swept = time.monotonic()
        unknown = [self.expected[cid] for cid in listed if cid not in self.ledger.attempts]
        if unknown:
            log.info("Adopting %d listed call(s) missing from the checkpoint", len(unknown))
            self.ledger.open_chunk(unknown, sent_by=self.ledger.started_at)
        self.fresh = False
        now = time.time()
        tolerance = self.op.lookup_tolerance
        changed = self.ledger.reconcile(listed, now, tolerance, self._probe_later, self.in_flight)
        for attempt in self.ledger.active():
            unlisted = attempt.state is AttemptState.PLACED and attempt.status is None
            if unlisted and now >= (attempt.sent_by or 0) + self.op.not_found_timeout:
                attempt.state = AttemptState.FINISHED
                attempt.finished_at = now
                attempt.error = "accepted by the service but never listed within not_found_timeout"
                self.ledger.dirty.add(attempt.chunk)
                changed.add(attempt.key)
        self.agenda.refresh(changed, now)

    def _probe_later(self, attempt: Attempt, instance: AIAgentInstance) -> tuple[bool | None, str | None]:
        """Queue a Finished call for :meth:`_probe` (placing comes first); unknown until then."""
        self.probes[attempt.correlation_id] = (attempt, instance)
        return None, None

    def _probe(self, budget: float | None) -> None:
        """Tell whether the people of queued Finished calls joined (for ``budget`` seconds; None: all)."""
        deadline = None if budget is None else time.monotonic() + budget
        keys = []
        while self.probes and (deadline is None or time.monotonic() < deadline):
            attempt, instance = self.probes.pop(next(iter(self.probes)))
            attempt.joined, attempt.answered_at = self.probe(attempt, instance)
            self.ledger.dirty.add(attempt.chunk)
            keys.append(attempt.key)
        self.agenda.refresh(keys, time.time())  # a redial may now be due

    def _batch_size(self) -> int:
        by_rate = math.ceil(self.op.calls_per_second * BATCH_SECONDS)
        return max(1, min(CHUNK_SIZE, by_rate, self.op.max_active_calls))

    # -- placing --------------------------------------------------------------------------------

    def _place(self, sender: Sender, batch: list[tuple[Recipient, int]]) -> None:
        """Write the batch ahead to the checkpoint, then hand it to the sender."""
        if not batch:
            return
        sent_by = time.time() + SEND_HORIZON
        attempts = self.ledger.open_chunk([(r.key, n) for r, n in batch], sent_by=sent_by)
        chunk = attempts[0].chunk
        self.checkpoint.save_chunks(self.ledger, [chunk], **self.extra)  # before any of them is sent
        self.in_flight.update(a.correlation_id for a in attempts)
        self._submitted.append(chunk)
        sender.submit([(r, a) for (r, _), a in zip(batch, attempts, strict=True)], sent_by)

    def _drain(self, sender: Sender, wait: float | None = None) -> None:
        """Apply the sender's reports; with ``wait``, until a batch is done or ``wait`` seconds passed."""
        deadline = None if wait is None else time.monotonic() + wait
        changed: set[str] = set()
        done: list[int] = []
        while True:
            report = sender.next_report(None if deadline is None else deadline - time.monotonic())
            if report is None:
                break
            if report.error is not None:
                raise report.error
            if report.done:
                sender.in_flight -= 1
                done.append(self._submitted.popleft())
                deadline = None  # a batch slot is free: apply what is there and go on
            elif report.attempt is not None and report.placement is not None:
                self.in_flight.discard(report.attempt.correlation_id)
                self.ledger.record(report.attempt, report.placement)
                if report.placement.retry_at is not None:
                    self._paused_until = max(self._paused_until, report.placement.retry_at)
                changed.add(report.attempt.key)
        answered = [chunk for chunk in done if chunk in self.ledger.dirty]
        if answered:  # a batch's answers (InstanceIds)
            self.checkpoint.save_chunks(self.ledger, answered, **self.extra)
        self.agenda.refresh(changed, time.time())

    def _send(self, recipient: Recipient, attempt: Attempt) -> Placement:
        """Send one attempt's creating request (in the sender thread; the ledger is not touched)."""
        return place_call(self.send_client, self.op, recipient, attempt)

    # -- results --------------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        rows = result_rows(
            self.recipients, self.rejected, self.ledger, agent_id=self.op.agent_id, kind=self.op.call_type
        )
        summary = summarise(rows, recipients=len(self.recipients) + len(self.rejected))
        summary.update(campaign_id=self.campaign_id, agent_id=self.op.agent_id, call_type=self.op.call_type)
        write_results(self.op.results_partition(self.context["ti"]), rows, summary)
        log.info("Campaign %s done: %s", self.campaign_id, json.dumps(summary, sort_keys=True))
        return summary


__all__ = ["CampaignCycle", "StepOutcome"]
