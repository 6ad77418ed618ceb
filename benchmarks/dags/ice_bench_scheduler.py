"""Two ways to call the same recipients, for ``benchmarks/scheduler_cpu.py`` on a real deployment.

* ``ice_bench_mapped_calls``: one mapped ``IceGenerateAIAgentCallOperator`` task instance per
  recipient (how ``ice_scheduled_agent_calls`` calls people), placing the call only.
* ``ice_bench_campaign``: one ``IceAgentCallCampaignOperator`` task that places every call and
  follows each to its final status (deferrable: the waits run in the triggerer).

``ICE_BENCH_RECIPIENTS`` (env) sets how many recipients both DAGs call; ``ICE_DATA_DIR`` is where
the campaign writes its results.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.operators.campaign import IceAgentCallCampaignOperator

N = int(os.environ.get("ICE_BENCH_RECIPIENTS", "200"))
RECIPIENTS = [{"id": f"r{i:05d}", "name": f"Person {i}"} for i in range(N)]
START = datetime(2026, 1, 1, tzinfo=timezone.utc)

with DAG(dag_id="ice_bench_mapped_calls", schedule=None, start_date=START, catchup=False) as mapped:
    IceGenerateAIAgentCallOperator.partial(task_id="call", agent_id="bench-mapped-agent").expand(
        user_data=[{"customer": r["id"], "name": r["name"]} for r in RECIPIENTS]
    )

with DAG(dag_id="ice_bench_campaign", schedule=None, start_date=START, catchup=False) as campaign:
    IceAgentCallCampaignOperator(
        task_id="campaign",
        agent_id="bench-campaign-agent",
        recipients=RECIPIENTS,
        recipient_key="id",
        user_data_template={"customer": "{{ id }}", "name": "{{ name }}"},
        max_active_calls=N,
        calls_per_second=50,
        poll_interval=1.0,
        deferrable=True,
        destination=os.path.join(os.environ.get("ICE_DATA_DIR", "/tmp"), "campaigns"),
    )
