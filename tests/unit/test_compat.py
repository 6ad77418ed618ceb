"""airflow_provider_ice._compat and the connection form, on whichever Airflow runs the suite."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from airflow_provider_ice import CONN_TYPE, _compat, get_provider_info
from airflow_provider_ice._compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
    AIRFLOW_VERSION_STRING,
    CronDataIntervalTimetable,
    IceAirflowVersionError,
    cron_schedule,
    has_feature,
    make_asset,
    require_feature,
    task_state_store,
)
from airflow_provider_ice.hooks.ice import IceHook
from tests.unit.agent_fakes import FakeStateStore

CONN_FIELDS = set(get_provider_info()["connection-types"][0]["conn-fields"])


def test_task_state_store_is_handed_out_only_where_airflow_has_one() -> None:
    store = FakeStateStore()
    assert task_state_store({"task_state_store": store}) is (store if AIRFLOW_V_3_3_PLUS else None)
    assert task_state_store({}) is None


def test_a_missing_feature_fails_naming_the_feature_and_both_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(_compat.FEATURE_MIN_VERSION, "time travel", (99, 1, 0))
    assert not has_feature("time travel")
    with pytest.raises(IceAirflowVersionError) as raised:
        require_feature("time travel")
    assert (
        str(raised.value) == f"time travel needs Airflow >= 99.1.0; this is Airflow {AIRFLOW_VERSION_STRING}"
    )


@pytest.mark.parametrize("feature", sorted(_compat.FEATURE_MIN_VERSION))
def test_feature_gates_follow_the_running_version(feature: str) -> None:
    present = _compat.FEATURE_MIN_VERSION[feature] <= _compat.AIRFLOW_VERSION
    assert has_feature(feature) is present
    if present:
        require_feature(feature)
    else:
        with pytest.raises(IceAirflowVersionError, match=feature.split(" (")[0]):
            require_feature(feature)


def test_cron_schedule_reads_the_expression_and_time_zone_of_a_dag_timetable() -> None:
    from datetime import datetime, timezone

    from airflow.providers.common.compat.sdk import DAG

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)  # Airflow 2 needs one with a schedule
    zoned = CronDataIntervalTimetable("30 2 * * *", timezone="Asia/Shanghai")
    assert cron_schedule(DAG("cron_compat", schedule=zoned, start_date=start).timetable) == (
        "30 2 * * *",
        "Asia/Shanghai",
    )
    daily = DAG("cron_string_compat", schedule="0 3 * * *", start_date=start)
    assert cron_schedule(daily.timetable) == ("0 3 * * *", "UTC")
    assert cron_schedule(DAG("manual_compat", schedule=None).timetable) is None
    assert cron_schedule(None) is None


def test_call_log_asset_is_an_asset_or_a_dataset() -> None:
    asset = make_asset("ice_call_logs_all", "ice://call-logs/all")
    assert asset.uri == "ice://call-logs/all"
    assert type(asset).__name__ == ("Asset" if AIRFLOW_V_3_0_PLUS else "Dataset")
    if AIRFLOW_V_3_0_PLUS:
        assert asset.name == "ice_call_logs_all"


def _widgets() -> dict[str, Any]:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    return {
        key.removeprefix(f"extra__{CONN_TYPE}__"): info
        for key, info in manager.connection_form_widgets.items()
        if key.startswith(f"extra__{CONN_TYPE}__")
    }


@pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS and importlib.util.find_spec("flask_appbuilder") is None,
    reason="connection-form fields: Airflow < 3.2 builds every provider's form with Flask AppBuilder, "
    "which is not installed here (the FAB provider brings it)",
)
def test_the_running_airflow_shows_every_connection_field_and_hides_the_token() -> None:
    """The "connection-form metadata" cell: declarative on 3.2+, built from the same metadata below."""
    from airflow.providers_manager import ProvidersManager

    widgets = _widgets()
    assert set(widgets) == CONN_FIELDS
    assert {name for name, info in widgets.items() if info.is_sensitive} == {"security_token"}
    behaviour = ProvidersManager().field_behaviours[CONN_TYPE]
    assert behaviour["relabeling"] == {"login": "AccessKey ID", "password": "AccessKey secret"}
    assert set(behaviour["hidden_fields"]) == {"host", "port", "schema"}


@pytest.mark.skipif(
    AIRFLOW_V_3_2_PLUS or importlib.util.find_spec("wtforms") is None,
    reason="the WTForms connection form: Airflow 3.2+ reads conn-fields instead, and below 3.2 it needs "
    "WTForms (with the FAB provider)",
)
def test_the_legacy_form_is_derived_from_the_declarative_metadata() -> None:
    widgets = IceHook.get_connection_form_widgets()
    assert set(widgets) == CONN_FIELDS
    assert type(widgets["security_token"]).__name__ == "UnboundField"
    assert widgets["security_token"].field_class.__name__ == "PasswordField"
    assert widgets["max_retries"].field_class.__name__ == "IntegerField"
    assert IceHook.get_ui_field_behaviour()["relabeling"]["login"] == "AccessKey ID"
