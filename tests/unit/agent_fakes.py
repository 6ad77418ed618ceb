"""Fakes shared by the agent-call operator, sensor and trigger unit tests (no network, no DB)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from unittest.mock import MagicMock

from airflow_provider_ice.api.correlation import CORRELATION_KEY, make_correlation_id
from airflow_provider_ice.api.models import AIAgentInstance, GenerateAIAgentCallResponse

AGENT_ID = "39f8e0bc005e4f309379701645f4abcd"
CHANNEL_ID = "channel-0001"
INSTANCE_ID = "inst-0001"
TOKEN = "artc-token-SECRET-0001"
AUTH_TOKEN = "auth-token-SECRET-0002"
CALL_LOG_URL = "https://oss.example.com/call_logs/1.json?Signature=SECRETSIG&Expires=1"
CONN_JSON = json.dumps(
    {
        "conn_type": "alibaba_ice",
        "login": "LTAIunit",
        "password": "unit-access-key-secret",
        "extra": {"endpoint": "http://127.0.0.1:9", "region": "cn-shanghai"},
    }
)


def instance(
    status: str = "Executing",
    *,
    correlation_id: str | None = None,
    channel_id: str = CHANNEL_ID,
    user_data: str | None = None,
    call_log: bool = False,
    instance_id: str | None = None,
) -> AIAgentInstance:
    if user_data is None and correlation_id is not None:
        user_data = json.dumps({CORRELATION_KEY: correlation_id, "name": "Ann"})
    data: dict[str, Any] = {
        "Status": status,
        "UserData": user_data,
        "RuntimeConfig": {"ChannelId": channel_id, "AgentUserId": "agent-user", "AuthToken": AUTH_TOKEN},
    }
    if call_log:
        data["CallLogUrl"] = CALL_LOG_URL
    if instance_id:
        data["InstanceId"] = instance_id
    return AIAgentInstance.model_validate(data)


def generate_response(instance_id: str = INSTANCE_ID) -> GenerateAIAgentCallResponse:
    return GenerateAIAgentCallResponse.model_validate(
        {
            "RequestId": "req-1",
            "InstanceId": instance_id,
            "ChannelId": CHANNEL_ID,
            "AIAgentUserId": "agent-user",
            "UserId": "ann",
            "AvatarUserId": None,
            "Token": TOKEN,
        }
    )


class FakeStateStore:
    """Airflow 3.3's task_state_store accessor, in memory."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = value


def context(
    *,
    try_number: int = 1,
    map_index: int = -1,
    store: FakeStateStore | None = None,
    max_tries: int = 0,
    task_id: str = "call",
) -> dict[str, Any]:
    ti = MagicMock(
        dag_id="dag",
        run_id="run-1",
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        max_tries=max_tries,
    )
    ti.get_first_reschedule_date.return_value = None
    dag_run = MagicMock(start_date=datetime.now(timezone.utc) - timedelta(minutes=30))
    ctx: dict[str, Any] = {"ti": ti, "dag_run": dag_run}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def listing(*batches: list[AIAgentInstance] | BaseException):
    """A side_effect for IceHook.list_ai_agent_instances: one batch (or error) per call."""
    queue = list(batches)

    def _list(agent_id: str, **_: Any):
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, BaseException):
            raise item
        return iter(item)

    return _list


def logged(caplog: Any, capsys: Any) -> str:
    """Everything logged, once each.

    Airflow 3's task loggers print through structlog (stdout) and stdlib loggers reach caplog;
    Airflow 2 also echoes stdlib records to stdout, and those echoes are dropped here.
    """
    messages = [record.getMessage() for record in caplog.records]
    out = [
        line for line in capsys.readouterr().out.splitlines() if not any(m and m in line for m in messages)
    ]
    return "\n".join([caplog.text, *out])


def make_op(**kwargs: Any) -> Any:
    """Return an ``IceGenerateAIAgentCallOperator`` with test defaults (task ``call``, fast polls)."""
    from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator

    kwargs.setdefault("task_id", "call")
    kwargs.setdefault("agent_id", AGENT_ID)
    kwargs.setdefault("poll_interval", 0.01)
    return IceGenerateAIAgentCallOperator(**kwargs)


#: The correlation id of the task instance that :func:`context` describes (try 1, not cleared).
CID = make_correlation_id("dag", "run-1", "call", -1)
