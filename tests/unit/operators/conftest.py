"""Fixtures of the call operator tests: the connection, and the hook's creating and stopping calls mocked."""

from __future__ import annotations

from unittest.mock import patch

import pytest

from airflow_provider_ice.hooks.ice import IceHook
from tests.unit.agent_fakes import CONN_JSON, generate_response


@pytest.fixture(autouse=True)
def _conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", CONN_JSON)


@pytest.fixture
def generate():
    with patch.object(IceHook, "generate_ai_agent_call", return_value=generate_response()) as mock:
        yield mock


@pytest.fixture
def stop():
    with patch.object(IceHook, "stop_ai_agent_instance") as mock:
        yield mock
