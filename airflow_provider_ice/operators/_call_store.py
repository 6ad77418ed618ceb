"""The call record of a task instance in Airflow's task state store, and the Clear generation.

Two facts decide whether a try may place a call:

* **Which run-through of the task instance this is.** Airflow keeps ``ti.max_tries`` unchanged
  across automatic retries and raises it to ``try_number + retries`` whenever a user clears *this*
  task instance (``clear_task_instances``, and the scheduler when a task cleared while running has
  been terminated). ``max_tries - retries`` is therefore the number of tries before the latest
  Clear of this task instance: 0 until it is first cleared, and unrelated to clears of other tasks
  of the DAG run (``dag_run.clear_number`` counts those too, so it cannot be used).
* **What an earlier try sent.** Before each creating request the operator writes the attempt
  (correlation id, send time, ``max_tries``) to the task state store (Airflow 3.3+), and replaces
  it with the call record once the response arrives. A try that finds a *pending* attempt knows a
  request may have reached ICE even though no response did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_ice._compat import task_state_store
from airflow_provider_ice.api.validation import iso, parse_time

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: task_state_store key holding the call record (or the pending attempt) of the task instance.
STATE_KEY = "ice_agent_call"

log = logging.getLogger(__name__)


def clear_generation(context: Context, retries: int | None) -> int:
    """Return the number of tries before the latest Clear of this task instance (0 if never cleared).

    The same on every automatic retry; a Clear of this task instance changes it. A task instance
    without ``max_tries`` (a hand-made context) counts as never cleared.
    """
    max_tries = getattr(context["ti"], "max_tries", None)
    if not isinstance(max_tries, int) or max_tries < 0:
        return 0
    return max(0, max_tries - (retries or 0))


@dataclass(frozen=True)
class StoredCall:
    """What the task state store says an earlier try of this task instance did.

    :param record: the call record (pending attempts carry ``instance_id`` None).
    :param pending: a creating request was sent and no response was recorded: outcome unknown.
    :param same_run: no Clear of this task instance since it was written (an automatic retry).
    """

    record: dict[str, Any]
    pending: bool
    same_run: bool

    @property
    def correlation_id(self) -> str | None:
        value = self.record.get("correlation_id")
        return value if isinstance(value, str) and value else None

    @property
    def sent_at(self) -> datetime:
        return parse_time(self.record["created_at"], "created_at")


class CallStore:
    """The task state store of one task instance, as far as the call operators use it.

    Every access is best effort: a store that is missing (Airflow < 3.3) or fails is reported by
    :attr:`available` / the return value of :meth:`write_ahead`, never raised.
    """

    def __init__(self, context: Context) -> None:
        self._store = task_state_store(context)
        max_tries = getattr(context["ti"], "max_tries", None)
        self._max_tries = max_tries if isinstance(max_tries, int) else None

    @property
    def available(self) -> bool:
        return self._store is not None

    def load(self, agent_id: str) -> StoredCall | None:
        """Return what an earlier try stored for ``agent_id``; a record of another agent is ignored."""
        if self._store is None:
            return None
        try:
            value = self._store.get(STATE_KEY)
        except Exception:
            log.warning("Could not read the task state store", exc_info=True)
            return None
        if not isinstance(value, dict) or not value.get("created_at"):
            return None
        if value.get("agent_id") != agent_id:
            log.warning(
                "The task state store holds a call for agent %r, not %r (agent_id changed between "
                "tries): it is not adopted",
                value.get("agent_id"),
                agent_id,
            )
            return None
        stored_max_tries = value.get("max_tries")
        # A record written before the provider stored max_tries counts as this run-through's.
        same_run = stored_max_tries is None or stored_max_tries == self._max_tries
        record = {k: v for k, v in value.items() if k not in ("max_tries", "pending")}
        return StoredCall(record=record, pending=bool(value.get("pending")), same_run=same_run)

    def write_ahead(self, agent_id: str, correlation_id: str | None, sent_at: datetime) -> bool:
        """Record a creating request about to be sent; return False if it could not be recorded."""
        pending = {
            "agent_id": agent_id,
            "instance_id": None,
            "correlation_id": correlation_id,
            "created_at": iso(sent_at),
            "pending": True,
        }
        return self._set(pending)

    def save(self, record: dict[str, Any]) -> bool:
        """Record the call this run-through of the task instance stands for."""
        return self._set({k: v for k, v in record.items() if k != "adopted"})

    def _set(self, value: dict[str, Any]) -> bool:
        if self._store is None:
            return False
        try:
            self._store.set(STATE_KEY, {**value, "max_tries": self._max_tries})
        except Exception:
            log.warning("Could not write the task state store", exc_info=True)
            return False
        return True
