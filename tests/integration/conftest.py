"""Fixtures of the integration tests: hostile servers (the emulator fixtures come from its pytest plugin)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.hostile import HostileServer


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    server = HostileServer()
    conn = {
        "conn_type": "alibaba_ice",
        "login": "LTAIhostile",
        "password": "hostile-secret",
        "extra": {"endpoint": server.url, "max_retries": 0, "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", json.dumps(conn))
    yield server
    server.close()


@pytest.fixture
def elsewhere() -> Iterator[HostileServer]:
    """Another host (another port): redirects there must never be followed."""
    server = HostileServer()
    yield server
    server.close()
