"""Every hook test starts without ICE credentials in the environment and without a default connection."""

from __future__ import annotations

import pytest

from .connections import ENV_KEYS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_ICE_DEFAULT", raising=False)
