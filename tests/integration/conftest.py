"""Fixtures of the integration tests: hostile servers, recorded triggers.

The emulator fixtures come from its pytest plugin.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def triggers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The serialized form of every trigger dag.test() runs inline."""
    from tests.airflow_compat import wrap_inline_trigger

    seen: list[tuple[str, dict[str, Any]]] = []

    def recording(original: Any, trigger: Any, *rest: Any) -> Any:
        seen.append(trigger.serialize())
        return original(trigger, *rest)

    wrap_inline_trigger(monkeypatch, recording)
    return seen
