"""The campaign operator against the service's own limits: the emulator's agent concurrent-call cap.

Counts come from the emulator's own state, as in :mod:`tests.integration.test_campaign_dags`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_ice.emulator import IceEmulator
from tests.integration.test_campaign_dags import (
    CAMPAIGN_EMULATOR,
    assert_each_person_called_as_the_policy_says,
    peak_concurrency,
    results,
    return_value,
    run_dag,
    write_recipients,
)

pytestmark = [pytest.mark.integration, CAMPAIGN_EMULATOR]


def test_an_agent_smaller_than_max_active_calls_pauses_placement_instead_of_refusing(
    ice_connection: IceEmulator, airflow_db: str, tmp_path: Path
) -> None:
    # The service's own cap (3) is below the campaign's max_active_calls (6): "agent full" answers
    # create nothing, so those attempts are placed again later, never recorded as refused.
    ice_connection.set_quotas(agent_concurrency=3)
    keys = write_recipients(tmp_path / "people.jsonl", 12)
    run = run_dag(
        "ice_test_campaign_file", recipients=str(tmp_path / "people.jsonl"), destination=str(tmp_path)
    )
    assert str(run.state) == "success"
    refusals = ice_connection.state()["quota_refusals"]["agent_concurrency"]
    assert sum(refusals.values()) >= 1, "the agent's cap was reached"
    assert_each_person_called_as_the_policy_says(ice_connection, keys, max_attempts=2)
    assert peak_concurrency(ice_connection) <= 3
    rows = results(return_value(run))
    assert not [r for r in rows if r["outcome"] in ("refused", "not_placed")], rows
