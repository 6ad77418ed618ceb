"""Best-effort access to Airflow's task state store (``context["task_state_store"]``, Airflow 3.3+).

The store itself comes from :func:`airflow_provider_ice._compat.task_state_store`, which is None
below Airflow 3.3.

The store outlives a try, so a retry can adopt the call an earlier try placed and reschedule mode
can keep its error budget. It is optional (older Airflow, some runners): a missing store or a
failing call is logged and never fails the task.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow_provider_ice._compat import task_state_store

log = logging.getLogger(__name__)


def load_state(context: Mapping[str, Any], key: str) -> Any:
    """Return the value stored under ``key``, or None (no store, nothing stored, or it failed)."""
    store = task_state_store(context)
    if store is None:
        return None
    try:
        return store.get(key)
    except Exception:
        log.warning("Could not read %r from the task state store", key, exc_info=True)
        return None


def save_state(context: Mapping[str, Any], key: str, value: Any) -> None:
    """Store ``value`` under ``key`` when there is a store; a failure is only logged."""
    store = task_state_store(context)
    if store is None:
        return
    try:
        store.set(key, value)
    except Exception:
        log.warning("Could not record %r in the task state store", key, exc_info=True)
