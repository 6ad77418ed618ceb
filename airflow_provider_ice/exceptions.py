"""The errors an ICE task fails with: Airflow exceptions, so retries and ``soft_fail`` apply.

The hierarchy::

    AirflowException
    +-- IceAgentCallError                   a call could not be placed, found or waited for
    |   +-- IceAgentInstanceNotFoundError   (also AirflowFailException: no retry)
    |   +-- IceAgentWaitTimeout             the instance did not finish in time
    |   +-- IceTriggerEventError            a trigger event was missing or malformed
    |   +-- IceCampaignInputError           bad recipients or campaign settings (also AirflowFailException)
    +-- IceCallLogError                     a call log could not be fetched (retried)
        +-- IceCallLogNotReadyError         not Finished, or no CallLogUrl in time
    AirflowFailException
    +-- IceCallLogInvalidError              the call log is not valid (no retry)
    +-- IceNonRetryableError                any failure no retry can fix (see fail_without_retry)

The client's own errors (``IceError`` and below) are in :mod:`airflow_provider_ice.api.errors`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_ice.api.errors import NON_RETRYABLE_ERRORS
from airflow_provider_ice.api.waiting import Step


class IceAgentCallError(AirflowException):
    """The agent call could not be placed, found or waited for.

    ``permanent`` is true when the cause was an error no retry can fix (then the task fails without
    retries, see :func:`fail_without_retry`).
    """

    permanent: bool = False


class IceAgentInstanceNotFoundError(IceAgentCallError, AirflowFailException):
    """No instance matched within ``not_found_timeout``.

    Fails without retries: a retry of a call operator could not find the instance either and would
    place a second call; for a sensor, ``soft_fail`` applies.
    """


class IceAgentWaitTimeout(IceAgentCallError):
    """The instance did not finish within the operator's ``timeout``."""


class IceTriggerEventError(IceAgentCallError):
    """A trigger event was missing or malformed (e.g. triggerer and worker run different versions)."""


class IceCampaignInputError(IceAgentCallError, AirflowFailException):
    """The recipients or the campaign's settings are wrong: fails before any call, without retry."""


class IceCallLogError(AirflowException):
    """The call log could not be fetched (the task may be retried)."""


class IceCallLogNotReadyError(IceCallLogError):
    """The instance is not Finished, or its CallLogUrl stayed empty for ``empty_url_timeout``."""


class IceCallLogInvalidError(AirflowFailException):
    """The call log is not a valid call-log JSON document (malformed, truncated, or too large)."""


def wait_failure(step: Step) -> IceAgentCallError:
    """Return the exception for a FAIL step: a typed "not found", or the polling error."""
    if step.not_found:
        return IceAgentInstanceNotFoundError(step.message)
    error = IceAgentCallError(step.message)
    error.permanent = step.permanent
    return error


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


class IceNonRetryableError(AirflowFailException):
    """A failure no retry can fix (a rejected parameter, no interval, refused credentials).

    What a task raises is also an instance of the original error's class, with its attributes and
    message (``except IceValidationError`` still catches it, ``.parameter`` is still there).
    """


_NON_RETRYABLE_CLASSES: dict[type[Exception], type[Exception]] = {}


def _non_retryable_class(error_class: type[Exception]) -> type[Exception]:
    cls = _NON_RETRYABLE_CLASSES.get(error_class)
    if cls is None:
        namespace = {"__module__": error_class.__module__}
        cls = type(error_class.__name__, (error_class, IceNonRetryableError), namespace)
        _NON_RETRYABLE_CLASSES[error_class] = cls
    return cls


def as_non_retryable(error: Exception) -> Exception:
    """Return ``error`` as an :class:`IceNonRetryableError` of the same class, attributes and message."""
    cls = _non_retryable_class(type(error))
    converted = cls.__new__(cls)
    converted.__dict__.update(error.__dict__)
    converted.args = error.args
    return converted


def is_non_retryable(error: BaseException) -> bool:
    """Return whether retrying cannot help: a non-retryable ICE error, or one marked ``permanent``.

    A wait that failed on such an error (in the worker or in the triggerer) carries
    ``permanent = True``, since a trigger event cannot carry the error itself.
    """
    return isinstance(error, NON_RETRYABLE_ERRORS) or getattr(error, "permanent", False) is True


def fail_without_retry(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Decorate an operator's or sensor's execute path: a non-retryable failure fails at once."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except AirflowFailException:
            raise
        except Exception as error:
            if not is_non_retryable(error):
                raise
            raise as_non_retryable(error) from error

    return wrapper
