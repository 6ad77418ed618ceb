"""Request parameters and response parsing of each ICE action, shared by the sync and async clients.

Each ``*_params`` function validates its inputs (raising :class:`~.errors.IceValidationError`
before anything is sent) and returns the parameter dict the signer encodes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import IceResponseError, IceValidationError
from .models import AIAgentConfig
from .validation import (
    format_time,
    require_non_empty,
    validate_expire,
    validate_json_object,
    validate_page_number,
    validate_page_size,
    validate_phone_number,
    validate_time_window,
    validate_user_data,
    validate_user_id,
)

GENERATE = "GenerateAIAgentCall"
START_OUTBOUND = "StartAIAgentOutboundCall"
LIST_INSTANCES = "ListAIAgentInstance"
DESCRIBE_INSTANCE = "DescribeAIAgentInstance"
STOP_INSTANCE = "StopAIAgentInstance"

M = TypeVar("M", bound=BaseModel)


def _optional(params: dict[str, Any], name: str, value: Any) -> None:
    if value is not None:
        params[name] = value


def generate_params(
    agent_id: str,
    *,
    user_id: str | None = None,
    user_data: str | dict[str, Any] | None = None,
    session_id: str | None = None,
    expire: int | None = None,
    agent_config: dict[str, Any] | AIAgentConfig | str | None = None,
    template_config: dict[str, Any] | str | None = None,
    chat_sync_config: dict[str, Any] | str | None = None,
) -> dict[str, Any]:
    """Parameters of GenerateAIAgentCall; complex values become compact JSON strings."""
    params: dict[str, Any] = {"AIAgentId": require_non_empty(agent_id, "AIAgentId")}
    _optional(params, "UserId", None if user_id is None else validate_user_id(user_id))
    _optional(params, "UserData", None if user_data is None else validate_user_data(user_data))
    _optional(params, "SessionId", None if session_id is None else require_non_empty(session_id, "SessionId"))
    _optional(params, "Expire", None if expire is None else validate_expire(expire))
    for name, value in (
        ("AgentConfig", agent_config),
        ("TemplateConfig", template_config),
        ("ChatSyncConfig", chat_sync_config),
    ):
        _optional(params, name, None if value is None else validate_json_object(value, name))
    return params


def outbound_params(
    agent_id: str,
    *,
    called_number: str,
    caller_number: str,
    config: dict[str, Any] | str | None = None,
    session_id: str | None = None,
    user_data: str | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters of StartAIAgentOutboundCall."""
    params: dict[str, Any] = {
        "AIAgentId": require_non_empty(agent_id, "AIAgentId"),
        "CalledNumber": validate_phone_number(called_number, "CalledNumber"),
        "CallerNumber": validate_phone_number(caller_number, "CallerNumber"),
    }
    _optional(params, "Config", None if config is None else validate_json_object(config, "Config"))
    _optional(params, "SessionId", None if session_id is None else require_non_empty(session_id, "SessionId"))
    _optional(params, "UserData", None if user_data is None else validate_user_data(user_data))
    return params


def list_window(
    agent_id: str, start_time: datetime | str | None, end_time: datetime | str | None, page_size: int
) -> tuple[datetime | None, datetime | None]:
    """Validate a listing's arguments; return the parsed window."""
    require_non_empty(agent_id, "AIAgentId")
    validate_page_size(page_size)
    return validate_time_window(start_time, end_time)


def list_params(
    agent_id: str,
    start: datetime | None,
    end: datetime | None,
    page_size: int,
    page_number: int,
) -> dict[str, Any]:
    """Parameters of one ListAIAgentInstance page (inputs already validated by :func:`list_window`)."""
    params: dict[str, Any] = {
        "AIAgentId": agent_id,
        "PageSize": page_size,
        "PageNumber": validate_page_number(page_number),
    }
    _optional(params, "StartTime", None if start is None else format_time(start))
    _optional(params, "EndTime", None if end is None else format_time(end))
    return params


def instance_params(instance_id: str) -> dict[str, Any]:
    """Parameters of DescribeAIAgentInstance / StopAIAgentInstance."""
    return {"InstanceId": require_non_empty(instance_id, "InstanceId")}


def raw_params(action: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Check a raw ``call_api`` request: a PascalCase action name and a dict of parameters."""
    require_non_empty(action, "action")
    if not action.isidentifier() or not action[:1].isupper():
        raise IceValidationError(
            "action", f"must be an ICE action name such as 'DescribeAIAgentInstance', got {action!r}"
        )
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise IceValidationError(
            "params", f"must be a dict of parameter names to values, got {type(params).__name__}"
        )
    for name in params:
        if not isinstance(name, str) or not name:
            raise IceValidationError("params", f"parameter names must be non-empty strings, got {name!r}")
    return params


def parse_model(model: type[M], data: dict[str, Any], action: str) -> M:
    """Validate a response body; a body of the wrong shape is an :class:`IceResponseError`.

    The message lists field locations and reasons only, never the input values (they may be tokens).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise IceResponseError(
            f"unexpected response shape ({problems})",
            action=action,
            http_status=200,
            request_id=data.get("RequestId") if isinstance(data.get("RequestId"), str) else None,
        ) from None


def listed_instances(page: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the raw entries of one ListAIAgentInstance page (``Instances``), unparsed."""
    items = page.get("Instances")
    if items is None:
        return []
    if not isinstance(items, list):
        raise IceResponseError(
            f"ListAIAgentInstance: Instances is {type(items).__name__}, expected a list",
            action=LIST_INSTANCES,
        )
    return [item for item in items if isinstance(item, dict)]
