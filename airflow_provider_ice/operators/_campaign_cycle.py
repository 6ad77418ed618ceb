"""One pass of a campaign on the worker: reconcile, place what is due, then finish or say how to wait.

:class:`CampaignCycle` is built on every start and resume of the task (a resumed task is a new
operator object), reads the recipients and the checkpoint, and :meth:`CampaignCycle.step` does one
pass. The scheduling decisions are :func:`airflow_provider_ice.campaign.plan.decide`'s.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api.correlation import embed_correlation_id, make_correlation_id
from airflow_provider_ice.api.errors import (
    IceApiError,
    IceAuthError,
    IceConcurrencyLimitError,
    IceOutcomeUnknownError,
    IceServerError,
    IceThrottlingError,
)
from airflow_provider_ice.api.waiting import WINDOW_MARGIN
from airflow_provider_ice.campaign.ledger import (
    CHUNK_SIZE,
    Attempt,
    AttemptState,
    Ledger,
    attempt_correlation_id,
    iso_epoch,
)
from airflow_provider_ice.campaign.plan import Next, decide
from airflow_provider_ice.campaign.recipients import Recipient, RecipientSpec, prepare
from airflow_provider_ice.campaign.results import result_rows, summarise

from ._campaign_io import Checkpoint, JoinedProbe, campaign_client, list_campaign_instances, read_recipients

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ice.triggers.campaign import IceCampaignTrigger

    from .campaign import IceAgentCallCampaignOperator

log = logging.getLogger(__name__)

#: The write-ahead record promises that its sends happen within this many seconds of it.
SEND_HORIZON = 5.0
#: While a batch is being sent, responses (InstanceIds) are checkpointed at most this often.
CHECKPOINT_EVERY = 0.25
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class StepOutcome:
    """Finished (``summary``), or wait for ``resume_after`` of ``waiting`` to finish or until ``wake_at``."""

    summary: dict[str, Any] | None = None
    waiting: list[str] = field(default_factory=list)
    resume_after: int = 0
    wake_at: float | None = None
    window_start: str = ""

    def trigger(self, operator: IceAgentCallCampaignOperator) -> IceCampaignTrigger:
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

    def __init__(self, operator: IceAgentCallCampaignOperator, context: Context) -> None:
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
        ti = context["ti"]
        self.campaign_id = operator.campaign_id or make_correlation_id(
            ti.dag_id, ti.run_id, ti.task_id, ti.map_index
        )
        self.checkpoint = Checkpoint(context)
        ledger, self.extra = self.checkpoint.load(self.campaign_id)
        now = time.time()
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
        self.probe = JoinedProbe(self.client, operator.call_type, operator.hook.download_options())
        self._next_send = time.monotonic()
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

    # -- one pass -------------------------------------------------------------------------------

    def step(self) -> StepOutcome:
        self.reconcile()
        now = time.time()
        calls, later = self._plan(now)
        hold = float(self.extra.get("hold_until") or 0)
        if hold > now:
            later.append(hold)
        else:
            free = self.op.max_active_calls - len(self.ledger.active())
            if calls and free > 0:
                self._place(calls[:free])
                calls, later = self._plan(time.time())
        active = self.ledger.active()
        self.checkpoint.save(self.ledger, **self.extra)
        if not active and not later and not calls:
            return StepOutcome(summary=self._finish())
        # A redial or window coming due matters only if a slot will be free for it: with more calls
        # due than free slots, finished calls (which the trigger reports) are what wakes the task.
        wake = [*later] if len(calls) < self.op.max_active_calls - len(active) else []
        wake += [
            (a.sent_by or 0) + self.op.lookup_tolerance for a in active if a.state is AttemptState.SENDING
        ]
        wake += [(a.sent_by or 0) + self.op.not_found_timeout for a in active if a.status is None]
        # With calls still due, resume as soon as a quarter of the slots (or all that are due) free up.
        need = min(len(calls), max(1, self.op.max_active_calls // 4)) if calls else len(active)
        log.info(
            "Campaign %s: %d call(s) in progress, %d due, %d waiting for their time",
            self.campaign_id,
            len(active),
            len(calls),
            len(later),
        )
        return StepOutcome(
            waiting=[a.correlation_id for a in active],
            resume_after=max(1, need),
            wake_at=min(wake) if wake else None,
            window_start=iso_epoch(self.ledger.started_at - WINDOW_MARGIN.total_seconds()) or "",
        )

    def reconcile(self) -> None:
        """Bring the ledger up to date with the listing, adopting listed attempts it does not know."""
        listed = list_campaign_instances(self.client, self.op.agent_id, self.ledger, self.expected)
        unknown = [self.expected[cid] for cid in listed if cid not in self.ledger.attempts]
        if unknown:
            log.info("Adopting %d listed call(s) missing from the checkpoint", len(unknown))
            self.ledger.open_chunk(unknown, sent_by=self.ledger.started_at)
        now = time.time()
        self.ledger.reconcile(listed, now, self.op.lookup_tolerance, self.probe)
        for attempt in self.ledger.active():
            unlisted = attempt.state is AttemptState.PLACED and attempt.status is None
            if unlisted and now >= (attempt.sent_by or 0) + self.op.not_found_timeout:
                attempt.state = AttemptState.FINISHED
                attempt.finished_at = now
                attempt.error = "accepted by the service but never listed within not_found_timeout"
                self.ledger.dirty.add(attempt.chunk)

    def _plan(self, now: float) -> tuple[list[tuple[Recipient, int]], list[float]]:
        by_key = self.ledger.by_key()
        calls: list[tuple[Recipient, int]] = []
        later: list[float] = []
        for recipient in self.recipients:
            decision = decide(
                by_key.get(recipient.key, []),
                now,
                policy=self.op.policy,
                window=self.op.window,
                tz=recipient.timezone or self.op.default_timezone,
            )
            if decision.next is Next.CALL:
                calls.append((recipient, decision.number))
            elif decision.next is Next.LATER and decision.at is not None:
                later.append(decision.at)
        return calls, later

    # -- placing --------------------------------------------------------------------------------

    def _place(self, calls: list[tuple[Recipient, int]]) -> None:
        interval = 1.0 / self.op.calls_per_second
        for start in range(0, len(calls), CHUNK_SIZE):
            batch = calls[start : start + CHUNK_SIZE]
            attempts = self.ledger.open_chunk(
                [(r.key, n) for r, n in batch], sent_by=time.time() + SEND_HORIZON
            )
            self.checkpoint.save(self.ledger, **self.extra)  # write-ahead, before any of them is sent
            saved = time.monotonic()
            for index, ((recipient, _), attempt) in enumerate(zip(batch, attempts, strict=True)):
                delay = self._next_send - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._next_send = max(self._next_send, time.monotonic()) + interval
                if time.time() > (attempt.sent_by or 0) - 0.5:
                    horizon = time.time() + SEND_HORIZON
                    for unsent in attempts[index:]:
                        unsent.sent_by = horizon
                    self.ledger.dirty.add(attempt.chunk)
                    self.checkpoint.save(self.ledger, **self.extra)
                if not self._send(recipient, attempt):
                    for unsent in attempts[index + 1 :]:
                        unsent.state, unsent.retry_at = AttemptState.NOT_PLACED, attempt.retry_at
                    self.checkpoint.save(self.ledger, **self.extra)
                    return
                if time.monotonic() - saved >= CHECKPOINT_EVERY:
                    self.checkpoint.save(self.ledger, **self.extra)
                    saved = time.monotonic()
            self.checkpoint.save(self.ledger, **self.extra)

    def _send(self, recipient: Recipient, attempt: Attempt) -> bool:
        """Place one attempt; False when throttled or the agent is full (stop placing for now)."""
        user_data = embed_correlation_id(recipient.user_data, attempt.correlation_id)
        client = self.client
        self.ledger.dirty.add(attempt.chunk)
        try:
            if self.op.call_type == "phone":
                response: Any = client.start_ai_agent_outbound_call(
                    self.op.agent_id,
                    called_number=recipient.called_number or "",
                    caller_number=self.op.caller_number or "",
                    config=self.op.outbound_config,
                    user_data=user_data,
                )
            else:
                user_id = recipient.fields.get(self.op.user_id_field) if self.op.user_id_field else None
                # The Token stays a SecretStr in the response and is dropped here: nobody joins a
                # campaign's app call through this task (see campaign_client on masking).
                response = client.generate_ai_agent_call(
                    self.op.agent_id, user_id=None if user_id is None else str(user_id), user_data=user_data
                )
                attempt.channel_id = response.channel_id
        except (IceOutcomeUnknownError, IceServerError) as error:
            log.warning("Outcome of %s unknown (%s): the listing will tell", attempt.correlation_id, error)
            return True
        except (IceThrottlingError, IceConcurrencyLimitError) as error:
            # Throttled, or the agent is full (a smaller concurrent-call cap than max_active_calls):
            # nothing was created, so the attempt is placed again once the pause is over.
            attempt.state = AttemptState.NOT_PLACED
            attempt.retry_at = time.time() + max(1.0, error.retry_after or 0.0)
            log.warning("%s placing %s: pausing placement", type(error).__name__, attempt.correlation_id)
            return False
        except IceAuthError:
            raise
        except IceApiError as error:
            attempt.state, attempt.error = AttemptState.REFUSED, str(error)
            log.warning("Call to recipient %r refused: %s", recipient.key, error)
            return True
        attempt.state = AttemptState.PLACED
        attempt.instance_id = response.instance_id
        return True

    # -- results --------------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        from airflow_provider_ice import storage

        rows = result_rows(
            self.recipients, self.rejected, self.ledger, agent_id=self.op.agent_id, kind=self.op.call_type
        )
        summary = summarise(rows, recipients=len(self.recipients) + len(self.rejected))
        summary.update(campaign_id=self.campaign_id, agent_id=self.op.agent_id, call_type=self.op.call_type)
        final = self._partition()
        with storage.staged_partition(final) as staging:
            with (staging / RESULTS_FILE).open("w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, sort_keys=True) + "\n")
            with (staging / SUMMARY_FILE).open("w", encoding="utf-8") as handle:
                json.dump(summary, handle, indent=2, sort_keys=True)
            summary["uri"], summary["version"] = storage.commit_partition(staging, final)
        log.info("Campaign %s done: %s", self.campaign_id, json.dumps(summary, sort_keys=True))
        return summary

    def _partition(self) -> Any:
        from airflow_provider_ice import storage

        root = (
            self.op.destination if self.op.destination not in (None, "") else storage.data_dir() / "campaigns"
        )
        ti = self.context["ti"]
        parts = [f"dag_id={ti.dag_id}", f"task_id={ti.task_id}", f"run_id={_safe(ti.run_id)}"]
        if ti.map_index is not None and ti.map_index >= 0:
            parts.append(f"map_index={ti.map_index}")
        target = storage.resolve(root, self.op.destination_conn_id)
        for part in parts:
            target = target / part
        return target


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", text)


__all__ = ["CampaignCycle", "StepOutcome"]
