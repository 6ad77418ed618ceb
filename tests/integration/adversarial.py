"""Entry points of the provider, called the way a task calls them, for the bad-input tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.operators.agent_call import (
    IceGenerateAIAgentCallOperator,
    IceStartAIAgentOutboundCallOperator,
)
from airflow_provider_ice.operators.analytics import IceSessionAnalyticsOperator
from airflow_provider_ice.operators.call_log import IceFetchCallLogOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor

AGENT = "adversarial-agent"
NAIVE = datetime(2026, 1, 1, 12, 0)
AWARE = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
UNSERIALISABLE = {"customer": object()}


def context() -> dict[str, Any]:
    """A first try's context: enough for the operators to get to their first request."""
    ti = SimpleNamespace(
        dag_id="adversarial", run_id="run-1", task_id="task", map_index=-1, try_number=1, xcom_push=print
    )
    return {"ti": ti, "dag_run": None, "task_state_store": None}


def generate(**kwargs: Any) -> Callable[[], Any]:
    kwargs.setdefault("agent_id", AGENT)
    return lambda: IceGenerateAIAgentCallOperator(task_id="call", **kwargs).execute(context())  # type: ignore[arg-type]


def outbound(**kwargs: Any) -> Callable[[], Any]:
    kwargs = {"agent_id": AGENT, "called_number": "+8613800000000", "caller_number": "05718000000", **kwargs}
    return lambda: IceStartAIAgentOutboundCallOperator(task_id="call", **kwargs).execute(context())  # type: ignore[arg-type]


def sensor(**kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        task = IceAIAgentInstanceSensor(
            task_id="wait", poke_interval=0.01, timeout=5, deferrable=False, **kwargs
        )
        return task.execute(context())  # type: ignore[arg-type]

    return run


def fetch(tmp: Path, **kwargs: Any) -> Callable[[], Any]:
    kwargs.setdefault("agent_id", AGENT)
    kwargs.setdefault("correlation_id", "af-adversarial")
    kwargs.setdefault("destination", str(tmp) + "/")
    return lambda: IceFetchCallLogOperator(task_id="fetch", **kwargs).execute(context())  # type: ignore[arg-type]


def analytics(tmp: Path, **kwargs: Any) -> Callable[[], Any]:
    kwargs = {"agent_ids": AGENT, "start_time": AWARE, "end_time": "2026-01-02T12:00:00Z", **kwargs}
    return lambda: IceSessionAnalyticsOperator(task_id="sessions", destination=str(tmp), **kwargs).execute(
        context()  # type: ignore[arg-type]
    )


def hook(method: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        result = getattr(IceHook(), method)(*args, **kwargs)
        return list(result) if method == "list_ai_agent_instances" else result

    return run


def nothing_reached(emulator: IceEmulator) -> None:
    """Assert that the emulator received no API call and no call-log download."""
    state = emulator.state()
    assert state["request_counts"] == {}, f"a request reached the emulator: {state['request_counts']}"
    assert state["calllog_downloads"] == {}
    assert state["calllog_denied"] == 0
