"""Benchmark 6: Airflow CPU per call, one campaign task vs one mapped task instance per call.

Both run on a real deployment, the one ``tests/deployment`` starts (PostgreSQL, api-server,
scheduler with the LocalExecutor, dag-processor, triggerer as separate processes, the provider
installed from its wheel), with the DAGs of ``benchmarks/dags/ice_bench_scheduler.py``:

* ``ice_bench_mapped_calls``: ``n`` mapped ``IceGenerateAIAgentCallOperator`` task instances, each
  placing one call (and not waiting for it: the cheapest form of "one task per call");
* ``ice_bench_campaign``: one ``IceAgentCallCampaignOperator`` placing the same ``n`` calls and
  following each to its final status (deferrable).

Measured per DAG run, from the trigger to the run's end: the CPU time (user + system) of every
Airflow process tree, children included (the LocalExecutor's workers and every task process they
ran, the api-server that serves the task processes' execution API, the triggerer), read from
``/proc`` through psutil at both ends. A process that exited in between is counted through its
parent's ``children`` times once it is reaped. The deployment's idle CPU over a window of the same
kind (REST polling included) is measured first and subtracted, per component, pro rata of each run's
wall time; PostgreSQL is reported next to the Airflow figure, not in it. Calls are counted from the
emulator's own state.

It needs PostgreSQL and a wheel install of the provider with Airflow (a few minutes to set up), so
the smoke run skips it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

DAG_FILE = Path(__file__).resolve().parent / "dags" / "ice_bench_scheduler.py"
MAPPED, CAMPAIGN = "ice_bench_mapped_calls", "ice_bench_campaign"
AGENTS = {MAPPED: "bench-mapped-agent", CAMPAIGN: "bench-campaign-agent"}
TARGET_RATIO = 0.05
RECIPIENTS = 200
#: Short calls: people join after 0.5 s and talk for 1 s, so the campaign's waiting stays short.
EMULATOR_ARGS = ("--user-join-delay", "0.5", "--call-duration", "1")
#: Eight LocalExecutor workers (default 32): what a 2-core machine can run, and gentler on a shared one.
PARALLELISM = 8
IDLE_S = 20.0
RUN_TIMEOUT_S = 900.0
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants, plus what their reaped children used."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for member in family:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def _snapshot(stack: Any) -> dict[str, float]:
    names = (*AIRFLOW_COMPONENTS, "postgres")
    return {name: tree_cpu_s(stack.processes[name].pid) for name in names if name in stack.processes}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def _run_state(stack: Any, dag_id: str, run_id: str) -> str:
    return str(stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])


def _idle(stack: Any, seconds: float) -> dict[str, float]:
    """CPU seconds per second of each component with nothing running (polling the REST API as a run is)."""
    before, t0 = _snapshot(stack), time.monotonic()
    while time.monotonic() - t0 < seconds:
        stack.request("GET", f"/api/v2/dags/{MAPPED}/dagRuns?limit=1")
        time.sleep(1.0)
    wall = time.monotonic() - t0
    return {name: cpu / wall for name, cpu in _delta(_snapshot(stack), before).items()}


def _measure(stack: Any, dag_id: str, n: int, idle: dict[str, float]) -> dict[str, Any]:
    from tests.deployment.stack import wait_for

    run_id = f"bench_{int(time.time())}"
    before, t0 = _snapshot(stack), time.monotonic()
    stack.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})

    def finished() -> str | None:
        state = _run_state(stack, dag_id, run_id)
        return state if state in ("success", "failed") else None

    state = wait_for(f"the {dag_id} run", finished, RUN_TIMEOUT_S, 1.0)
    wall = time.monotonic() - t0
    time.sleep(3.0)  # let the workers reap their task processes: their CPU moves into the parents' times
    gross = _delta(_snapshot(stack), before)
    background = {name: rate * (wall + 3.0) for name, rate in idle.items()}
    net = {name: gross[name] - background.get(name, 0.0) for name in gross}
    airflow_gross = sum(gross[name] for name in AIRFLOW_COMPONENTS)
    airflow_net = sum(net[name] for name in AIRFLOW_COMPONENTS)
    tis_path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1"
    tis = stack.request("GET", tis_path)["total_entries"]
    succeeded = stack.request("GET", f"{tis_path}&state=success")["total_entries"]
    instances = stack.emulator_state(AGENTS[dag_id])["instances"]
    calls = Counter(json.loads(i["UserData"]).get("customer") for i in instances)
    return {
        "dag_id": dag_id,
        "state": state,
        "task_instances": tis,
        "task_instances_succeeded": succeeded,
        "calls": len(instances),
        "recipients_called_once": sum(1 for count in calls.values() if count == 1),
        "wall_s": wall,
        "cpu_s_by_component": gross,
        "background_cpu_s_by_component": background,
        "airflow_cpu_s": airflow_gross,
        "airflow_net_cpu_s": airflow_net,
        "postgres_net_cpu_s": net.get("postgres"),
        "airflow_net_cpu_ms_per_call": airflow_net / n * 1000,
        "airflow_cpu_ms_per_call": airflow_gross / n * 1000,
    }


def _airflow_is_3_3() -> bool:
    from importlib.metadata import version

    major, minor = (int(part) for part in version("apache-airflow").split(".")[:2])
    return (major, minor) >= (3, 3)


def run(*, smoke: bool, n: int = RECIPIENTS) -> dict[str, Any]:
    if smoke:
        return {
            "skipped": "needs PostgreSQL and a real Airflow deployment (minutes to set up): full run only",
            "recipients": n,
        }
    if not _airflow_is_3_3():
        return {"skipped": "the deployment (api-server, REST API v2) needs Airflow >= 3.3", "recipients": n}
    from tests.deployment.stack import DeploymentError, deployment, wait_for

    root = Path(tempfile.mkdtemp(prefix="ice-bench-scheduler-"))
    options = {
        "dag_files": (DAG_FILE,),
        "emulator_args": EMULATOR_ARGS,
        "extra_env": {
            "ICE_BENCH_RECIPIENTS": str(n),
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        },
    }
    try:
        t0 = time.monotonic()
        with deployment(root, **options) as stack:
            setup_s = time.monotonic() - t0
            dags = lambda: {d["dag_id"] for d in stack.request("GET", "/api/v2/dags")["dags"]}  # noqa: E731
            wait_for("the dag-processor to parse the DAGs", lambda: {MAPPED, CAMPAIGN} <= dags(), 180, 1)
            for dag_id in (MAPPED, CAMPAIGN):
                stack.request("PATCH", f"/api/v2/dags/{dag_id}?update_mask=is_paused", {"is_paused": False})
            idle = _idle(stack, IDLE_S)
            rows = [_measure(stack, dag_id, n, idle) for dag_id in (MAPPED, CAMPAIGN)]
    except DeploymentError as error:  # no PostgreSQL and no way to install it, say: the rest still runs
        reason = str(error).splitlines()[0]
        return {"skipped": f"the deployment could not be set up: {reason}", "recipients": n}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mapped, campaign = rows
    return {
        "recipients": n,
        "parallelism": PARALLELISM,
        "setup_s": setup_s,
        "idle_cpu_per_s_by_component": idle,
        "rows": rows,
        "ratio_net": campaign["airflow_net_cpu_s"] / mapped["airflow_net_cpu_s"],
        "ratio_gross": campaign["airflow_cpu_s"] / mapped["airflow_cpu_s"],
        "target_ratio": TARGET_RATIO,
    }


def targets(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, limit, met) rows for the report."""
    name = "Airflow CPU per call: one campaign task vs one mapped task instance per call"
    if "skipped" in result:
        return [(name, result["skipped"], f"<= {TARGET_RATIO:.2f}x", None)]
    n = result["recipients"]
    rows = result["rows"]
    ok = all(r["state"] == "success" and r["calls"] == r["recipients_called_once"] == n for r in rows)
    measured = f"{result['ratio_net']:.3f}x (gross {result['ratio_gross']:.3f}x)"
    return [(f"{name} ({n} recipients, LocalExecutor)", measured, f"<= {TARGET_RATIO:.2f}x",
             ok and result["ratio_net"] <= TARGET_RATIO)]  # fmt: skip


def section(result: dict[str, Any]) -> list[str]:
    """The report's Markdown section."""
    n = result["recipients"]
    title = f"## 4b. Airflow CPU per call on a real deployment ({n} recipients, LocalExecutor)"
    if "skipped" in result:
        return [title, "", f"Not measured: {result['skipped']}.", ""]
    header = ["DAG", "state", "task instances", "calls (once)", "wall s", "Airflow CPU s (net of idle)"]
    header += [f"{c} s" for c in AIRFLOW_COMPONENTS] + ["PostgreSQL s (net)", "Airflow CPU ms / call (net)"]
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["rows"]:
        called = f"{r['calls']} ({r['recipients_called_once']})"
        cells = [r["dag_id"], r["state"], str(r["task_instances"]), called]
        cells += [f"{r['wall_s']:.1f}", f"{r['airflow_cpu_s']:.1f} ({r['airflow_net_cpu_s']:.1f})"]
        cells += [f"{r['cpu_s_by_component'][c]:.1f}" for c in AIRFLOW_COMPONENTS]
        cells += [f"{r['postgres_net_cpu_s']:.1f}", f"{r['airflow_net_cpu_ms_per_call']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    idle_rates = result["idle_cpu_per_s_by_component"].items()
    idle = ", ".join(f"{c} {rate * 1000:.0f} ms/s" for c, rate in idle_rates)
    return [
        *lines,
        "",
        f"CPU of whole process trees (children included), gross and net of the idle rate ({idle}) over each "
        f"run's wall time. LocalExecutor with parallelism {result['parallelism']}; deployment set up in "
        f"{result['setup_s']:.0f} s (not counted). The mapped DAG only places its calls; the campaign also "
        "waits for every call to finish (in the triggerer).",
        "",
    ]


if __name__ == "__main__":
    print(json.dumps(run(smoke=False), indent=2))
