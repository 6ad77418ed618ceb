"""Client-side rate limiting against the emulator's account quota: throttled answers stay near zero.

Counts come from the emulator's own tally (``quota_refusals``, ``request_counts``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_ice.api import ratelimit
from airflow_provider_ice.api.client import AsyncIceClient, IceClient
from airflow_provider_ice.api.errors import IceThrottlingError
from airflow_provider_ice.api.ratelimit import RateLimits
from airflow_provider_ice.emulator import IceEmulator

LIST = "ListAIAgentInstance"
AGENT = "agent-rl"


@pytest.fixture(autouse=True)
def _fresh_buckets() -> Iterator[None]:
    ratelimit.reset_shared_buckets()
    yield
    ratelimit.reset_shared_buckets()


def _throttled(emulator: IceEmulator) -> int:
    return sum(emulator.state("-")["quota_refusals"]["throttled"].values())


async def _async_load(client: AsyncIceClient, n: int, concurrency: int) -> int:
    """``n`` listings at ``concurrency``; returns how many ended in a throttling error."""
    queue = iter(range(n))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for _ in queue:
            try:
                await client.list_ai_agent_instances_page(AGENT, page_size=1)
            except IceThrottlingError:
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failures


def test_unlimited_clients_meet_the_quota(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    """The control: without a client limit the same load is throttled heavily."""
    emulator = ice_emulator_factory(action_qps={LIST: 20})

    async def main() -> int:
        async with AsyncIceClient(emulator.credentials, endpoint=emulator.url, max_retries=0) as client:
            return await _async_load(client, 80, 8)

    failures = asyncio.run(main())
    assert failures == _throttled(emulator)
    assert failures > 20


def test_sync_and_async_clients_of_one_account_share_the_quota(
    ice_emulator_factory: Callable[..., IceEmulator],
) -> None:
    """Each client alone may send the quota; together they still do, because they share one bucket."""
    quota = 20.0
    emulator = ice_emulator_factory(action_qps={LIST: quota})
    limits = RateLimits(default=quota)
    sync_failures: list[int] = []

    def sync_load() -> None:
        failures = 0
        with IceClient(emulator.credentials, endpoint=emulator.url, max_retries=0, rate_limits=limits) as c:
            for _ in range(40):
                try:
                    c.list_ai_agent_instances_page(AGENT, page_size=1)
                except IceThrottlingError:
                    failures += 1
        sync_failures.append(failures)

    async def async_load() -> int:
        async with AsyncIceClient(
            emulator.credentials, endpoint=emulator.url, max_retries=0, rate_limits=limits
        ) as client:
            return await _async_load(client, 40, 8)

    started = time.monotonic()
    thread = threading.Thread(target=sync_load)
    thread.start()
    async_failures = asyncio.run(async_load())
    thread.join()
    wall = time.monotonic() - started
    assert sync_failures == [0]
    assert async_failures == 0
    assert _throttled(emulator) == 0
    assert emulator.state("-")["request_counts"][LIST] == 80
    # 80 requests at a shared 20/s (2 at once to start): at least 3.9 s; two buckets would take 2 s.
    assert wall >= (80 - 2) / quota


def test_a_limit_set_too_high_adapts_to_the_quota(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    """Configured at 4x the quota: the first throttling answers halve the rate until it fits, so
    the throttled share stays small and retries (not failures) absorb the few that happen."""
    emulator = ice_emulator_factory(action_qps={LIST: 50})

    async def main() -> int:
        async with AsyncIceClient(
            emulator.credentials,
            endpoint=emulator.url,
            rate_limits=RateLimits(default=200),
            max_retries=5,
            backoff_base=0.05,
        ) as client:
            return await _async_load(client, 300, 16)

    assert asyncio.run(main()) == 0
    requests = emulator.state("-")["request_counts"][LIST]
    throttled = _throttled(emulator)
    # Without adaptation 200/s against 50/s would see about three quarters refused.
    assert throttled <= 0.1 * requests, (throttled, requests)
