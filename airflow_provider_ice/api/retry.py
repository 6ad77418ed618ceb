"""When to try an ICE call again, and how long to wait (tenacity policy shared by both clients).

Read-only and stop actions are retried on throttling, 5xx, connection errors and timeouts.
Creating actions (GenerateAIAgentCall...) place real calls: they are retried only when the
request certainly did not take effect (throttled, or never sent); a timeout, a reset after
sending or a 5xx becomes :class:`~.errors.IceOutcomeUnknownError`.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from .errors import (
    IceError,
    IceOutcomeUnknownError,
    IceResponseError,
    IceServerError,
    IceThrottlingError,
    IceTransportError,
)

log = logging.getLogger("airflow_provider_ice.api.client")

F = TypeVar("F", bound=Callable[..., Any])

#: A server's Retry-After is honoured up to this many seconds; beyond it the caller is better off
#: failing and letting Airflow retry the task later.
MAX_RETRY_AFTER = 60.0


def is_retryable(exc: BaseException, *, safe_to_repeat: bool) -> bool:
    """Whether ``exc`` (already translated to an Ice error) deserves another attempt."""
    if isinstance(exc, IceThrottlingError):
        return True
    if isinstance(exc, IceTransportError):
        return safe_to_repeat or not exc.sent
    if isinstance(exc, IceServerError):
        return safe_to_repeat
    return False


def outcome_unknown(exc: IceError, action: str, *, safe_to_repeat: bool) -> IceError:
    """For a creating action, the error to raise instead of ``exc`` when it may have taken effect."""
    if safe_to_repeat:
        return exc
    may_have_happened = (
        (isinstance(exc, IceTransportError) and exc.sent)
        or isinstance(exc, IceServerError)
        # A 2xx we cannot read: the instance most likely exists, we just lost its id.
        or (isinstance(exc, IceResponseError) and (exc.http_status or 0) < 300)
    )
    return IceOutcomeUnknownError(action, exc) if may_have_happened else exc


@dataclass(frozen=True)
class BackoffWait:
    """Exponential backoff with equal jitter and a cap; a server's retry-after wins when given.

    :param base: the first wait in seconds (doubled on every attempt).
    :param cap: the longest computed wait in seconds.
    """

    base: float = 0.5
    cap: float = 20.0

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)  # IceApiError, CallLogDownloadError
        if isinstance(retry_after, (int, float)):
            return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER)
        ceiling = min(self.cap, self.base * 2 ** (state.attempt_number - 1))
        # Equal jitter: at least half the ceiling, so a crowd of clients spreads out but still backs off.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    action = getattr(exc, "action", None) or "ICE call"
    log.warning(
        "%s attempt %d failed (%s: %s); retrying in %.2f s",
        action,
        state.attempt_number,
        type(exc).__name__,
        exc,
        wait,
    )


def retry_kwargs(
    max_retries: int,
    wait: BackoffWait,
    *,
    safe_to_repeat: bool,
    retryable: Callable[[BaseException], bool] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` / ``AsyncRetrying``.

    ``retryable`` replaces :func:`is_retryable` for other exchanges than API calls (call-log downloads).
    """
    if retryable is None:

        def retryable(exc: BaseException) -> bool:
            return is_retryable(exc, safe_to_repeat=safe_to_repeat)

    return {
        "stop": stop_after_attempt(max_retries + 1),
        "wait": wait,
        "retry": retry_if_exception(retryable),
        "before_sleep": _log_retry,
        "reraise": True,
    }


def replay_first(first: BaseException, attempt: F) -> F:
    """``attempt`` whose first call raises ``first`` instead (sync or async ``attempt`` alike).

    The clients make their first attempt without tenacity (building a ``Retrying`` per call costs
    more than signing it); when that attempt fails retryably, tenacity starts from this wrapper,
    so attempt numbers, waits, ``before_sleep`` logs and the stop rule are exactly tenacity's.
    """
    pending = [first]

    def replay(*args: Any, **kwargs: Any) -> Any:
        if pending:
            raise pending.pop()
        return attempt(*args, **kwargs)

    if not inspect.iscoroutinefunction(attempt):
        return replay  # type: ignore[return-value]

    async def areplay(*args: Any, **kwargs: Any) -> Any:
        # tenacity's AsyncRetrying awaits only what it recognises as a coroutine function.
        return await replay(*args, **kwargs)

    return areplay  # type: ignore[return-value]
