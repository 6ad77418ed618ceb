"""The measuring parts of benchmarks/scheduler_cpu.py (the deployment itself runs in ``make bench``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import scheduler_cpu
from benchmarks.report import render_markdown

# A parent that runs a child burning ~0.6 s of CPU, reaps it, says so, then idles.
_PARENT = """
import subprocess, sys, time
BURN = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.6: pass"
subprocess.run([sys.executable, "-c", BURN])
print("reaped", flush=True)
time.sleep(30)
"""


def test_tree_cpu_counts_children_that_have_exited_and_been_reaped() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "reaped"
        # The child is gone: only the parent's children times still hold its 0.6 s.
        assert scheduler_cpu.tree_cpu_s(parent.pid) >= 0.55
    finally:
        parent.kill()
        parent.wait()
    assert scheduler_cpu.tree_cpu_s(parent.pid) == 0.0  # no such process any more


def test_smoke_skips_with_the_reason() -> None:
    result = scheduler_cpu.run(smoke=True)
    assert "PostgreSQL" in result["skipped"]
    ((_, measured, limit, met),) = scheduler_cpu.targets(result)
    assert met is None
    assert "PostgreSQL" in measured
    assert limit == "<= 0.05x"


def test_a_deployment_that_cannot_be_set_up_is_a_skip_with_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.deployment import stack

    def no_postgres() -> Path:
        raise stack.DeploymentError("PostgreSQL is not installed and cannot be installed here\nmore")

    monkeypatch.setattr(stack, "ensure_postgres", no_postgres)
    monkeypatch.setattr(scheduler_cpu, "_airflow_is_3_3", lambda: True)
    result = scheduler_cpu.run(smoke=False)
    reason = "the deployment could not be set up: PostgreSQL is not installed and cannot be installed here"
    assert result == {"skipped": reason, "recipients": 200}


def _row(dag_id: str, net: float, calls: int = 200, once: int = 200) -> dict[str, Any]:
    components = dict.fromkeys(scheduler_cpu.AIRFLOW_COMPONENTS, net / 4)
    return {
        "dag_id": dag_id, "state": "success", "task_instances": 1, "task_instances_succeeded": 1,
        "calls": calls, "recipients_called_once": once, "wall_s": 10.0, "cpu_s_by_component": components,
        "airflow_cpu_s": net + 1, "airflow_net_cpu_s": net, "postgres_net_cpu_s": 0.5,
        "airflow_net_cpu_ms_per_call": net / 200 * 1000,
    }  # fmt: skip


def _result(mapped: dict[str, Any], campaign: dict[str, Any]) -> dict[str, Any]:
    return {
        "recipients": 200, "parallelism": 8, "setup_s": 40.0, "rows": [mapped, campaign],
        "idle_cpu_per_s_by_component": {"scheduler": 0.02}, "target_ratio": 0.05,
        "ratio_net": campaign["airflow_net_cpu_s"] / mapped["airflow_net_cpu_s"],
        "ratio_gross": campaign["airflow_cpu_s"] / mapped["airflow_cpu_s"],
    }  # fmt: skip


def test_the_target_needs_the_ratio_and_every_recipient_called_once() -> None:
    good = _result(_row(scheduler_cpu.MAPPED, 80.0), _row(scheduler_cpu.CAMPAIGN, 2.4))
    assert [t[3] for t in scheduler_cpu.targets(good)] == [True]
    too_costly = _result(_row(scheduler_cpu.MAPPED, 80.0), _row(scheduler_cpu.CAMPAIGN, 4.8))
    assert [t[3] for t in scheduler_cpu.targets(too_costly)] == [False]
    called_twice = _result(_row(scheduler_cpu.MAPPED, 80.0), _row(scheduler_cpu.CAMPAIGN, 2.4, 201, 199))
    assert [t[3] for t in scheduler_cpu.targets(called_twice)] == [False]
    report = {
        "smoke": False, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "total_s": 1.0,
        "machine": {"python": "3", "platform": "p", "cpus": 2, "memory_gb": 1, "load_average_at_start": [0]},
        "results": {"scheduler_cpu": good},
    }  # fmt: skip
    markdown = render_markdown(report)
    assert "| Airflow CPU per call: one campaign task vs one mapped task instance per call" in markdown
    assert "| 0.030x (gross 0.042x) | <= 0.05x | **met** |" in markdown
    assert f"| {scheduler_cpu.CAMPAIGN} | success |" in markdown
