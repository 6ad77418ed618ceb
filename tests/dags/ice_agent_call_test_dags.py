"""Test-only DAGs for tests/integration/test_agent_call_dags.py (sync and deferrable variants).

Short timings throughout: the emulator's simulated user joins after ~0.2 s and talks ~0.5 s.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor

AGENT_ID = "agent-itest"
POLL = 0.2
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class CrashAfterCallOperator(IceGenerateAIAgentCallOperator):
    """Dies on its first try right after GenerateAIAgentCall returned, before recording anything.

    That is what a worker killed mid-task looks like to the next try: the call exists, and Airflow
    knows only that a creating request was sent (the write-ahead record).
    """

    def send(self, context: Any, user_data: Any) -> dict[str, Any]:
        fields = super().send(context, user_data)
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after the call was placed")
        return fields

    def _remember(self, context: Any, store: Any, record: dict[str, Any]) -> None:
        # A crashed worker never recorded the answer: the retry finds only the write-ahead record
        # and relies on the lookup.
        if context["ti"].try_number > 1:
            super()._remember(context, store, record)


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, tags=["ice-test"])


for _mode in ("sync", "deferrable"):
    _deferrable = _mode == "deferrable"

    with _dag(f"ice_test_call_wait_{_mode}") as _wait_dag:
        IceGenerateAIAgentCallOperator(
            task_id="call",
            agent_id=AGENT_ID,
            user_data={"customer": "{{ dag_run.conf.get('customer', 'ann') }}"},
            user_id="ann",
            wait_for_completion=True,
            deferrable=_deferrable,
            poll_interval=POLL,
            timeout=60,
        )
    globals()[_wait_dag.dag_id] = _wait_dag

    with _dag(f"ice_test_call_crash_retry_{_mode}") as _crash_dag:
        _call = CrashAfterCallOperator(
            task_id="call",
            agent_id=AGENT_ID,
            user_data={"customer": "bo"},
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
        IceAIAgentInstanceSensor(
            task_id="wait",
            call=_call.output,
            deferrable=_deferrable,
            poke_interval=POLL,
            timeout=60,
        )
    globals()[_crash_dag.dag_id] = _crash_dag

    with _dag(f"ice_test_call_lost_response_{_mode}") as _lost_dag:
        IceGenerateAIAgentCallOperator(
            task_id="call",
            agent_id=AGENT_ID,
            user_data={"customer": "cy"},
            wait_for_completion=True,
            deferrable=_deferrable,
            poll_interval=POLL,
        )
    globals()[_lost_dag.dag_id] = _lost_dag

    with _dag(f"ice_test_call_timeout_{_mode}") as _timeout_dag:
        IceGenerateAIAgentCallOperator(
            task_id="call",
            agent_id=AGENT_ID,
            user_data={"customer": "dee"},
            wait_for_completion=True,
            deferrable=_deferrable,
            poll_interval=POLL,
            timeout=1.0,
        )
    globals()[_timeout_dag.dag_id] = _timeout_dag

    with _dag(f"ice_test_call_mapped_{_mode}") as _mapped_dag:
        _calls = IceGenerateAIAgentCallOperator.partial(task_id="call", agent_id=AGENT_ID).expand(
            user_data=[{"customer": name} for name in ("eve", "fay", "gus")]
        )
        IceAIAgentInstanceSensor.partial(
            task_id="wait", deferrable=_deferrable, poke_interval=POLL, timeout=60
        ).expand(call=_calls.output)
    globals()[_mapped_dag.dag_id] = _mapped_dag
