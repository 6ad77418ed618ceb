"""The correlation id that ties an ICE agent instance to the Airflow task instance that placed it.

ListAIAgentInstance returns no InstanceId, but it echoes ``UserData`` verbatim. The provider puts a
correlation id into UserData (when it is a JSON object or empty) under one reserved key, so that a
retried task, or a task whose GenerateAIAgentCall response was lost, can find the instance it
already created instead of calling a person twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: The reserved UserData key. Documented in the README; users must not set it themselves.
CORRELATION_KEY = "AirflowCorrelationId"


def make_correlation_id(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """A stable id for one task instance (the same on every try), short enough for UserData."""
    source = f"{dag_id}\x1f{run_id}\x1f{task_id}\x1f{-1 if map_index is None else map_index}"
    return "af-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


def correlation_id_of(user_data: str | None) -> str | None:
    """The correlation id carried in a UserData string, or None."""
    if not user_data or CORRELATION_KEY not in user_data:
        return None
    try:
        loaded: Any = json.loads(user_data)
    except ValueError:
        return None
    if isinstance(loaded, dict):
        value = loaded.get(CORRELATION_KEY)
        return value if isinstance(value, str) else None
    return None
