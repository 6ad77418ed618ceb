"""The ListAIAgentInstance paging plan, shared by the sync and the async client (sans I/O).

ListAIAgentInstance has no total count and no cursor: pages are numbered 1..100 with at most 100
items each, so one (agent, time window) query reaches at most ``100 * page_size`` instances. The
plan below walks the pages and, when a window may hold more than that, splits it in half on time
and walks each half instead, so nothing is silently dropped.

Rules that keep the result free of drops and duplicates (ListAIAgentInstance has no InstanceId to
de-duplicate on):

* A window's items are released only once the window is known to fit: when page 1 is full, the
  last reachable page is probed first. If that page is full too, page 1 is discarded (never
  released) and the window is split, so an item is never released from a window that is later
  split.
* Windows are half-open, ``[start, end)`` at whole-second precision: ``StartTime`` inclusive,
  ``EndTime`` exclusive. The halves ``[start, mid)`` and ``[mid, end)`` share no instant.
* Newer halves are walked first, which keeps the service's newest-first order across splits.

Drive it with :meth:`ListingPlan.next_request` / :meth:`ListingPlan.feed`::

    plan = ListingPlan(start, end, page_size)
    while (request := plan.next_request()) is not None:
        yield from plan.feed(request, fetch(request))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from .errors import IcePaginationError
from .validation import MAX_PAGE_NUMBER, format_time

T = TypeVar("T")

MIN_SPLIT = timedelta(seconds=2)


@dataclass(frozen=True)
class PageRequest:
    """One ListAIAgentInstance call to make."""

    start: datetime | None
    end: datetime | None
    page_number: int
    page_size: int

    @property
    def start_time(self) -> str | None:
        return format_time(self.start) if self.start else None

    @property
    def end_time(self) -> str | None:
        return format_time(self.end) if self.end else None


@dataclass
class _Window(Generic[T]):
    start: datetime | None
    end: datetime | None
    # Set once the window is known to fit into the reachable pages.
    fits: bool = False
    next_page: int = 1
    held_first_page: list[T] = field(default_factory=list)
    probed_last_page: list[T] | None = None


class ListingPlan(Generic[T]):
    """Which page to fetch next and which items to release; no I/O.

    :param start: inclusive lower bound (aware UTC datetime, whole seconds) or None.
    :param end: exclusive upper bound (aware UTC datetime, whole seconds) or None.
    :param page_size: items per page (1..100).
    :param max_pages: the last page number the service accepts.
    """

    def __init__(
        self,
        start: datetime | None,
        end: datetime | None,
        page_size: int,
        *,
        max_pages: int = MAX_PAGE_NUMBER,
    ) -> None:
        if max_pages < 2:
            raise ValueError("max_pages must be at least 2")
        self.page_size = page_size
        self.max_pages = max_pages
        # A stack: the newest window is on top.
        self._windows: list[_Window[T]] = [_Window(start, end)]
        #: How many times a window was split (for logs and tests).
        self.splits = 0

    def next_request(self) -> PageRequest | None:
        """Return the next page to fetch, or None when every item has been released."""
        if not self._windows:
            return None
        window = self._windows[-1]
        return PageRequest(window.start, window.end, window.next_page, self.page_size)

    def feed(self, request: PageRequest, items: Sequence[T]) -> list[T]:
        """Take the items of ``request``'s page; return the ones to release now, in order."""
        window = self._windows[-1]
        if request.page_number != window.next_page or (request.start, request.end) != (
            window.start,
            window.end,
        ):
            raise ValueError(f"feed() got {request}, expected the page from next_request()")
        full = len(items) >= self.page_size
        if window.fits:
            return self._feed_fitting(window, list(items), full)
        if request.page_number == 1:
            if not full:
                return self._finish(list(items))
            # More than one page: check the last reachable page before releasing anything.
            window.held_first_page = list(items)
            window.next_page = self.max_pages
            return []
        # This was the probe of the last reachable page.
        if full:
            self._split(window)
            return []
        window.fits = True
        window.probed_last_page = list(items)
        window.next_page = 2
        released, window.held_first_page = window.held_first_page, []
        if self.max_pages == 2:
            return released + self._finish(window.probed_last_page)
        return released

    def _feed_fitting(self, window: _Window[T], items: list[T], full: bool) -> list[T]:
        if not full:
            return self._finish(items)
        window.next_page += 1
        if window.next_page == self.max_pages:
            # Already fetched as the probe; release it instead of asking again.
            return items + self._finish(window.probed_last_page or [])
        return items

    def _finish(self, items: list[T]) -> list[T]:
        self._windows.pop()
        return items

    @staticmethod
    def _splittable(window: _Window[T]) -> bool:
        return window.start is not None and window.end is not None and window.end - window.start >= MIN_SPLIT

    def _split(self, window: _Window[T]) -> None:
        if window.start is None or window.end is None:
            raise IcePaginationError(
                f"more than {self.max_pages * self.page_size} instances match and ListAIAgentInstance "
                f"cannot page further; give both start_time and end_time so the window can be split"
            )
        if not self._splittable(window):
            raise IcePaginationError(
                f"more than {self.max_pages * self.page_size} instances were created between "
                f"{format_time(window.start)} and {format_time(window.end)}; the window cannot be split "
                "below one second"
            )
        span_seconds = int((window.end - window.start).total_seconds())
        mid = window.start + timedelta(seconds=span_seconds // 2)
        self._windows.pop()
        self.splits += 1
        # Older half below, newer half on top: newest-first order is kept.
        self._windows.append(_Window(window.start, mid))
        self._windows.append(_Window(mid, window.end))
