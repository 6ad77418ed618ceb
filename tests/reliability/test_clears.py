"""Clears and a lagging listing under the fault mix: a Clear adopts a running call and calls anew
after a finished one, and no retry ever places a second call.

Each run of ``ice_reliability_clears`` goes through ``dag.test()`` (real retries), is then cleared
while its call is still running (Airflow's ``clear_task_instances``), resumed, and cleared again once
that call finished. The emulator lists a new instance only ``LISTING_LAG`` seconds after creating
it, on top of the fault mix of test_fault_injection.py. Judged from the emulator's state only: per
run exactly two instances, one per correlation id, the first adopted by the first Clear.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_ice.api.correlation import make_correlation_id
from airflow_provider_ice.emulator import IceEmulator
from tests.airflow_clears import clear, resume
from tests.airflow_compat import run_dag
from tests.dags.ice_clear_test_dags import ice_reliability_clears as dag
from tests.reliability._support import (
    fault_figures,
    instances_by_correlation,
    start_emulator,
    stopwatch,
    task_tries,
    xcom_value,
)
from tests.reliability.test_fault_injection import CLIENT_TIMEOUT, FAULTS

AGENT = "reliability-clears"
RUNS = 6
SOAK_RUNS = 30
LISTING_LAG = 2.0
RETRIES = 4


def _wait_finished(emulator: IceEmulator, correlation_id: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        mine = instances_by_correlation(emulator, AGENT).get(correlation_id, [])
        if mine and all(i["Status"] == "Finished" for i in mine):
            return
        assert time.monotonic() < deadline, f"call {correlation_id} did not finish"
        time.sleep(0.1)


def test_clears_and_a_lagging_listing_under_faults(
    airflow_db: str,
    request: pytest.FixtureRequest,
    dag_conn: Callable[..., dict[str, Any]],
    soak: bool,
    reliability_report: dict[str, Any],
) -> None:
    runs = SOAK_RUNS if soak else RUNS
    emulator = start_emulator(
        user_join_delay=0.1, call_duration=6.0, seed=11, **{**FAULTS, "listing_lag": LISTING_LAG}
    )
    request.addfinalizer(emulator.stop)
    dag_conn(emulator, timeout=CLIENT_TIMEOUT, connect_timeout=CLIENT_TIMEOUT)
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    retries = 0
    with stopwatch() as timing:
        for number in range(runs):
            if number == 0:
                emulator.force_faults("GenerateAIAgentCall", "slow_create")  # a lost answer, for sure
            run = run_dag(dag)
            first_id = make_correlation_id(dag.dag_id, run.run_id, "call", -1)
            retries += task_tries(dag.dag_id, run.run_id)["call"][1] - 1
            # Clear while the call runs: the record must stand for the same call.
            clear(dag.dag_id, run.run_id, "call")
            states = [str(run.state), resume(dag, run.run_id)]
            adopted = xcom_value(dag.dag_id, run.run_id, "call")
            outcomes["adopted_on_clear_while_running"] += bool(adopted and adopted["adopted"])
            # Clear after it finished: a new call with a new correlation id.
            _wait_finished(emulator, first_id)
            try_number = task_tries(dag.dag_id, run.run_id)["call"][1]
            clear(dag.dag_id, run.run_id, "call")
            states.append(resume(dag, run.run_id))
            second_id = make_correlation_id(dag.dag_id, run.run_id, "call", -1, try_number)
            placed = xcom_value(dag.dag_id, run.run_id, "call")
            outcomes["new_call_on_clear_after_finished"] += bool(
                placed and not placed["adopted"] and placed["correlation_id"] == second_id
            )
            retries += task_tries(dag.dag_id, run.run_id)["call"][1] - try_number - 1
            grouped = instances_by_correlation(emulator, AGENT)
            counts = {cid: len(grouped.get(cid, [])) for cid in (first_id, second_id)}
            if counts != {first_id: 1, second_id: 1}:
                problems.append(f"run {number}: instances per correlation id {counts}")
            if states != ["success"] * 3:
                problems.append(f"run {number}: states {states}")

    instances = emulator.state(AGENT)["instances"]
    per_id = Counter(len(v) for v in instances_by_correlation(emulator, AGENT).values())
    figures = {
        "runs": runs,
        "clears": 2 * runs,
        "listing_lag_seconds": LISTING_LAG,
        "agent_instances": len(instances),
        "duplicate_calls": sum((n - 1) * k for n, k in per_id.items() if n > 1),
        "clear_while_running_adopted": outcomes["adopted_on_clear_while_running"],
        "clear_after_finished_called_anew": outcomes["new_call_on_clear_after_finished"],
        "airflow_task_retries": retries,
        "faults_injected": fault_figures(emulator),
        "wall_seconds": timing["seconds"],
    }
    reliability_report["clears_soak" if soak else "clears"] = figures
    print(figures)
    assert not problems, "\n".join(problems)
    assert len(instances) == 2 * runs
    assert figures["duplicate_calls"] == 0
    assert figures["clear_while_running_adopted"] == runs
    assert figures["clear_after_finished_called_anew"] == runs
    # The lag and the lost answer really happened, or this proves nothing.
    assert figures["faults_injected"]["listing_lag"] > 0
    assert figures["faults_injected"]["by_action"].get("slow_create/GenerateAIAgentCall", 0) >= 1
