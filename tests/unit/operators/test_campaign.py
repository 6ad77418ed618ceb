"""IceAgentCallCampaignOperator's parameters: typed errors naming the parameter, before any request."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.operators.campaign import IceAgentCallCampaignOperator, IceCampaignInputError

BASE: dict[str, Any] = {"task_id": "campaign", "agent_id": "a", "recipients": [], "recipient_key": "id"}


@pytest.mark.parametrize(
    ("changes", "parameter"),
    [
        ({"call_type": "fax"}, "call_type"),
        ({"call_type": "phone"}, "phone_field"),
        ({"max_active_calls": 0}, "max_active_calls"),
        ({"max_active_calls": "8"}, "max_active_calls"),
        ({"max_active_calls": True}, "max_active_calls"),
        ({"calls_per_second": 0}, "calls_per_second"),
        ({"calls_per_second": "2"}, "calls_per_second"),
        ({"calls_per_second": float("nan")}, "calls_per_second"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"redial_after": -1}, "redial_after"),
        ({"redial_after": timedelta(seconds=-5)}, "redial_after"),
        ({"lookup_tolerance": float("inf")}, "lookup_tolerance"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": None}, "poll_interval"),
        ({"not_found_timeout": -1}, "not_found_timeout"),
        ({"calling_window": (9, 9)}, "calling_window"),
        ({"calling_window": "morning"}, "calling_window"),
        ({"lookback": 0}, "lookback"),
    ],
)
def test_bad_parameters_are_refused_by_name(changes: dict[str, Any], parameter: str) -> None:
    with pytest.raises(IceValidationError) as caught:
        IceAgentCallCampaignOperator(**{**BASE, **changes})
    assert caught.value.parameter == parameter
    assert str(caught.value).startswith(f"{parameter}: ")


def test_defaults_and_templated_fields() -> None:
    op = IceAgentCallCampaignOperator(**BASE)
    assert (op.max_active_calls, op.calls_per_second, op.lookup_tolerance) == (10, 2.0, 120.0)
    assert (op.policy.max_attempts, op.policy.redial_after, op.window) == (1, 3600.0, None)
    # The UserData template is rendered per recipient, never with the task's context.
    assert "user_data_template" not in op.template_fields
    assert {"agent_id", "recipients", "recipient_key", "destination", "campaign_id"} <= set(
        op.template_fields
    )


def test_input_errors_fail_without_retry() -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    assert issubclass(IceCampaignInputError, AirflowFailException)


def test_call_log_options_are_checked_before_any_request() -> None:
    base: dict[str, Any] = {"task_id": "c", "agent_id": "a", "recipients": [], "recipient_key": "id"}
    with pytest.raises(IceValidationError, match="call_log_destination"):
        IceAgentCallCampaignOperator(**base, call_log_destination="/tmp/logs")
    with pytest.raises(IceValidationError, match="fetch_call_logs"):
        IceAgentCallCampaignOperator(**base, fetch_call_logs="yes")
    assert IceAgentCallCampaignOperator(**base).call_log_folder() is None
    operator = IceAgentCallCampaignOperator(**base, fetch_call_logs=True, call_log_destination="/tmp/logs")
    assert str(operator.call_log_folder()) == "/tmp/logs"
    assert "call_log_destination" in operator.template_fields
