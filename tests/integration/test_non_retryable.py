"""Failures a retry cannot fix fail at once, in real Airflow state (``dag.test()``, retries=2)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_ice.emulator import IceEmulator
from tests.airflow_compat import run_dag

pytestmark = pytest.mark.integration


def test_non_retryable_failures_are_not_retried(
    airflow_db: str, ice_connection: IceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = {
        "conn_type": "alibaba_ice",
        "login": ice_connection.access_key_id,
        "password": "not-the-secret",
        "extra": {"endpoint": ice_connection.url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ICE_REFUSED", json.dumps(refused))
    from tests.dags.ice_non_retryable_test_dags import ice_test_non_retryable

    run = run_dag(ice_test_non_retryable)
    outcomes = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    # With retries=2 and no delay, a retried task would show try 3.
    assert outcomes == {
        "analytics_without_interval": ("failed", 1),
        "call_with_refused_keys": ("failed", 1),
    }
    assert ice_connection.state()["instances"] == []  # the refused call placed nothing
