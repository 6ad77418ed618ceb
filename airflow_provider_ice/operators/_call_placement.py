"""Placing a call exactly once: recover an earlier try's call, write ahead, send, adopt.

The rules are those of :class:`~._call_base.IceAgentCallBaseOperator`; this mixin holds the
decisions before and around the creating request, :mod:`._call_store` the task state store.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ice.api.errors import (
    IceOutcomeUnknownError,
    IceServerError,
    IceThrottlingError,
    IceTransportError,
)
from airflow_provider_ice.api.validation import iso, parse_time, utcnow
from airflow_provider_ice.api.waiting import WINDOW_MARGIN, InstanceTarget, find_instance, window_after
from airflow_provider_ice.exceptions import IceAgentCallError
from airflow_provider_ice.links import IceAIAgentInstanceLink, console_url

from ._call_store import CallStore, StoredCall

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context
    from airflow.sdk._shared.logging.types import Logger

    from airflow_provider_ice.api.models import AIAgentInstance, InstanceStatus
    from airflow_provider_ice.hooks.ice import IceHook

#: Seconds between listings while looking for an instance whose creation outcome is unknown.
LOOKUP_INTERVAL = 5.0
#: Listing errors that only mean "look again" while the lookup tolerance lasts.
TRANSIENT_ERRORS = (IceThrottlingError, IceServerError, IceTransportError)
#: What a person should check when the provider cannot tell whether a call was placed.
CONSOLE_ADVICE = (
    "check the agent's instances in the ICE (IMS) console for a "
    "call created around {sent}; clear this task only if there is none"
)


class CallPlacementMixin:
    """Recovery and placement of :class:`~._call_base.IceAgentCallBaseOperator`."""

    if TYPE_CHECKING:
        agent_id: str
        lookup_tolerance: float
        poll_interval: float
        lookback: timedelta
        session_id: str | None

        @property
        def hook(self) -> IceHook: ...

        @property
        def log(self) -> Logger: ...

        def send(self, context: Context, user_data: Any) -> dict[str, Any]: ...

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
        """Return the XCom value: identifiers only, never the ARTC Token."""
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

    # -- recovering an earlier try's call -----------------------------------------------------

    def _recover(
        self, context: Context, store: CallStore, correlation_id: str | None
    ) -> dict[str, Any] | None:
        """Return the call an earlier try placed that this try stands for, or None to place one."""
        stored = store.load(self.agent_id)
        if stored is not None:
            return self._recover_stored(stored)
        if getattr(context["ti"], "try_number", 1) <= 1:
            return None
        if correlation_id is None:
            self.log.warning(
                "Retry without a correlation id in UserData or a call record in the task state store: "
                "cannot tell whether an earlier try placed a call, placing one"
            )
            return None
        # Every creating request is written ahead, so with a store an earlier send left a record
        # and one lookup suffices; without one, the listing may still lag behind an earlier send.
        since = self._lookup_start(context)
        deadline = None if store.available else time.time() + self.lookup_tolerance
        instance = self._find(correlation_id, since, deadline=deadline)
        if instance is None:
            self.log.info("No call from an earlier try (correlation id %s); placing it", correlation_id)
            return None
        return self._adopt(instance, correlation_id, since)

    def _recover_stored(self, stored: StoredCall) -> dict[str, Any] | None:
        # Only a retry gets here: the models (pydantic) stay out of every DAG file's parse.
        from airflow_provider_ice.api.models import InstanceStatus

        record, earlier = stored.record, stored.correlation_id
        if stored.pending:
            if earlier is None:
                if stored.same_run:
                    raise AirflowFailException(
                        "An earlier try sent the creating request, and whether it placed a call is "
                        "unknown (no correlation id in UserData): "
                        + CONSOLE_ADVICE.format(sent=record["created_at"])
                    )
                self.log.info("Task cleared after a call of unknown outcome: placing a new call")
                return None
            self.log.info(
                "An earlier try's creating request (sent %s) has no recorded answer; looking for its "
                "instance (correlation id %s) until lookup_tolerance has passed",
                record["created_at"],
                earlier,
            )
            instance = self._find(
                earlier,
                stored.sent_at - WINDOW_MARGIN,
                deadline=stored.sent_at.timestamp() + self.lookup_tolerance,
            )
            if instance is None:
                self.log.info("No instance after %.0f s: the call was not placed", self.lookup_tolerance)
                return None
            if stored.same_run or instance.status is not InstanceStatus.FINISHED:
                return self._adopt(instance, earlier, stored.sent_at)
            self.log.info("Task cleared and the earlier call is Finished: placing a new call")
            return None
        if stored.same_run:
            self.log.info("Adopting agent instance %s placed by an earlier try", record.get("instance_id"))
            return {**record, "adopted": True}
        status = self._status_of(record)
        if status in (InstanceStatus.CREATED, InstanceStatus.EXECUTING):
            self.log.info(
                "Task cleared while its call (instance %s) is %s: adopting it instead of calling again",
                record.get("instance_id"),
                status,
            )
            return {**record, "adopted": True}
        self.log.info(
            "Task cleared and its earlier call (instance %s) is %s: placing a new call",
            record.get("instance_id"),
            status or "no longer listed",
        )
        return None

    def _status_of(self, record: dict[str, Any]) -> InstanceStatus | None:
        """Return the status of a recorded call (Describe by InstanceId, else the listing)."""
        instance_id, correlation_id = record.get("instance_id"), record.get("correlation_id")
        if instance_id:
            return self.hook.describe_ai_agent_instance(instance_id).status
        if not correlation_id:
            return None
        found = self._find(correlation_id, window_after(record["created_at"], "created_at"))
        return None if found is None else found.status

    # -- placing ------------------------------------------------------------------------------

    def _place(
        self, context: Context, store: CallStore, user_data: Any, correlation_id: str | None
    ) -> dict[str, Any]:
        # Taken just before sending, so a sensor window starting here covers the instance.
        sent_at = utcnow()
        written = store.write_ahead(self.agent_id, correlation_id, sent_at)
        try:
            fields = self.send(context, user_data)
        except IceOutcomeUnknownError as error:
            return self._after_unknown_outcome(error, correlation_id, sent_at, written)
        record = self.record(correlation_id=correlation_id, created_at=iso(sent_at), **fields)
        self.log.info(
            "Placed agent call: agent %s, instance %s, channel %s",
            self.agent_id,
            record["instance_id"],
            record["channel_id"],
        )
        return record

    def _after_unknown_outcome(
        self, error: IceOutcomeUnknownError, correlation_id: str | None, sent_at: datetime, written: bool
    ) -> dict[str, Any]:
        advice = CONSOLE_ADVICE.format(sent=iso(sent_at))
        if correlation_id is None:
            raise AirflowFailException(
                f"{error}. UserData carries no correlation id (correlation=False), so the call cannot "
                f"be looked up and a retry could call the person twice: {advice}"
            ) from error
        self.log.warning(
            "%s; looking for the instance by correlation id %s for up to %.0f s",
            error,
            correlation_id,
            self.lookup_tolerance,
        )
        instance = self._find(
            correlation_id, sent_at - WINDOW_MARGIN, deadline=sent_at.timestamp() + self.lookup_tolerance
        )
        if instance is not None:
            return self._adopt(instance, correlation_id, sent_at)
        if not written:
            raise AirflowFailException(
                f"{error}. No instance with correlation id {correlation_id} was listed within "
                f"lookup_tolerance ({self.lookup_tolerance:.0f} s), and without a task state store a "
                f"retry cannot tell how long ago the request was sent: {advice}"
            ) from error
        raise IceAgentCallError(
            f"{error}. No instance with correlation id {correlation_id} was listed for agent "
            f"{self.agent_id!r} within lookup_tolerance ({self.lookup_tolerance:.0f} s): the call was "
            "not placed (a retry looks once more, then places it)"
        ) from error

    def _find(
        self, correlation_id: str, since: Any, *, deadline: float | None = None
    ) -> AIAgentInstance | None:
        """Return the instance carrying ``correlation_id``, listing until ``deadline`` (epoch s).

        A transient listing error (throttling, 5xx, transport) before the deadline only means
        "look again"; None is returned only after a listing that succeeded, so a failed look
        never passes for "not placed".
        """
        target = InstanceTarget(agent_id=self.agent_id, correlation_id=correlation_id, window_start=since)
        while True:
            try:
                found = find_instance(self.hook, target)
            except TRANSIENT_ERRORS as error:
                remaining = (deadline or 0) - time.time()
                if remaining <= 0:
                    raise
                self.log.warning("Looking for the instance failed (%s); looking again", error)
                time.sleep(min(LOOKUP_INTERVAL, self.poll_interval, remaining))
                continue
            remaining = (deadline or 0) - time.time()
            if found is not None or remaining <= 0:
                return found
            time.sleep(min(LOOKUP_INTERVAL, self.poll_interval, remaining))

    def _adopt(self, instance: AIAgentInstance, correlation_id: str, since: Any) -> dict[str, Any]:
        runtime = instance.runtime_config.resolved()
        record = self.record(
            instance_id=instance.instance_id,
            correlation_id=correlation_id,
            # ListAIAgentInstance has no creation time: the search start keeps sensor windows right.
            created_at=iso(instance.gmt_create or parse_time(since, "since")),
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
            self.log.warning(
                "ListAIAgentInstance gives no InstanceId, and ICE stops an instance only by its "
                "InstanceId (StopAIAgentInstance): neither timeout nor on_kill can stop this call; it "
                "ends when the conversation ends or after the agent's MaxIdleTime (channel %s)",
                record["channel_id"],
            )
        return record

    def _lookup_start(self, context: Context) -> Any:
        dag_run = context.get("dag_run")
        started = getattr(dag_run, "start_date", None)
        if started is not None:
            return window_after(started, "dag_run.start_date")
        return utcnow() - self.lookback

    def _remember(self, context: Context, store: CallStore, record: dict[str, Any]) -> None:
        """Task state store (for retries) and the console link; both best effort."""
        store.save(record)
        try:
            url = console_url(self.hook.region, self.agent_id, record.get("instance_id"))
            IceAIAgentInstanceLink.persist(context, url)
        except Exception:
            self.log.warning("Could not persist the ICE console link", exc_info=True)
