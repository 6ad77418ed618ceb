"""Failures a retry cannot fix fail the task at once: the one mapping every execute path uses."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_ice.api.errors import NON_RETRYABLE_ERRORS

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
