"""Fixtures of the reliability suite: soak switch, figures report, DAG-run helpers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._support import FIGURES, render_markdown

#: Where the suite writes its figures as JSON (and Markdown next to it, ``.md``), when set.
REPORT_ENV = "ICE_RELIABILITY_REPORT"


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest tests/reliability --soak``."""
    return bool(request.config.getoption("--soak", default=False))


@pytest.fixture(scope="session")
def reliability_report() -> Iterator[dict[str, Any]]:
    """Sections of figures; written to ``$ICE_RELIABILITY_REPORT`` (JSON + .md) at session end."""
    yield FIGURES
    if FIGURES:
        FIGURES["bad_inputs"] = _bad_inputs_tried()
    target = os.environ.get(REPORT_ENV)
    if target and FIGURES:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        existing: dict[str, Any] = {}
        if path.exists():
            try:
                existing = json.loads(path.read_text())
            except ValueError:
                existing = {}
        merged = {**existing, **FIGURES}
        path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        path.with_suffix(".md").write_text(render_markdown(merged))


def _bad_inputs_tried() -> dict[str, int]:
    """Sizes of the adversarial tables that ``make test`` runs (tests/integration), for the README figures."""
    from tests.integration import test_adversarial_connection as adversarial_connection
    from tests.integration import test_adversarial_inputs as adversarial
    from tests.integration import test_hostile_call_logs as hostile_logs
    from tests.integration import test_hostile_responses as hostile

    figures = {
        "invalid_arguments": len(adversarial.CASES),
        "invalid_connections_x_entry_points": len(adversarial_connection.CONNECTIONS) * 3,
        "plain_http_refusals": 1,
        "hostile_api_answers": len(hostile.API_CASES) + 4,
        "hostile_call_log_downloads": len(hostile_logs.DOWNLOAD_CASES),
    }
    figures["total"] = sum(figures.values())
    return figures


@pytest.fixture
def dag_conn(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``dag_conn(emulator, **extra)``: point ``ice_default`` at the emulator with extra settings."""

    def point(emulator: Any, **extra: Any) -> dict[str, Any]:
        conn = json.loads(emulator.airflow_conn_json())
        conn["extra"].update(extra)
        monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", json.dumps(conn))
        return conn

    return point
