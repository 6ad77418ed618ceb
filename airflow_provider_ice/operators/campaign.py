"""``IceAgentCallCampaignOperator``: the calls of a whole outbound campaign from one task instance."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.validation import positive_seconds
from airflow_provider_ice.campaign.plan import CallingWindow, RedialPolicy
from airflow_provider_ice.exceptions import IceAgentCallError, IceCampaignInputError, IceTriggerEventError

from ._campaign_cycle import CampaignCycle

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ice.hooks.ice import IceHook

CALL_TYPES = ("app", "phone")


class IceAgentCallCampaignOperator(BaseOperator):
    """Place and follow the calls of a whole campaign, each recipient and attempt exactly once.

    Recipients come from a list (or an XCom, e.g. ``recipients=upstream.output``) or a JSONL/CSV file
    at any ``ObjectStoragePath``. Each attempt is its own call (GenerateAIAgentCall for ``app``,
    StartAIAgentOutboundCall for ``phone``) whose UserData carries its own correlation id under
    ``AirflowCorrelationId``. The worker places calls while fewer than ``max_active_calls`` of its
    calls are not Finished (counted from the listing, swept every ``poll_interval`` while placing),
    at most ``calls_per_second``, only inside the recipient's local ``calling_window``. It keeps
    placing for as long as calls are due, waits up to 10 s on the worker for a free slot, and
    otherwise defers: the triggerer follows the calls through the coalesced poller and resumes the
    task when capacity frees up, a redial is due or the window opens (no worker slot held while
    people talk). A person who never joined is called again after ``redial_after``, up to
    ``max_attempts`` calls.

    **Exactly once per recipient and attempt.** Before each batch of creating requests (at most two
    seconds of them) the batch is written ahead to the checkpoint (the task state store; without
    one, XCom, which lasts one try) with a time no send of the batch happens after; responses and
    statuses follow every few seconds. Every resume, retry included, reconciles the checkpoint with
    ListAIAgentInstance by correlation id: a listed call is adopted; an attempt whose outcome is
    unknown (a lost response, a worker killed mid-send) is looked for until ``lookup_tolerance``
    after its send and only then concluded not placed and sent again. The ids depend only on the
    campaign (``campaign_id``, by default the task instance, not the try or the run's clear number),
    the recipient key and the attempt number, so a retry or a Clear adopts what exists and never
    calls anyone twice; use a new ``campaign_id`` to call everybody again. Without a task state
    store, a retry first waits ``lookup_tolerance`` before placing anything, so that calls the
    failed try had in flight are listed by then.

    **Bad input.** A structural error (no key field, a template that does not render or names a field
    a recipient lacks, a missing phone field, a line that is not JSON) fails the task
    before any call, without retry, naming the recipient's position. An invalid phone number, an
    unknown time zone or a duplicate key is reported in that recipient's result row (``rejected``)
    and the campaign goes on.

    **Results.** ``results.jsonl`` (one row per recipient and attempt: key, correlation id, instance
    or channel id, final status, outcome, whether the person joined, times, the call log's URI with
    ``fetch_call_logs``) and ``summary.json``,
    written as one partition ``<destination>/dag_id=…/task_id=…/run_id=…`` replaced atomically. The
    return value is the summary. Whether a person joined comes from ``CallInfo`` for phone calls and
    from the call log for app calls; when it cannot be told, the attempt is not redialed.

    :param agent_id: AIAgentId. (templated)
    :param recipients: a list of dicts, or a path/URI/``ObjectStoragePath`` of a ``.jsonl`` or
        ``.csv`` file. (templated)
    :param recipient_key: the field holding each recipient's unique key. (templated)
    :param user_data_template: UserData per recipient: a dict whose strings are Jinja templates, or a
        Jinja string rendering to a JSON object; the recipient's fields are its variables (also as
        ``recipient``). Not rendered with the task's context.
    :param call_type: ``"app"`` (GenerateAIAgentCall) or ``"phone"`` (StartAIAgentOutboundCall).
    :param phone_field: for phone calls, the field holding the number to call.
    :param caller_number: for phone calls, the calling number. (templated)
    :param outbound_config: for phone calls, the AIAgentOutboundCallConfig (dict).
    :param user_id_field: for app calls, the field holding the person's UserId, if any.
    :param max_active_calls: calls of this campaign not yet Finished, at most.
    :param calls_per_second: creating requests per second, at most (the API client's own rate limiter
        applies underneath).
    :param calling_window: local hours, e.g. ``(9, 18)`` or ``"09:00-18:00"``; None: any time.
    :param timezone_field: the field holding a recipient's IANA time zone (else ``default_timezone``).
    :param default_timezone: the time zone of recipients without one.
    :param max_attempts: calls per recipient at most (redials of people who never joined + 1).
    :param redial_after: time between an unanswered call's end and the next attempt.
    :param lookup_tolerance: how long after a send of unknown outcome the listing is searched before
        concluding that no call was placed (the listing may lag).
    :param not_found_timeout: a placed call never listed this long is reported with outcome unknown.
    :param poll_interval: seconds between listing sweeps while calls are in progress.
    :param deferrable: wait in the triggerer (default from ``[operators] default_deferrable``).
    :param destination: root of the results; default ``$ICE_DATA_DIR/campaigns``. (templated)
    :param destination_conn_id: connection for an object-storage destination, recipients file or
        call-log folder.
    :param fetch_call_logs: keep every Finished call's log: downloaded once, validated and written
        to ``call_log_destination`` as ``<correlation id>.json``; its URI fills the result row's
        ``call_log_uri`` (empty otherwise, and for a log that could not be fetched).
    :param call_log_destination: the call logs' folder (local path, URI or ``ObjectStoragePath``);
        default ``$ICE_DATA_DIR/call_logs/<agent_id>``. Only with ``fetch_call_logs``. (templated)
    :param recipients_format: ``"jsonl"`` or ``"csv"``; default from the file name.
    :param campaign_id: the campaign's identity in correlation ids; default: this task instance.
        Give the same value to a later run to resume a campaign whose run was lost. (templated)
    :param lookback: with ``campaign_id`` given, how far back the first listing looks for its calls.
    :param ice_conn_id: the ``alibaba_ice`` connection. (templated)
    """

    template_fields: Sequence[str] = (
        "agent_id",
        "recipients",
        "recipient_key",
        "caller_number",
        "destination",
        "call_log_destination",
        "campaign_id",
        "ice_conn_id",
    )
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        agent_id: str,
        recipients: Any,
        recipient_key: str,
        user_data_template: dict[str, Any] | str | None = None,
        call_type: str = "app",
        phone_field: str | None = None,
        caller_number: str | None = None,
        outbound_config: dict[str, Any] | None = None,
        user_id_field: str | None = None,
        max_active_calls: int = 10,
        calls_per_second: float = 2.0,
        calling_window: Any = None,
        timezone_field: str | None = None,
        default_timezone: str = "UTC",
        max_attempts: int = 1,
        redial_after: float | timedelta = timedelta(hours=1),
        lookup_tolerance: float | timedelta = 120.0,
        not_found_timeout: float | timedelta = timedelta(minutes=10),
        poll_interval: float = 30.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        destination: Any = None,
        destination_conn_id: str | None = None,
        fetch_call_logs: bool = False,
        call_log_destination: Any = None,
        recipients_format: str | None = None,
        campaign_id: str | None = None,
        lookback: float | timedelta = timedelta(hours=24),
        ice_conn_id: str = "ice_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if call_type not in CALL_TYPES:
            raise IceValidationError("call_type", f"must be one of {list(CALL_TYPES)}, got {call_type!r}")
        if call_type == "phone" and not phone_field:
            raise IceValidationError("phone_field", "phone calls need the field holding the number to call")
        if (
            isinstance(max_active_calls, bool)
            or not isinstance(max_active_calls, int)
            or max_active_calls < 1
        ):
            raise IceValidationError("max_active_calls", f"must be an integer >= 1, got {max_active_calls!r}")
        if (
            isinstance(calls_per_second, bool)
            or not isinstance(calls_per_second, (int, float))
            or not 0 < calls_per_second < float("inf")
        ):
            raise IceValidationError(
                "calls_per_second", f"must be a finite number > 0, got {calls_per_second!r}"
            )
        self.calls_per_second = float(calls_per_second)
        self.lookup_tolerance = positive_seconds(lookup_tolerance, "lookup_tolerance", allow_zero=True)
        self.not_found_timeout = positive_seconds(not_found_timeout, "not_found_timeout")
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.lookback = positive_seconds(lookback, "lookback")
        redial_seconds = positive_seconds(redial_after, "redial_after", allow_zero=True)
        self.policy = RedialPolicy(max_attempts=max_attempts, redial_after=redial_seconds)
        self.window = CallingWindow.parse(calling_window)
        self.agent_id = agent_id
        self.recipients = recipients
        self.recipient_key = recipient_key
        self.user_data_template = user_data_template
        self.call_type = call_type
        self.phone_field = phone_field
        self.caller_number = caller_number
        self.outbound_config = outbound_config
        self.user_id_field = user_id_field
        self.max_active_calls = max_active_calls
        self.timezone_field = timezone_field
        self.default_timezone = default_timezone
        self.deferrable = deferrable
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        if not isinstance(fetch_call_logs, bool):
            raise IceValidationError("fetch_call_logs", f"must be True or False, got {fetch_call_logs!r}")
        if call_log_destination not in (None, "") and not fetch_call_logs:
            raise IceValidationError("call_log_destination", "is only used with fetch_call_logs=True")
        self.fetch_call_logs = fetch_call_logs
        self.call_log_destination = call_log_destination
        self.recipients_format = recipients_format
        self.campaign_id = campaign_id
        self.ice_conn_id = ice_conn_id

    @cached_property
    def hook(self) -> IceHook:
        """Return the ICE hook of ``ice_conn_id``."""
        from airflow_provider_ice.hooks.ice import IceHook

        return IceHook(ice_conn_id=self.ice_conn_id)

    def results_partition(self, ti: Any) -> Any:
        """Return the results partition of task instance ``ti`` under ``destination``."""
        from airflow_provider_ice import storage

        root = self.destination if self.destination not in (None, "") else storage.data_dir() / "campaigns"
        parts = [f"dag_id={ti.dag_id}", f"task_id={ti.task_id}", f"run_id={_safe(ti.run_id)}"]
        if ti.map_index is not None and ti.map_index >= 0:
            parts.append(f"map_index={ti.map_index}")
        target = storage.resolve(root, self.destination_conn_id)
        for part in parts:
            target = target / part
        return target

    def call_log_folder(self) -> Any:
        """Return where the call logs go (``call_log_destination``), or None without ``fetch_call_logs``."""
        if not self.fetch_call_logs:
            return None
        from airflow_provider_ice import storage

        if self.call_log_destination in (None, ""):
            return storage.data_dir() / "call_logs" / _safe(self.agent_id)
        return storage.resolve(self.call_log_destination, self.destination_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        """Start (or, on a retry, resume) the campaign."""
        return self._run(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: reconcile, place the next calls, defer again or finish."""
        if not isinstance(event, dict) or event.get("status") not in ("success", "error"):
            raise IceTriggerEventError(f"Trigger error: unexpected campaign event {event!r}")
        if event.get("agent_id") != self.agent_id:
            raise IceTriggerEventError(f"Trigger event for another agent: {event!r}")
        if event["status"] == "error":
            # The checkpoint holds every attempt: a retry resumes without calling anyone twice.
            raise IceAgentCallError(f"Following the campaign's calls failed: {event.get('message')}")
        return self._run(context)

    def _run(self, context: Context) -> dict[str, Any]:
        try:
            cycle = CampaignCycle(self, context)
        except IceValidationError as error:
            raise IceCampaignInputError(str(error)) from error
        try:
            while True:
                outcome = cycle.step()
                if outcome.summary is not None:
                    return outcome.summary
                if self.deferrable:
                    self.defer(trigger=outcome.trigger(self), method_name="execute_complete", timeout=None)
                pause = self.poll_interval if outcome.wake_at is None else outcome.wake_at - time.time()
                time.sleep(max(0.0, min(self.poll_interval, pause)))
        finally:
            cycle.close()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]", "_", text)


__all__ = ["IceAgentCallCampaignOperator", "IceCampaignInputError"]  # the error is re-exported
