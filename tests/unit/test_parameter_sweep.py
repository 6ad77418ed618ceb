"""Every number, duration and flag parameter of every operator, sensor and trigger is checked.

The sweep reads each constructor's signature, so a parameter added later without validation fails
here: a wrong type (a numeric string, None, a float for a count, a string for a flag), NaN,
infinity and negative values must raise :class:`IceValidationError` naming the parameter, in the
constructor, so nothing is ever sent with it (and never a raw ``TypeError`` from deep inside).
"""

from __future__ import annotations

import inspect
import math
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.operators.agent_call import (
    IceGenerateAIAgentCallOperator,
    IceStartAIAgentOutboundCallOperator,
)
from airflow_provider_ice.operators.analytics import IceSessionAnalyticsOperator
from airflow_provider_ice.operators.call_log import IceFetchCallLogOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor
from airflow_provider_ice.triggers.agent_instance import IceAIAgentInstanceTrigger

REQUIRED: dict[type, dict[str, Any]] = {
    IceGenerateAIAgentCallOperator: {"task_id": "t", "agent_id": "a"},
    IceStartAIAgentOutboundCallOperator: {
        "task_id": "t",
        "agent_id": "a",
        "called_number": "+8613800000000",
        "caller_number": "05718000000",
    },
    IceAIAgentInstanceSensor: {"task_id": "t", "agent_id": "a", "channel_id": "c"},
    IceFetchCallLogOperator: {"task_id": "t", "agent_id": "a", "correlation_id": "c"},
    IceSessionAnalyticsOperator: {"task_id": "t", "agent_ids": "a"},
    IceAIAgentInstanceTrigger: {
        "ice_conn_id": "ice_default",
        "agent_id": "a",
        "window_start": "2026-01-01T00:00:00Z",
    },
}

#: Wrong values per kind of default; each must be refused.
WRONG: dict[str, tuple[Any, ...]] = {
    "flag": ("False", 1, None),
    "count": ("3", 2.5, None, True, -1),
    "seconds": ("8", None, math.nan, math.inf, -1, True),
    "epoch": ("8", math.nan, math.inf, -1),
}


def _kind(cls: type, parameter: inspect.Parameter) -> str | None:
    default = parameter.default
    if isinstance(default, bool):
        return "flag"
    if isinstance(default, int):
        return "count"
    if isinstance(default, (float, timedelta)):
        return "seconds"
    if cls is IceAIAgentInstanceTrigger and parameter.name in ("end_time", "not_found_deadline"):
        return "epoch"
    return None


def _parameters(cls: type) -> list[inspect.Parameter]:
    """The constructor parameters of ``cls`` and of its bases in this provider (not Airflow's)."""
    own = [c for c in cls.__mro__ if c.__module__.startswith("airflow_provider_ice.")]
    return [p for c in own for p in inspect.signature(c.__init__).parameters.values()]


def _cases() -> list[Any]:
    cases = []
    for cls in REQUIRED:
        for parameter in _parameters(cls):
            kind = _kind(cls, parameter)
            for value in WRONG.get(kind or "", ()):
                case_id = f"{cls.__name__}-{parameter.name}-{value!r}"
                cases.append(pytest.param(cls, parameter.name, value, id=case_id))
    return cases


def test_the_sweep_covers_the_parameters_of_the_issue() -> None:
    swept = {(c.values[0].__name__, c.values[1]) for c in _cases()}
    for name in ("poll_interval", "max_consecutive_errors", "timeout", "lookback", "deferrable"):
        assert ("IceGenerateAIAgentCallOperator", name) in swept
    for name in ("concurrency", "max_bytes", "download_timeout", "page_size"):
        assert ("IceSessionAnalyticsOperator", name) in swept
    for name in ("max_bytes", "download_timeout", "empty_url_timeout", "download_retries"):
        assert ("IceFetchCallLogOperator", name) in swept
    for name in ("poll_interval", "max_consecutive_errors", "end_time", "coalesce"):
        assert ("IceAIAgentInstanceTrigger", name) in swept
    assert len(swept) >= 35


@pytest.mark.parametrize(("cls", "name", "value"), _cases())
def test_a_wrong_value_is_refused_by_name_in_the_constructor(cls: type, name: str, value: Any) -> None:
    with pytest.raises(IceValidationError) as caught:
        cls(**REQUIRED[cls], **{name: value})
    assert caught.value.parameter == name
    assert str(caught.value).startswith(f"{name}: must be")
    assert repr(value) in str(caught.value) or name == "page_size"


@pytest.mark.parametrize("cls", list(REQUIRED))
def test_the_defaults_and_the_documented_forms_are_accepted(cls: type) -> None:
    assert cls(**REQUIRED[cls]) is not None
    signature = inspect.signature(cls.__init__).parameters
    if "timeout" in signature and cls is not IceAIAgentInstanceTrigger:
        assert cls(**REQUIRED[cls], timeout=timedelta(minutes=5)).timeout == 300.0
    if "poll_interval" in signature:
        assert cls(**REQUIRED[cls], poll_interval=2).poll_interval == 2.0
