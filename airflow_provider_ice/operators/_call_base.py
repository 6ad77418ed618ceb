"""The exactly-once machinery shared by the ICE call operators: place, adopt, remember, wait.

A call reaches a real person, so placing it twice is the failure that matters. Each task instance
gets a correlation id (:func:`~airflow_provider_ice.api.correlation.make_correlation_id`) that is
put into ``UserData`` under ``AirflowCorrelationId``. ListAIAgentInstance echoes UserData, so a
retried task, or one whose creating call's response was lost, finds the instance it already
created and adopts it instead of calling again. Waiting is done with the same rules as
:class:`~airflow_provider_ice.sensors.agent_instance.IceAIAgentInstanceSensor`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf

from airflow_provider_ice.api.correlation import embed_correlation_id, make_correlation_id
from airflow_provider_ice.api.errors import IceOutcomeUnknownError
from airflow_provider_ice.api.validation import (
    iso,
    parse_time,
    positive_seconds,
    require_non_empty,
    utcnow,
    validate_int_range,
)
from airflow_provider_ice.api.waiting import (
    WINDOW_MARGIN,
    Action,
    InstanceTarget,
    WaitTracker,
    find_instance,
    poll_step,
)
from airflow_provider_ice.exceptions import (
    IceAgentCallError,
    IceAgentWaitTimeout,
    IceTriggerEventError,
    fail_without_retry,
    wait_failure,
)
from airflow_provider_ice.hooks.ice import IceHookMixin
from airflow_provider_ice.links import IceAIAgentInstanceLink, console_url
from airflow_provider_ice.task_state import load_state, save_state

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.sdk import Context

    from airflow_provider_ice.api.models import AIAgentInstance

#: task_state_store key holding the call record, so a retry adopts the call even without UserData.
STATE_KEY = "ice_agent_call"
#: XCom key of the call record while the task is deferred.
CALL_XCOM_KEY = "ice_agent_call"
#: Lookups after an "outcome unknown" error: the service may list a new instance with a delay.
UNKNOWN_OUTCOME_LOOKUPS = 3


class IceAgentCallBaseOperator(IceHookMixin, BaseOperator):
    """Exactly-once placement, adoption and waiting shared by the ICE call operators.

    Subclasses implement :meth:`validate_request` (checks before any request) and :meth:`send`
    (the creating API call).

    :param agent_id: AIAgentId from the IMS console. (templated)
    :param user_data: UserData: a dict (rendered, then sent as compact JSON) or a string. The
        provider adds ``AirflowCorrelationId`` to a dict, an empty value or a JSON-object string;
        a string that is not a JSON object is sent unchanged and duplicates are then prevented only
        through Airflow's task state store. (templated)
    :param session_id: SessionId, your key for the conversation (ListAIAgentDialogues). (templated)
    :param ice_conn_id: The ``alibaba_ice`` connection. (templated)
    :param correlation: Put the correlation id into UserData (default True). With False, a retry
        cannot recognise a call an earlier try placed unless the task state store remembers it.
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
        self.coalesce_polls = coalesce_polls
        self.agent_id = agent_id
        self.user_data = user_data
        self.session_id = session_id
        self.ice_conn_id = ice_conn_id
        self.correlation = correlation
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.timeout = positive_seconds(timeout, "timeout")
        self.not_found_timeout = positive_seconds(not_found_timeout, "not_found_timeout")
        self.max_consecutive_errors = validate_int_range(max_consecutive_errors, "max_consecutive_errors", 0)
        self.stop_on_kill = stop_on_kill
        self.lookback = lookback
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
        user_data, embedded = embed_correlation_id(self.user_data, correlation_id)
        if correlation_id and not embedded:
            self.log.warning(
                "user_data is a string that is not a JSON object, so the correlation id cannot be added; "
                "a retry recognises an earlier call only through Airflow's task state store"
            )
        correlation_id = correlation_id if embedded else None
        record = self._recover(context, correlation_id) or self._place(context, user_data, correlation_id)
        self._instance_id = record.get("instance_id")
        self._remember(context, record)
        if not self.wait_for_completion:
            return record
        return self._wait(context, record)

    def _correlation_id(self, context: Context) -> str:
        ti = context["ti"]
        dag_run = context.get("dag_run")
        return make_correlation_id(
            ti.dag_id, ti.run_id, ti.task_id, ti.map_index, getattr(dag_run, "clear_number", 0) or 0
        )

    def record(
        self,
        *,
        instance_id: str | None,
        correlation_id: str | None,
        created_at: str,
        channel_id: str | None = None,
        ai_agent_user_id: str | None = None,
        user_id: str | None = None,
        avatar_user_id: str | None = None,
        session_id: str | None = None,
        adopted: bool = False,
    ) -> dict[str, Any]:
        """Return the XCom return value: identifiers only, never the ARTC Token."""
        return {
            "agent_id": self.agent_id,
            "instance_id": instance_id,
            "channel_id": channel_id,
            "ai_agent_user_id": ai_agent_user_id,
            "user_id": user_id,
            "avatar_user_id": avatar_user_id,
            "session_id": session_id or self.session_id,
            "correlation_id": correlation_id,
            "created_at": created_at,
            "adopted": adopted,
        }

    def _recover(self, context: Context, correlation_id: str | None) -> dict[str, Any] | None:
        """On a retry: the call an earlier try placed, from the task state store or by lookup."""
        if getattr(context["ti"], "try_number", 1) <= 1:
            return None
        stored = load_state(context, STATE_KEY)
        if isinstance(stored, dict) and stored.get("agent_id") == self.agent_id:
            self.log.info("Adopting agent instance %s placed by an earlier try", stored.get("instance_id"))
            return {**stored, "adopted": True}
        if correlation_id is None:
            self.log.warning(
                "Retry without a correlation id in UserData: cannot tell whether an earlier try placed "
                "a call, placing one"
            )
            return None
        since = self._lookup_start(context)
        instance = self._find(correlation_id, since)
        if instance is None:
            self.log.info("No call from an earlier try (correlation id %s); placing it", correlation_id)
            return None
        return self._adopt(instance, correlation_id, since)

    def _place(self, context: Context, user_data: Any, correlation_id: str | None) -> dict[str, Any]:
        # Taken just before sending, so a sensor window starting here covers the instance.
        created_at = utcnow()
        try:
            fields = self.send(context, user_data)
        except IceOutcomeUnknownError as error:
            if correlation_id is None:
                raise IceAgentCallError(
                    f"{error}. UserData carries no correlation id, so the call cannot be looked up: "
                    "check the ICE console before retrying this task"
                ) from error
            self.log.warning("%s; looking for the instance by correlation id %s", error, correlation_id)
            instance = self._find(
                correlation_id, created_at - WINDOW_MARGIN, attempts=UNKNOWN_OUTCOME_LOOKUPS
            )
            if instance is None:
                raise IceAgentCallError(
                    f"{error}. No instance with correlation id {correlation_id} was found for agent "
                    f"{self.agent_id!r}; the call was probably not placed (a retry looks again first)"
                ) from error
            return self._adopt(instance, correlation_id, created_at)
        record = self.record(correlation_id=correlation_id, created_at=iso(created_at), **fields)
        self.log.info(
            "Placed agent call: agent %s, instance %s, channel %s",
            self.agent_id,
            record["instance_id"],
            record["channel_id"],
        )
        return record

    def _find(self, correlation_id: str, since: datetime, *, attempts: int = 1) -> AIAgentInstance | None:
        target = InstanceTarget(agent_id=self.agent_id, correlation_id=correlation_id, window_start=since)
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.poll_interval, 5.0))
            found = find_instance(self.hook, target)
            if found is not None:
                return found
        return None

    def _adopt(self, instance: AIAgentInstance, correlation_id: str, since: datetime) -> dict[str, Any]:
        runtime = instance.runtime_config.resolved()
        record = self.record(
            instance_id=instance.instance_id,
            correlation_id=correlation_id,
            # ListAIAgentInstance has no creation time: the search start keeps sensor windows right.
            created_at=iso(instance.gmt_create or since),
            channel_id=instance.channel_id,
            ai_agent_user_id=runtime.agent_user_id,
            user_id=getattr(self, "user_id", None),
            session_id=instance.session_id,
            adopted=True,
        )
        self.log.info(
            "Adopted the existing agent instance (channel %s, status %s) instead of calling again; "
            "an adopted call has no ARTC Token",
            record["channel_id"],
            instance.status,
        )
        if not record["instance_id"]:
            self.log.warning("ListAIAgentInstance gives no InstanceId: it cannot be stopped on kill")
        return record

    def _lookup_start(self, context: Context) -> datetime:
        dag_run = context.get("dag_run")
        started = getattr(dag_run, "start_date", None)
        if started is not None:
            return parse_time(started, "dag_run.start_date") - WINDOW_MARGIN
        return utcnow() - self.lookback

    def _remember(self, context: Context, record: dict[str, Any]) -> None:
        """Task state store (for retries) and the console link; both best effort."""
        save_state(context, STATE_KEY, {k: v for k, v in record.items() if k != "adopted"})
        try:
            url = console_url(self.hook.region, self.agent_id, record.get("instance_id"))
            IceAIAgentInstanceLink.persist(context, url)
        except Exception:
            self.log.warning("Could not persist the ICE console link", exc_info=True)

    # -- waiting ------------------------------------------------------------------------------

    def _wait(self, context: Context, record: dict[str, Any]) -> dict[str, Any]:
        target = InstanceTarget(
            agent_id=self.agent_id,
            correlation_id=record.get("correlation_id"),
            channel_id=record.get("channel_id"),
            instance_id=record.get("instance_id"),
            window_start=parse_time(record["created_at"], "created_at") - WINDOW_MARGIN,
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
