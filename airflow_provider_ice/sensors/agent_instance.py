"""Wait until an ICE agent instance is ``Finished``: poke, reschedule or deferrable mode."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.validation import (
    parse_time,
    positive_seconds,
    validate_flag,
    validate_int_range,
)
from airflow_provider_ice.api.waiting import (
    Action,
    InstanceTarget,
    WaitTracker,
    instance_record,
    poll_instance,
    poll_step,
    window_after,
)
from airflow_provider_ice.exceptions import fail_without_retry, wait_failure
from airflow_provider_ice.hooks.ice import IceHookMixin
from airflow_provider_ice.task_state import load_state, save_state

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: task_state_store key of the error count, so reschedule mode keeps its error budget across pokes.
ERRORS_STATE_KEY = "ice_sensor_consecutive_errors"


def _seconds(value: Any, parameter: str) -> float:
    """Return finite seconds >= 0, as Airflow's sensors take them (a template renders to a string)."""
    try:
        seconds = float(value) if isinstance(value, (int, float)) else float(str(value).strip())
    except ValueError:
        seconds = math.nan
    if isinstance(value, bool) or not (math.isfinite(seconds) and seconds >= 0):
        raise IceValidationError(parameter, f"must be a number of seconds >= 0, got {value!r}")
    return seconds


class IceAIAgentInstanceSensor(IceHookMixin, BaseSensorOperator):
    """Wait for an ICE AI agent instance to reach ``Finished``.

    The instance is identified by the correlation id in its UserData and/or its ChannelId, in a
    ListAIAgentInstance window that starts shortly before it was created. ``Created`` and
    ``Executing`` keep waiting; a status this provider does not know keeps waiting with one warning.

    Returns (XCom) ``{"agent_id", "instance_id", "channel_id", "status", "user_data",
    "correlation_id", "call_log_available"}``. The CallLogUrl is a bearer URL: it is masked in the
    logs and pushed to XCom (key ``call_log_url`` of the dict) only with ``include_call_log_url``;
    downstream tasks should fetch a fresh one instead.

    Failures: not found within ``not_found_timeout`` fails without retries (``soft_fail`` skips);
    more than ``max_consecutive_errors`` transient API errors in a row fail the try (retries apply);
    the sensor ``timeout`` raises AirflowSensorTimeout. In deferrable mode Airflow applies
    ``soft_fail`` to any failure of the resumed task.

    :param call: The dict returned by an ICE call operator (e.g. ``generate.output``). (templated)
    :param agent_id: AIAgentId, when ``call`` is not given. (templated)
    :param channel_id: ChannelId of a call placed outside Airflow. (templated)
    :param correlation_id: Correlation id carried in UserData, if known. (templated)
    :param created_after: When the call was placed (aware datetime or ISO-8601); the window starts
        a few minutes earlier. Defaults to ``lookback`` before the sensor starts. (templated)
    :param ice_conn_id: The ``alibaba_ice`` connection. (templated)
    :param poke_interval: Seconds between polls, a number or a template such as
        ``"{{ params.poke_interval }}"``. (templated)
    :param not_found_timeout: Fail if no instance matches this long after the sensor starts.
    :param max_consecutive_errors: Transient API errors tolerated in a row.
    :param include_call_log_url: Put the (secret, expiring) CallLogUrl into the XCom value.
    :param deferrable: Wait in the triggerer (default from ``[operators] default_deferrable``).
    :param lookback: Window length before the sensor start when ``created_after`` is unknown.
    :param coalesce_polls: In deferrable mode, share one ListAIAgentInstance sweep per interval with
        every task waiting on the same connection and agent in the triggerer (about one request per
        100 waiting calls; default True). False: this sensor's trigger polls on its own.
    """

    template_fields: Sequence[str] = (
        "call",
        "agent_id",
        "channel_id",
        "correlation_id",
        "created_after",
        "ice_conn_id",
        "poke_interval",
    )
    template_fields_renderers = {"call": "json"}
    ui_color = "#ffb27a"

    def __init__(
        self,
        *,
        call: Any = None,
        agent_id: str | None = None,
        channel_id: str | None = None,
        correlation_id: str | None = None,
        created_after: datetime | str | None = None,
        ice_conn_id: str = "ice_default",
        not_found_timeout: float | timedelta = timedelta(minutes=10),
        max_consecutive_errors: int = 3,
        include_call_log_url: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        lookback: timedelta = timedelta(hours=24),
        coalesce_polls: bool = True,
        **kwargs: Any,
    ) -> None:
        # poke_interval may be a template (e.g. "{{ params.poke_interval }}"): BaseSensorOperator
        # only takes numbers, so a template is kept aside and checked once rendered, in execute.
        poke_template = kwargs.get("poke_interval")
        if isinstance(poke_template, str):
            kwargs["poke_interval"] = 60
        super().__init__(**kwargs)
        if isinstance(poke_template, str):
            self.poke_interval = poke_template  # type: ignore[assignment]
        self.coalesce_polls = validate_flag(coalesce_polls, "coalesce_polls")
        if call is None and not agent_id:
            raise IceValidationError("agent_id", "give call=<operator output> or agent_id")
        if call is None and not (channel_id or correlation_id):
            raise IceValidationError("channel_id", "with agent_id, give channel_id or correlation_id")
        # Airflow's contract: every parameter is kept under its own name (templated ones are rendered
        # in place), so this list looks like every other operator's.
        self.call = call
        self.agent_id = agent_id
        self.channel_id = channel_id
        self.correlation_id = correlation_id
        self.created_after = created_after
        self.ice_conn_id = ice_conn_id
        self.not_found_timeout = positive_seconds(not_found_timeout, "not_found_timeout", allow_zero=True)
        self.max_consecutive_errors = validate_int_range(max_consecutive_errors, "max_consecutive_errors", 0)
        self.include_call_log_url = validate_flag(include_call_log_url, "include_call_log_url")
        self.deferrable = validate_flag(deferrable, "deferrable")
        self.lookback = timedelta(seconds=positive_seconds(lookback, "lookback"))
        self._tracker: WaitTracker | None = None

    def _started_at(self, context: Context) -> float:
        """When waiting began: the first reschedule in reschedule mode, else now (first poke)."""
        if self.reschedule:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                return parse_time(first, "first_reschedule_date").timestamp()
        return time.time()

    def target(self, started_at: float) -> InstanceTarget:
        """Return the instance to wait for, from the rendered identifiers; errors name the parameter."""
        call = self.call
        if call is not None:
            if not isinstance(call, dict) or not call.get("agent_id"):
                raise IceValidationError(
                    "call", f"must be the dict an ICE call operator returns, got {type(call).__name__}"
                )
            named, created = call, call.get("created_at") or self.created_after
        else:
            named = {
                "agent_id": self.agent_id,
                "channel_id": self.channel_id,
                "correlation_id": self.correlation_id,
            }
            created = self.created_after
        if created is not None:
            window_start = window_after(created, "created_after")
        else:
            window_start = datetime.fromtimestamp(started_at, tz=timezone.utc) - self.lookback
        return InstanceTarget.named_by(named, window_start)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """Poll once; return the instance record when it is Finished."""
        if self._tracker is None:
            started_at = self._started_at(context)
            self._tracker = WaitTracker(
                self.target(started_at),
                started_at + self.not_found_timeout,
                self.max_consecutive_errors,
                consecutive_errors=self._load_errors(context),
            )
        tracker = self._tracker
        step = poll_step(tracker, self.hook)
        if step.observation is not None:
            self._mask_url(step.observation.instance)
        self._save_errors(context, tracker.consecutive_errors)
        if step.action is Action.FAIL:
            raise wait_failure(step)
        if step.action is Action.WAIT:
            self.log.info("%s", step.message)
            return False
        self.log.info("%s", step.message)
        assert step.observation is not None  # DONE always carries the finished instance
        return PokeReturnValue(
            is_done=True,
            xcom_value=instance_record(
                tracker.target, step.observation, include_call_log_url=self.include_call_log_url
            ),
        )

    @staticmethod
    def _mask_url(instance: Any) -> None:
        if instance is not None and instance.call_log_url is not None:
            from airflow.providers.common.compat.sdk import mask_secret

            mask_secret(instance.call_log_url.get_secret_value())

    def _load_errors(self, context: Context) -> int:
        value = load_state(context, ERRORS_STATE_KEY) if self.reschedule else None
        return value if isinstance(value, int) else 0

    def _save_errors(self, context: Context, count: int) -> None:
        if self.reschedule:
            save_state(context, ERRORS_STATE_KEY, count)

    @fail_without_retry
    def execute(self, context: Context) -> Any:
        """Poke, reschedule, or poke once and then defer to the trigger."""
        self.poke_interval = _seconds(self.poke_interval, "poke_interval")
        if not self.deferrable:
            return super().execute(context)
        started_at = time.time()
        # Check once before deferring: the call may be over already.
        result = self.poke(context)
        if isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger

        tracker = self._tracker
        assert tracker is not None
        self.defer(
            trigger=IceAIAgentInstanceTrigger.for_wait(
                tracker,
                ice_conn_id=self.ice_conn_id,
                poll_interval=self.poke_interval,
                # A backstop only: Airflow's deferral timeout normally fires first and becomes
                # AirflowSensorTimeout (with soft_fail) in resume_execution.
                end_time=started_at + self.timeout + self.poke_interval + 60,
                stop_on_kill=False,  # the sensor does not own the call
                coalesce=self.coalesce_polls,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    @fail_without_retry
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: return the instance record, or raise a clear failure."""
        from airflow_provider_ice.triggers.agent_instance import (
            event_failure,
            record_from_event,
            validate_event,
        )

        event = validate_event(event)
        if event["status"] == "timeout":
            raise AirflowSensorTimeout(event["message"])
        if event["status"] == "error":
            raise event_failure(event)
        self.log.info("%s", event["message"])
        record = record_from_event(event)
        if self.include_call_log_url:
            record.update(self._fresh_call_log_url(event))
        return record

    def _fresh_call_log_url(self, event: dict[str, Any]) -> dict[str, Any]:
        """Return a fresh CallLogUrl: the URL never travels in (stored) trigger events."""
        target = InstanceTarget.named_by(event, self.target(time.time()).window_start)
        observation = poll_instance(self.hook, target)
        self._mask_url(observation.instance)
        record = instance_record(target, observation, include_call_log_url=True)
        return {"call_log_url": record.get("call_log_url")}
