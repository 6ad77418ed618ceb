"""What the provider's triggers share: their serialised form is exactly their constructor's keywords."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from airflow.triggers.base import BaseTrigger


@functools.cache
def _keywords(cls: type[BaseTrigger]) -> tuple[str, ...]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def serialize_keywords(trigger: BaseTrigger) -> tuple[str, dict[str, Any]]:
    """Return ``(classpath, kwargs)`` with every keyword-only constructor parameter of ``trigger``.

    Each value is read back from the attribute of the same name, so ``cls(**kwargs)`` rebuilds the
    trigger, and nothing the constructor does not take (a client, a token fetched later) can travel
    into the trigger table. A constructor therefore never takes a credential.
    """
    cls = type(trigger)
    return f"{cls.__module__}.{cls.__qualname__}", {name: getattr(trigger, name) for name in _keywords(cls)}
