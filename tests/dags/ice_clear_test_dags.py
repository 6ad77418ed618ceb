"""Test-only DAGs for tests/integration/test_call_clears.py: retries and Clears around a placed call.

Short timings: the emulator's simulated user joins after ~0.2 s; each test sets the call length.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_ice.api.errors import IceOutcomeUnknownError
from airflow_provider_ice.operators.agent_call import (
    IceGenerateAIAgentCallOperator,
    IceStartAIAgentOutboundCallOperator,
)

AGENT_ID = "agent-clears"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: No listing lag is expected unless a test sets one: keep the store-less fallbacks short.
TOLERANCE = 2.0
PHONE = {"called_number": "+8613800138000", "caller_number": "+8613900139000"}


class DiesAfterSendMixin:
    """The first try dies right after the creating request, before its answer is recorded.

    With ``crash_map_index`` set, only that map index dies. A lost answer (outcome unknown) dies
    the same way, which is what a worker killed while looking for its instance looks like.
    """

    crash_map_index: int | None = None

    def send(self, context: Any, user_data: Any) -> dict[str, Any]:
        ti = context["ti"]
        dies = ti.try_number == 1 and self.crash_map_index in (None, ti.map_index)
        try:
            fields = super().send(context, user_data)  # type: ignore[misc]
        except IceOutcomeUnknownError:
            if dies:
                raise RuntimeError("simulated worker death after a lost answer") from None
            raise
        if dies:
            raise RuntimeError("simulated worker death right after the call was placed")
        return fields


class DiesAfterCall(DiesAfterSendMixin, IceGenerateAIAgentCallOperator):
    """App call whose first try dies after sending."""


class DiesAfterPhoneCall(DiesAfterSendMixin, IceStartAIAgentOutboundCallOperator):
    """Phone call whose first try dies after sending."""


class DiesAfterCallIndexOne(DiesAfterCall):
    crash_map_index = 1


class WithoutStateStore(DiesAfterCall):
    """As on Airflow < 3.3: the context has no task state store."""

    def execute(self, context: Any) -> dict[str, Any]:
        context.pop("task_state_store", None)  # type: ignore[attr-defined]
        return super().execute(context)


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, tags=["ice-test"], **kwargs)


RETRY = {"retries": 1, "retry_delay": timedelta(seconds=0)}

# A sibling is cleared between the call's tries (the clear happens in the test).
for _kind, _cls, _extra in (
    ("app", DiesAfterCall, {"user_id": "ann"}),
    ("phone", DiesAfterPhoneCall, PHONE),
    ("nostore", WithoutStateStore, {}),
):
    with _dag(f"ice_clear_sibling_{_kind}") as _sibling_dag:
        _sibling = IceGenerateAIAgentCallOperator(
            task_id="sibling", agent_id="agent-sibling", user_data={"who": "sib"}, lookup_tolerance=TOLERANCE
        )
        _call = _cls(
            task_id="call",
            agent_id=AGENT_ID,
            user_data={"customer": "ann"},
            lookup_tolerance=TOLERANCE,
            **RETRY,
            **_extra,
        )
    globals()[_sibling_dag.dag_id] = _sibling_dag

# The same task cleared after it finished / while its call runs (the clear happens in the test).
for _kind, _cls, _extra in (
    ("app", IceGenerateAIAgentCallOperator, {"user_id": "ann"}),
    ("phone", IceStartAIAgentOutboundCallOperator, PHONE),
):
    with _dag(f"ice_clear_self_{_kind}") as _self_dag:
        _cls(
            task_id="call",
            agent_id=AGENT_ID,
            user_data={"customer": "bo"},
            lookup_tolerance=TOLERANCE,
            **RETRY,
            **_extra,
        )
    globals()[_self_dag.dag_id] = _self_dag

# A lost answer, a dead worker, and a listing that shows the instance only 40 s after creation.
with _dag("ice_clear_lagging_listing") as ice_clear_lagging_listing:
    DiesAfterCall(
        task_id="call",
        agent_id=AGENT_ID,
        user_data={"customer": "cy"},
        lookup_tolerance=60,
        poll_interval=1.0,
        **RETRY,
    )

# Mapped calls: map index 1 dies after its call; map index 0 is cleared before index 1's retry.
with _dag("ice_clear_mapped") as ice_clear_mapped:
    DiesAfterCallIndexOne.partial(
        task_id="call", agent_id=AGENT_ID, lookup_tolerance=TOLERANCE, **RETRY
    ).expand(user_data=[{"customer": name} for name in ("eve", "fay", "gus")])

# UserData in every shape: rendered from dag_run.conf as given by the test.
with _dag("ice_clear_user_data") as ice_clear_user_data:
    IceGenerateAIAgentCallOperator(
        task_id="call",
        agent_id=AGENT_ID,
        user_data="{{ dag_run.conf['user_data'] }}",
        lookup_tolerance=TOLERANCE,
        retries=2,
        retry_delay=timedelta(seconds=0),
    )

with _dag("ice_clear_user_data_native", render_template_as_native_obj=True) as ice_clear_user_data_native:
    IceGenerateAIAgentCallOperator(
        task_id="call",
        agent_id=AGENT_ID,
        user_data="{{ dag_run.conf['user_data'] }}",
        lookup_tolerance=TOLERANCE,
    )

# correlation=False and a lost answer: the task fails without retry, whatever `retries` says.
with _dag("ice_clear_uncorrelated_lost_answer") as ice_clear_uncorrelated_lost_answer:
    IceGenerateAIAgentCallOperator(
        task_id="call",
        agent_id=AGENT_ID,
        user_data="plain text is fine without correlation",
        correlation=False,
        retries=2,
        retry_delay=timedelta(seconds=0),
    )

# The reliability suite's clears under faults (tests/reliability/test_clears.py).
with _dag("ice_reliability_clears") as ice_reliability_clears:
    IceGenerateAIAgentCallOperator(
        task_id="call",
        agent_id="reliability-clears",
        user_data={"customer": "reliability", "dag_run": "{{ run_id }}"},
        lookup_tolerance=10,
        poll_interval=0.1,
        retries=4,
        retry_delay=timedelta(0),
    )
