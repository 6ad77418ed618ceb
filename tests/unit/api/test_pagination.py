"""Listing across pages and the split of windows holding more than 100 pages, against a fake service.

The fake holds instances with creation times and answers ListAIAgentInstance like the real service
is assumed to: newest first, ``StartTime`` inclusive, ``EndTime`` exclusive, pages 1..100 of at
most PageSize items.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from airflow_provider_ice.api.client import AsyncIceClient, IceClient
from airflow_provider_ice.api.errors import IcePaginationError, IceValidationError
from airflow_provider_ice.api.pagination import ListingPlan, PageRequest
from airflow_provider_ice.api.validation import ICE_TIME_FORMAT

from .fakes import CREDENTIALS, ENDPOINT

T0 = datetime(2025, 7, 18, tzinfo=timezone.utc)


class FakeListService:
    """ListAIAgentInstance over a fixed population; counts requests."""

    def __init__(self, created: list[datetime]) -> None:
        # Newest first, ties keep insertion order (a stable sort, as a database index would).
        self.items = sorted(enumerate(created), key=lambda item: item[1], reverse=True)
        self.requests: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(urlsplit(str(request.url)).query))
        self.requests.append(params)
        size, number = int(params["PageSize"]), int(params["PageNumber"])
        assert 1 <= size <= 100, "the client asked for an invalid page size"
        assert 1 <= number <= 100, "the client asked for an unreachable page"
        start = (
            datetime.strptime(params["StartTime"], ICE_TIME_FORMAT).replace(tzinfo=timezone.utc)
            if "StartTime" in params
            else None
        )
        end = (
            datetime.strptime(params["EndTime"], ICE_TIME_FORMAT).replace(tzinfo=timezone.utc)
            if "EndTime" in params
            else None
        )
        matching = [
            (n, created)
            for n, created in self.items
            if (start is None or created >= start) and (end is None or created < end)
        ]
        page = matching[(number - 1) * size : number * size]
        return httpx.Response(
            200,
            json={
                "RequestId": "r",
                "Instances": [{"Status": "Finished", "UserData": json.dumps({"n": n})} for n, _ in page],
            },
        )


def numbers(instances: list[Any]) -> list[int]:
    return [json.loads(i.user_data)["n"] for i in instances]


def spread(count: int, span: timedelta) -> list[datetime]:
    step = span / count
    return [T0 + step * i for i in range(count)]


def expected_order(created: list[datetime]) -> list[int]:
    return [n for n, _ in sorted(enumerate(created), key=lambda item: item[1], reverse=True)]


def test_short_page_ends_listing() -> None:
    service = FakeListService(spread(250, timedelta(hours=1)))
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service))
    got = numbers(list(client.list_ai_agent_instances("a", page_size=100)))
    assert got == expected_order(spread(250, timedelta(hours=1)))
    # Page 1, the page-100 probe, pages 2 and 3 (short: the end).
    assert [int(r["PageNumber"]) for r in service.requests] == [1, 100, 2, 3]


def test_single_short_page_costs_one_request() -> None:
    service = FakeListService(spread(7, timedelta(hours=1)))
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service))
    assert len(list(client.list_ai_agent_instances("a", start_time=T0, end_time=T0 + timedelta(days=1)))) == 7
    assert len(service.requests) == 1
    assert service.requests[0]["StartTime"] == "2025-07-18T00:00:00Z"
    assert service.requests[0]["EndTime"] == "2025-07-19T00:00:00Z"


def test_exact_multiple_of_page_size() -> None:
    created = spread(300, timedelta(hours=1))
    service = FakeListService(created)
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service))
    assert numbers(list(client.list_ai_agent_instances("a"))) == expected_order(created)
    assert [int(r["PageNumber"]) for r in service.requests] == [1, 100, 2, 3, 4]


def test_over_ten_thousand_splits_window_without_drops_or_duplicates() -> None:
    # 15,000 instances over a day, with bursts of identical timestamps at the split points' seconds.
    created = (
        spread(24_000, timedelta(days=1)) + [T0 + timedelta(hours=12)] * 600 + [T0 + timedelta(hours=6)] * 400
    )
    service = FakeListService(created)
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service))
    got = numbers(list(client.list_ai_agent_instances("a", start_time=T0, end_time=T0 + timedelta(days=1))))
    assert len(got) == len(created)
    assert Counter(got) == Counter(range(len(created)))  # every instance exactly once
    assert got == expected_order(created)  # newest first across the split windows
    windows = {(r["StartTime"], r["EndTime"]) for r in service.requests}
    assert ("2025-07-18T00:00:00Z", "2025-07-18T12:00:00Z") in windows
    assert ("2025-07-18T12:00:00Z", "2025-07-19T00:00:00Z") in windows


def test_small_page_size_window_cap() -> None:
    """With PageSize 10 a window reaches 1,000 items, so 1,500 need a split too."""
    created = spread(1_500, timedelta(hours=2))
    service = FakeListService(created)
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service))
    got = numbers(
        list(
            client.list_ai_agent_instances("a", start_time=T0, end_time=T0 + timedelta(hours=2), page_size=10)
        )
    )
    assert got == expected_order(created)
    assert all(r["PageSize"] == "10" for r in service.requests)


def test_too_many_without_bounds_is_a_clear_error() -> None:
    service = FakeListService(spread(10_001, timedelta(days=1)))
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service))
    with pytest.raises(IcePaginationError, match="give both start_time and end_time"):
        next(iter(client.list_ai_agent_instances("a", start_time=T0)))
    # Found out from the probe, before a single item was released.
    assert len(service.requests) == 2


def test_unsplittable_window_is_a_clear_error() -> None:
    service = FakeListService([T0] * 10_000)
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service))
    with pytest.raises(IcePaginationError, match="cannot be split"):
        list(client.list_ai_agent_instances("a", start_time=T0, end_time=T0 + timedelta(seconds=1)))


async def test_async_listing_shares_the_plan() -> None:
    created = spread(12_000, timedelta(hours=4)) + [T0 + timedelta(hours=2)] * 50
    service = FakeListService(created)
    async with AsyncIceClient(
        CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(service)
    ) as client:
        got = numbers(
            [
                i
                async for i in client.list_ai_agent_instances(
                    "a", start_time=T0, end_time=T0 + timedelta(hours=4)
                )
            ]
        )
    assert got == expected_order(created)


def test_plan_rejects_out_of_order_feed() -> None:
    plan: ListingPlan[int] = ListingPlan(None, None, 10)
    request = plan.next_request()
    assert request == PageRequest(None, None, 1, 10)
    with pytest.raises(ValueError, match="expected the page"):
        plan.feed(PageRequest(None, None, 2, 10), [])


def test_plan_releases_nothing_from_a_window_it_splits() -> None:
    plan: ListingPlan[int] = ListingPlan(T0, T0 + timedelta(hours=1), 2, max_pages=3)
    first = plan.next_request()
    assert first is not None
    assert plan.feed(first, [1, 2]) == []  # held until the window is known to fit
    probe = plan.next_request()
    assert probe is not None
    assert probe.page_number == 3
    assert plan.feed(probe, [5, 6]) == []  # full: split, page 1 is dropped, not released
    assert plan.splits == 1
    newer = plan.next_request()
    assert newer is not None
    assert (newer.start_time, newer.end_time, newer.page_number) == (
        "2025-07-18T00:30:00Z",
        "2025-07-18T01:00:00Z",
        1,
    )


def test_listing_rejects_reversed_window() -> None:
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(FakeListService([])))
    with pytest.raises(IceValidationError, match="StartTime"):
        client.list_ai_agent_instances("a", start_time=T0, end_time=T0)
