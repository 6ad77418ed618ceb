"""The campaign's sending thread: paced creating requests, while the worker's main thread does the rest.

The main thread writes each batch ahead to the checkpoint and only then hands it over (so the
write-ahead of the next batch overlaps the sends of this one); it also sweeps the listing, fetches
call logs and checkpoints progress. The sender only sends: it never touches the ledger, and reports
each attempt's :class:`~airflow_provider_ice.campaign.ledger.Placement` (or that it was not sent)
back through a queue, which the main thread applies. A batch is never sent after the time its
write-ahead record promised (``sent_by``): what is left then is returned unsent.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api.correlation import embed_correlation_id
from airflow_provider_ice.api.errors import (
    IceApiError,
    IceAuthError,
    IceConcurrencyLimitError,
    IceOutcomeUnknownError,
    IceServerError,
    IceThrottlingError,
)
from airflow_provider_ice.api.ratelimit import TokenBucket
from airflow_provider_ice.campaign.ledger import Attempt, AttemptState, Placement

if TYPE_CHECKING:
    from airflow_provider_ice.api.client import IceClient
    from airflow_provider_ice.campaign.recipients import Recipient

    from ._campaign_settings import CampaignSettings

log = logging.getLogger(__name__)

#: A send is not started later than this many seconds before its batch's ``sent_by``.
HORIZON_MARGIN = 0.5

Batch = list[tuple["Recipient", Attempt]]


def place_call(client: IceClient, op: CampaignSettings, recipient: Recipient, attempt: Attempt) -> Placement:
    """Send one attempt's creating request; return what its answer says (the attempt is not changed)."""
    user_data = embed_correlation_id(recipient.user_data, attempt.correlation_id)
    channel_id = None
    try:
        if op.call_type == "phone":
            response: Any = client.start_ai_agent_outbound_call(
                op.agent_id,
                called_number=recipient.called_number or "",
                caller_number=op.caller_number or "",
                config=op.outbound_config,
                user_data=user_data,
            )
        else:
            user_id = recipient.fields.get(op.user_id_field) if op.user_id_field else None
            # The Token stays a SecretStr in the response and is dropped here: nobody joins a
            # campaign's app call through this task (see campaign_client on masking).
            response = client.generate_ai_agent_call(
                op.agent_id, user_id=None if user_id is None else str(user_id), user_data=user_data
            )
            channel_id = response.channel_id
    except (IceOutcomeUnknownError, IceServerError) as error:
        log.warning("Outcome of %s unknown (%s): the listing will tell", attempt.correlation_id, error)
        return Placement(AttemptState.SENDING)
    except (IceThrottlingError, IceConcurrencyLimitError) as error:
        # Throttled, or the agent is full (a smaller concurrent-call cap than max_active_calls):
        # nothing was created, so the attempt is placed again once the pause is over.
        log.warning("%s placing %s: pausing placement", type(error).__name__, attempt.correlation_id)
        return Placement(AttemptState.NOT_PLACED, retry_at=time.time() + max(1.0, error.retry_after or 0.0))
    except IceAuthError:
        raise
    except IceApiError as error:
        log.warning("Call to recipient %r refused: %s", recipient.key, error)
        return Placement(AttemptState.REFUSED, error=str(error))
    return Placement(AttemptState.PLACED, instance_id=response.instance_id, channel_id=channel_id)


@dataclass(frozen=True)
class Report:
    """One message from the sender: an attempt's placement, an unsent attempt, a finished batch, an error."""

    attempt: Attempt | None = None
    placement: Placement | None = None
    done: bool = False
    error: BaseException | None = None


class Sender:
    """Send batches in a thread at ``calls_per_second`` (the connection's rate limit applies underneath).

    :param send: sends one attempt (the cycle's ``_send``) and returns its placement.
    :param calls_per_second: the campaign's own pace.
    """

    def __init__(self, send: Callable[[Recipient, Attempt], Placement], calls_per_second: float) -> None:
        self._send = send
        self._pace = TokenBucket(calls_per_second)
        self._jobs: queue.Queue[tuple[Batch, float] | None] = queue.Queue()
        self.reports: queue.Queue[Report] = queue.Queue()
        self.in_flight = 0  # batches submitted and not reported done
        self.waiting = 0  # attempts handed over, neither started nor given back
        self.sent = 0  # attempts whose request was started
        self._limit = math.inf  # the sender starts no request beyond this count
        self._allowed = threading.Condition()
        self._thread: threading.Thread | None = None

    def allow(self, sent: int, slots: int) -> None:
        """Let ``slots`` more calls start than the ``sent`` counted with them (:meth:`counts`).

        The main thread counts the calls in progress (sent and not seen Finished) after every sweep
        and answer; the sender waits for a slot before each request, so a batch written ahead need
        not fit in the free slots when it is handed over.
        """
        with self._allowed:
            self._limit = sent + slots
            self._allowed.notify_all()

    def counts(self) -> tuple[int, int]:
        """Return (attempts started, attempts handed over and neither started nor given back)."""
        with self._allowed:
            return self.sent, self.waiting

    def submit(self, batch: Batch, sent_by: float) -> None:
        """Queue a batch already written ahead; none of it is sent after ``sent_by``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ice-campaign-sender", daemon=True)
            self._thread.start()
        self.in_flight += 1
        with self._allowed:
            self.waiting += len(batch)
        self._jobs.put((batch, sent_by))

    def next_report(self, timeout: float | None) -> Report | None:
        """Return the next report (waiting up to ``timeout`` seconds; None: do not wait), or None."""
        try:
            if timeout is None:
                return self.reports.get_nowait()
            return self.reports.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the thread after the queued batches (their reports stay readable)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _give_back(self, attempt: Attempt) -> None:
        """Report ``attempt`` as not sent: it is placed again later, with a new write-ahead record."""
        self._settle(started=False)
        self.reports.put(Report(attempt, Placement(AttemptState.NOT_PLACED)))

    def _settle(self, *, started: bool) -> None:
        with self._allowed:
            self.waiting -= 1
            self.sent += started

    def _slot(self, deadline: float) -> bool:
        """Wait until a call may start (True), or until epoch ``deadline`` has passed (False)."""
        with self._allowed:
            while self.sent >= self._limit:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._allowed.wait(remaining)
            return True

    def _run(self) -> None:
        stopped = failed = False
        while (job := self._jobs.get()) is not None:
            batch, sent_by = job
            for recipient, attempt in batch:
                if stopped:
                    self._give_back(attempt)
                    continue
                if not self._slot(sent_by - HORIZON_MARGIN):
                    self._give_back(attempt)  # no free slot before what the record promised
                    continue
                delay, _ticket = self._pace.reserve()
                if delay > 0:
                    time.sleep(delay)
                if time.time() > sent_by - HORIZON_MARGIN:
                    self._give_back(attempt)  # past what the write-ahead record promised
                    continue
                self._settle(started=True)
                try:
                    placement = self._send(recipient, attempt)
                except BaseException as error:  # the main thread fails the task with it
                    self.reports.put(Report(error=error))
                    stopped = failed = True  # nothing more is sent, whatever is handed over later
                    continue
                self.reports.put(Report(attempt, placement))
                if placement.state is AttemptState.NOT_PLACED:
                    stopped = True  # throttled or the agent is full: the rest waits for the pause
            self.reports.put(Report(done=True))
            # After a pause-worthy answer, batches already queued go back unsent too.
            stopped = failed or (stopped and not self._jobs.empty())


__all__ = ["Placement", "Report", "Sender", "place_call"]
