"""The exactly-once machinery shared by the ICE call operators: place, adopt, remember, wait.

A call reaches a real person, so placing it twice is the failure that matters. The rules (also in
the README, "Exactly one call per task instance"):

* An automatic retry never places a second call: it adopts the call an earlier try placed, found
  in the task state store or, by its correlation id in ``UserData``, in ListAIAgentInstance.
* A user's Clear of this task instance asks for it to run again: an earlier call still
  ``Created``/``Executing`` is adopted and waited for; a ``Finished`` one is followed by a new call
  with a new correlation id (see :mod:`._call_store` for how a Clear is told from a retry).
* Before each creating request the attempt is written ahead to the task state store. A request
  whose outcome is unknown is looked for in the listing until ``lookup_tolerance`` has passed since
  it was sent (listings lag); only then is it taken as not placed.
* Without a correlation id or a task state store, a creating request whose outcome stays unknown
  fails the task without retry: a person must check the ICE console.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_ice.api.correlation import embed_correlation_id, make_correlation_id
from airflow_provider_ice.api.validation import (
    positive_seconds,
    require_non_empty,
    validate_flag,
    validate_int_range,
)
from airflow_provider_ice.api.waiting import (
    Action,
    InstanceTarget,
    WaitTracker,
    poll_step,
    window_after,
)
from airflow_provider_ice.exceptions import (
    IceAgentWaitTimeout,
    IceTriggerEventError,
    fail_without_retry,
    wait_failure,
)
from airflow_provider_ice.hooks.ice import IceHookMixin
from airflow_provider_ice.links import IceAIAgentInstanceLink

from ._call_placement import CallPlacementMixin
from ._call_store import STATE_KEY, CallStore, clear_generation

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


__all__ = ["CALL_XCOM_KEY", "STATE_KEY", "IceAgentCallBaseOperator"]

#: XCom key of the call record while the task is deferred.
CALL_XCOM_KEY = "ice_agent_call"


class IceAgentCallBaseOperator(CallPlacementMixin, IceHookMixin, BaseOperator):
    """Exactly-once placement, adoption and waiting shared by the ICE call operators.

    Exactly one call per task instance: an automatic retry never places a second call; a user's
    Clear of this task instance adopts an earlier call that is still ``Created``/``Executing`` and
    places a new one (new correlation id) only after the earlier one is ``Finished``. The returned
    record says which (``adopted``, ``correlation_id``). A creating request whose answer is lost
    is looked for in ListAIAgentInstance until ``lookup_tolerance`` has passed since it was sent.
    Without a correlation id (``correlation=False``) or a task state store (Airflow < 3.3) such a
    request fails the task without retry. A call adopted from the listing has no InstanceId (the
    listing carries none) and ICE has no other way to stop it: timeout and ``on_kill`` cannot stop it.

    Subclasses implement :meth:`validate_request` (checks before any request) and :meth:`send`
    (the creating API call).

    :param agent_id: AIAgentId from the IMS console. (templated)
    :param user_data: UserData: a dict (rendered, then sent as compact JSON) or a string holding a
        JSON object. The provider adds ``AirflowCorrelationId`` to it; any other value is refused
        before a request is sent unless ``correlation=False``. (templated)
    :param session_id: SessionId, your key for the conversation (ListAIAgentDialogues). (templated)
    :param ice_conn_id: The ``alibaba_ice`` connection. (templated)
    :param correlation: Put the correlation id into UserData (default True). With False, UserData
        is sent as given, a retry recognises an earlier call only through the task state store,
        and a creating request whose outcome is unknown fails the task without retry.
    :param lookup_tolerance: How long after a creating request was sent the listing may still not
        show the instance (seconds or timedelta, default 120 s). A request whose answer was lost
        counts as not placed only after this.
    :param wait_for_completion: Wait until the instance is ``Finished`` before succeeding.
    :param deferrable: Wait in the triggerer instead of holding a worker slot (default from
        ``[operators] default_deferrable``).
    :param poll_interval: Seconds between ListAIAgentInstance polls while waiting.
    :param timeout: How long to wait for ``Finished`` (seconds or timedelta). On timeout the instance
        is stopped when ``stop_on_kill`` is set, then the task fails.
    :param not_found_timeout: Fail if the instance does not show up in ListAIAgentInstance this long.
    :param max_consecutive_errors: Transient polling errors tolerated in a row while waiting.
    :param stop_on_kill: Stop the instance (StopAIAgentInstance) when the task is killed or times out.
    :param lookback: How far back a retry looks for its earlier call when the DAG run's start is
        unknown.
    :param coalesce_polls: In deferrable mode, share one ListAIAgentInstance sweep per interval with
        every task waiting on the same connection and agent in the triggerer (about one request per
        100 waiting calls; default True). False: this task's trigger polls on its own.
    """

    template_fields: Sequence[str] = ("agent_id", "user_data", "session_id", "ice_conn_id")
    template_fields_renderers = {"user_data": "json"}
    operator_extra_links = (IceAIAgentInstanceLink(),)
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        agent_id: str,
        user_data: dict[str, Any] | str | None = None,
        session_id: str | None = None,
        ice_conn_id: str = "ice_default",
        correlation: bool = True,
        lookup_tolerance: float | timedelta = timedelta(minutes=2),
        wait_for_completion: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        timeout: float | timedelta = timedelta(hours=1),
        not_found_timeout: float | timedelta = timedelta(minutes=10),
        max_consecutive_errors: int = 3,
        stop_on_kill: bool = True,
        lookback: timedelta = timedelta(hours=24),
        coalesce_polls: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.coalesce_polls = validate_flag(coalesce_polls, "coalesce_polls")
        self.agent_id = agent_id
        self.user_data = user_data
        self.session_id = session_id
        self.ice_conn_id = ice_conn_id
        self.correlation = validate_flag(correlation, "correlation")
        self.lookup_tolerance = positive_seconds(lookup_tolerance, "lookup_tolerance", allow_zero=True)
        self.wait_for_completion = validate_flag(wait_for_completion, "wait_for_completion")
        self.deferrable = validate_flag(deferrable, "deferrable")
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.timeout = positive_seconds(timeout, "timeout")
        self.not_found_timeout = positive_seconds(not_found_timeout, "not_found_timeout")
        self.max_consecutive_errors = validate_int_range(max_consecutive_errors, "max_consecutive_errors", 0)
        self.stop_on_kill = validate_flag(stop_on_kill, "stop_on_kill")
        self.lookback = timedelta(seconds=positive_seconds(lookback, "lookback"))
        self._instance_id: str | None = None

    # -- to implement -------------------------------------------------------------------------

    def validate_request(self) -> None:
        """Check the rendered parameters; raise IceValidationError before anything is sent."""

    def send(self, context: Context, user_data: Any) -> dict[str, Any]:
        """Place the call; return the record fields known from the response (see :meth:`record`)."""
        raise NotImplementedError

    # -- execute ------------------------------------------------------------------------------

    @fail_without_retry
    def execute(self, context: Context) -> dict[str, Any]:
        require_non_empty(self.agent_id, "agent_id")
        self.validate_request()
        correlation_id = self._correlation_id(context) if self.correlation else None
        user_data = embed_correlation_id(self.user_data, correlation_id)
        store = CallStore(context)
        record = self._recover(context, store, correlation_id) or self._place(
            context, store, user_data, correlation_id
        )
        self._instance_id = record.get("instance_id")
        self._remember(context, store, record)
        if not self.wait_for_completion:
            return record
        return self._wait(context, record)

    def _correlation_id(self, context: Context) -> str:
        ti = context["ti"]
        generation = clear_generation(context, getattr(self, "retries", 0))
        return make_correlation_id(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, generation)

    # -- waiting ------------------------------------------------------------------------------

    def _wait(self, context: Context, record: dict[str, Any]) -> dict[str, Any]:
        target = InstanceTarget.named_by(
            {**record, "agent_id": self.agent_id}, window_after(record["created_at"], "created_at")
        )
        now = time.time()
        end_time = now + self.timeout
        tracker = WaitTracker(target, now + self.not_found_timeout, self.max_consecutive_errors)
        # Check once before deferring: a short call may already be over.
        step = poll_step(tracker, self.hook)
        if step.action is Action.WAIT and self.deferrable:
            from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger

            # Also in XCom: the resumed task is a new operator object, and not every runner
            # (dag.test() for one) hands the defer kwargs back to execute_complete.
            context["ti"].xcom_push(key=CALL_XCOM_KEY, value=record)
            self.defer(
                trigger=IceAIAgentInstanceTrigger.for_wait(
                    tracker,
                    ice_conn_id=self.ice_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=end_time,
                    stop_on_kill=self.stop_on_kill,
                    coalesce=self.coalesce_polls,
                ),
                method_name="execute_complete",
                kwargs={"call": record},
                # The deadline is enforced by the trigger, so execute_complete runs and can stop
                # the instance; a framework deferral timeout would skip it.
                timeout=None,
            )
        while step.action is Action.WAIT:
            remaining = end_time - time.time()
            if remaining <= 0:
                if self.stop_on_kill:
                    self._stop_quietly(record.get("instance_id"))
                raise IceAgentWaitTimeout(
                    f"Agent instance of {target.describe()} did not finish within {self.timeout:.0f} s "
                    f"(last status: {tracker.last_status})"
                )
            time.sleep(min(self.poll_interval, remaining))
            step = poll_step(tracker, self.hook)
        if step.action is Action.FAIL:
            raise wait_failure(step)
        self.log.info("%s", step.message)
        return record

    @fail_without_retry
    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, call: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger: success returns the call record; timeout stops, then fails."""
        from airflow_provider_ice.triggers.agent_instance import event_failure, validate_event

        event = validate_event(event)
        call = call or self._deferred_call(context) or {}
        if call and event.get("agent_id") != call.get("agent_id"):
            raise IceTriggerEventError(f"Trigger event for another agent: {event!r}")
        if event["status"] == "success":
            self.log.info("%s", event["message"])
            return call
        if event["status"] == "timeout":
            if self.stop_on_kill:
                self._stop_quietly(call.get("instance_id") or event.get("instance_id"))
            raise IceAgentWaitTimeout(event["message"])
        # Polling failed or the instance never showed up: the call may still be running, and
        # stopping it is irreversible, so it is left alone (a retry adopts it).
        raise event_failure(event)

    def _deferred_call(self, context: Context) -> dict[str, Any] | None:
        ti = context["ti"]
        try:
            value = ti.xcom_pull(task_ids=ti.task_id, key=CALL_XCOM_KEY, map_indexes=ti.map_index)
        except Exception:
            self.log.warning("Could not read the call record from XCom", exc_info=True)
            return None
        return value if isinstance(value, dict) else None

    def on_kill(self) -> None:
        """Stop the instance (best effort, never raises) when the task is killed."""
        if self.stop_on_kill:
            self._stop_quietly(self._instance_id)

    def _stop_quietly(self, instance_id: str | None) -> None:
        if not instance_id:
            self.log.warning("Cannot stop the agent instance: its InstanceId is unknown")
            return
        try:
            self.hook.stop_ai_agent_instance(instance_id)
            self.log.info("Stopped agent instance %s", instance_id)
        except Exception:
            self.log.warning("Could not stop agent instance %s", instance_id, exc_info=True)
