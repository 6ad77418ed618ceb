"""Fixtures shared by the DAG-level integration tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def triggers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The serialized form of every trigger dag.test() runs inline."""
    import airflow.sdk.definitions.dag as dag_module

    seen: list[tuple[str, dict[str, Any]]] = []
    original = dag_module._run_inline_trigger

    def recording(trigger: Any, task_sdk_ti: Any) -> Any:
        seen.append(trigger.serialize())
        return original(trigger, task_sdk_ti)

    monkeypatch.setattr(dag_module, "_run_inline_trigger", recording)
    return seen
