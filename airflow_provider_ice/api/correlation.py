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

from .errors import IceValidationError
from .validation import json_object

#: The reserved UserData key. Documented in the README; users must not set it themselves.
CORRELATION_KEY = "AirflowCorrelationId"


def make_correlation_id(
    dag_id: str, run_id: str, task_id: str, map_index: int | None = -1, generation: int | None = 0
) -> str:
    """Return a stable id for one run-through of a task instance, short enough for UserData.

    ``generation`` counts the tries before the latest Clear of this task instance (the same on
    every automatic retry), so that a task a user clears on purpose gets a new id while automatic
    retries keep theirs. With the default 0 (never cleared) the id is the same as without it.
    """
    source = f"{dag_id}\x1f{run_id}\x1f{task_id}\x1f{-1 if map_index is None else map_index}"
    if generation:
        source += f"\x1f{generation}"
    return "af-" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


def correlation_id_of(user_data: str | None) -> str | None:
    """Return the correlation id carried in a UserData string, or None."""
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


def embed_correlation_id(user_data: Any, correlation_id: str | None) -> Any:
    """Return ``user_data`` with ``correlation_id`` put in under :data:`CORRELATION_KEY`.

    A mapping, an empty value or a string holding a JSON object becomes a dict. With
    ``correlation_id`` None, ``user_data`` is returned unchanged.

    :raises IceValidationError: for ``user_data`` that is not a JSON object (a plain string, a list,
        a dict a template rendered to a Python repr), naming ``user_data`` and the fix, and when the
        user put a different value under the reserved key.
    """
    if correlation_id is None:
        return user_data
    if user_data is None or user_data == "" or (isinstance(user_data, dict) and not user_data):
        return {CORRELATION_KEY: correlation_id}
    try:
        loaded = json_object(user_data, "user_data")
    except IceValidationError:
        raise IceValidationError(
            "user_data",
            "must be a dict or a string holding a JSON object, so the correlation id that prevents a "
            f"second call can be added (got {type(user_data).__name__}); wrap the value, e.g. "
            '{"note": ...}, render templates as JSON ("{{ value | tojson }}" or '
            "render_template_as_native_obj=True), or pass correlation=False to give up that protection",
        ) from None
    existing = loaded.get(CORRELATION_KEY)
    if existing is not None and existing != correlation_id:
        raise IceValidationError(
            "user_data",
            f"the key {CORRELATION_KEY!r} is reserved for the provider's correlation id; remove it "
            "(or pass correlation=False to manage duplicates yourself)",
        )
    return {**loaded, CORRELATION_KEY: correlation_id}
