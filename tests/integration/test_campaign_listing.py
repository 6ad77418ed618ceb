"""The campaign's sweeps read only as many ListAIAgentInstance pages as they need (real signed HTTP).

Counts come from the emulator's own request tally: the listing is newest first, so the calls in
progress (the newest) are on the first pages, and a sweep stops there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.operators._campaign_io import list_campaign_instances

pytestmark = [pytest.mark.integration, pytest.mark.ice_emulator(call_duration=60.0)]

AGENT = "sweep-agent"
CIDS = [f"c{n:03d}" for n in range(350)]  # created in this order: c349 is the newest


@pytest.fixture
def client(ice_emulator: IceEmulator) -> Iterator[IceClient]:
    with IceClient(ice_emulator.credentials, endpoint=ice_emulator.url) as client:
        for cid in CIDS:
            client.generate_ai_agent_call(AGENT, user_data={CORRELATION_KEY: cid})
        client.generate_ai_agent_call(AGENT, user_data={"someone": "else"})  # not ours
        yield client


def pages_read(emulator: IceEmulator, sweep: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], int]:
    before = emulator.state()["request_counts"].get("ListAIAgentInstance", 0)
    result = sweep()
    return result, emulator.state()["request_counts"]["ListAIAgentInstance"] - before


def test_a_full_sweep_reads_every_page_and_keeps_only_our_calls(
    client: IceClient, ice_emulator: IceEmulator
) -> None:
    expected = dict.fromkeys(CIDS)
    found, pages = pages_read(
        ice_emulator, lambda: list_campaign_instances(client, AGENT, expected, start=time.time() - 60)
    )
    assert sorted(found) == CIDS
    assert pages == 4  # 351 instances, 100 a page


def test_a_sweep_for_the_newest_calls_stops_once_they_are_found(
    client: IceClient, ice_emulator: IceEmulator
) -> None:
    wanted = CIDS[-30:]
    found, pages = pages_read(
        ice_emulator,
        lambda: list_campaign_instances(
            client,
            AGENT,
            dict.fromkeys(CIDS),
            start=time.time() - 60,
            wanted=wanted,
            is_older=lambda c: False,
        ),
    )
    assert set(wanted) <= set(found)
    assert pages == 1


def test_a_call_that_was_never_created_stops_the_sweep_at_the_first_older_call_of_ours(
    client: IceClient, ice_emulator: IceEmulator
) -> None:
    expected = dict.fromkeys([*CIDS, "ghost"])
    wanted = [*CIDS[-30:], "ghost"]

    def sweep(is_older: Callable[[str], bool] | None) -> dict[str, Any]:
        return list_campaign_instances(
            client,
            AGENT,
            expected,
            start=time.time() - 60,
            wanted=wanted,
            is_older=is_older,
        )

    # Page 1 holds c250..c349: the calls sent before c300 are older than every wanted one.
    found, pages = pages_read(ice_emulator, lambda: sweep(lambda cid: int(cid[1:]) < 300))
    assert "ghost" not in found
    assert pages == 1
    # Without knowing what is older, the whole window is read to be sure.
    found, pages = pages_read(ice_emulator, lambda: sweep(None))
    assert pages == 4
