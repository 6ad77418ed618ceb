"""``alibaba_ice`` connections for hook tests, set through the environment."""

from __future__ import annotations

import json
from typing import Any

import pytest

ENV_KEYS = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN")


def set_conn(
    monkeypatch: pytest.MonkeyPatch,
    conn_id: str = "ice_default",
    login: str | None = "LTAIhookKeyId",
    password: str | None = "hook-secret-value-42",
    **extra: Any,
) -> None:
    conn: dict[str, Any] = {"conn_type": "alibaba_ice", "extra": extra}
    if login is not None:
        conn["login"] = login
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
