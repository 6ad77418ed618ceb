"""The one place that knows which Airflow this provider runs on (2.11 and 3.0 to 3.3).

Import paths that differ between versions come from ``airflow.providers.common.compat.sdk``, as the
official providers do. This module covers what common-compat has no answer for: the version flags,
the task state store (Airflow 3.3+), masking a secret from inside an event loop, a cron
timetable's expression, the asset (3.x) or dataset (2.x) that ``IceFetchCallLogOperator`` emits,
and a clear error for a feature the running Airflow cannot offer. No other module of the provider
branches on the Airflow version.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING, Any, Protocol

from airflow import __version__ as AIRFLOW_VERSION_STRING
from airflow.providers.common.compat import sdk as compat_sdk
from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException, Asset
from packaging.version import Version

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow.sdk import CronDataIntervalTimetable


def __getattr__(name: str) -> Any:
    """Return ``CronDataIntervalTimetable`` on first use (PEP 562).

    Importing it imports croniter (~35 ms): every DAG file importing one of this provider's hooks or
    operators would pay that at each parse, used or not.
    """
    if name != "CronDataIntervalTimetable":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:  # the task SDK's timetables (Airflow 3); common-compat has no entry for them
        from airflow.sdk import CronDataIntervalTimetable as timetable
    except ImportError:  # Airflow 2.x
        from airflow.timetables.interval import CronDataIntervalTimetable as timetable  # type: ignore[assignment]
    globals()[name] = timetable
    return timetable


_VERSION = Version(AIRFLOW_VERSION_STRING)
#: The running Airflow as (major, minor, micro).
AIRFLOW_VERSION: tuple[int, int, int] = (_VERSION.major, _VERSION.minor, _VERSION.micro)
#: The oldest Airflow this provider supports (pyproject says the same).
MIN_AIRFLOW_VERSION: tuple[int, int, int] = (2, 11, 0)
AIRFLOW_V_3_0_PLUS = AIRFLOW_VERSION >= (3, 0, 0)
AIRFLOW_V_3_1_PLUS = AIRFLOW_VERSION >= (3, 1, 0)
AIRFLOW_V_3_2_PLUS = AIRFLOW_VERSION >= (3, 2, 0)
AIRFLOW_V_3_3_PLUS = AIRFLOW_VERSION >= (3, 3, 0)

#: Features that need a newer Airflow than 2.11, with the first version that has them.
FEATURE_MIN_VERSION: dict[str, tuple[int, int, int]] = {
    "the task state store": (3, 3, 0),
    "the trigger on_kill hook": (3, 3, 0),
    "the declarative connection form (conn-fields)": (3, 2, 0),
    "assets (Airflow 2 calls them datasets)": (3, 0, 0),
}


class IceAirflowVersionError(AirflowOptionalProviderFeatureException):
    """The running Airflow is too old for a feature this provider was asked to use."""


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def has_feature(feature: str) -> bool:
    """Return whether the running Airflow offers ``feature`` (a key of :data:`FEATURE_MIN_VERSION`)."""
    return FEATURE_MIN_VERSION[feature] <= AIRFLOW_VERSION


def require_feature(feature: str) -> None:
    """Raise :class:`IceAirflowVersionError` naming the feature and both versions when it is missing."""
    if not has_feature(feature):
        raise IceAirflowVersionError(
            f"{feature} needs Airflow >= {_dotted(FEATURE_MIN_VERSION[feature])}; "
            f"this is Airflow {AIRFLOW_VERSION_STRING}"
        )


if AIRFLOW_VERSION < MIN_AIRFLOW_VERSION:
    raise RuntimeError(
        f"airflow-provider-ice needs Airflow >= {_dotted(MIN_AIRFLOW_VERSION)}; "
        f"this is Airflow {AIRFLOW_VERSION_STRING}"
    )


class TaskStateStore(Protocol):
    """What the provider uses of Airflow 3.3's ``context["task_state_store"]`` (AIP-103)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...


def task_state_store(context: Mapping[str, Any]) -> TaskStateStore | None:
    """Return the task state store of this task instance, or None where Airflow has none.

    The store keeps values across the tries of one task instance. It exists from Airflow 3.3 on, and
    only inside a task runner; callers must work without it (a weaker exactly-once guarantee below
    3.3, see the README's compatibility table).
    """
    if not AIRFLOW_V_3_3_PLUS:
        return None
    try:
        store = context.get("task_state_store")
    except Exception:
        return None
    return store


def cron_schedule(timetable: Any) -> tuple[str, str] | None:
    """Return ``(expression, time zone name)`` of a cron timetable, or None for any other timetable.

    The task SDK's timetables (Airflow 3.2+) carry ``expression`` and ``timezone``; the core
    timetables a DAG holds up to 3.1 keep them private and expose them through ``serialize()``.
    """
    expression = getattr(timetable, "expression", None)
    zone: Any = getattr(timetable, "timezone", "UTC")
    if expression is None and callable(getattr(timetable, "serialize", None)):
        try:
            fields = timetable.serialize()
        except Exception:
            return None
        if isinstance(fields, dict):
            expression, zone = fields.get("expression"), fields.get("timezone", "UTC")
    if not isinstance(expression, str):
        return None
    return expression, str(getattr(zone, "name", zone))


def make_asset(name: str, uri: str) -> Asset:
    """Return an asset (Airflow 3) or a dataset (Airflow 2, which has no asset name) for ``uri``."""
    if AIRFLOW_V_3_0_PLUS:
        return Asset(name=name, uri=uri)
    return Asset(uri)


def _local_masker() -> Any:
    """Return the task SDK's in-process masker (no public accessor; its module moved in 3.1 and 3.3)."""
    for module in (
        "airflow.sdk.log",
        "airflow.sdk._shared.secrets_masker",
        "airflow.sdk.execution_time.secrets_masker",
    ):
        try:
            return importlib.import_module(module)._secrets_masker()
        except (ImportError, AttributeError):
            continue
    return None


def mask_secret_nonblocking(secret: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Register a secret with the masker without a blocking call on an event loop (a triggerer).

    Airflow 3's sync ``mask_secret`` tells the supervisor with a blocking call, which stalls (or
    deadlocks) a running event loop: there the secret is masked in-process at once and the supervisor
    is told off the loop (``amask_secret`` on 3.3+, a worker thread on 3.0-3.2), on ``loop`` when
    this is called from a worker thread of that loop. Airflow 2's masker is in-process only, so the
    sync call is safe there.
    """
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        on_loop = loop is not None
    else:
        on_loop = False
    if loop is None or not AIRFLOW_V_3_0_PLUS:
        compat_sdk.mask_secret(secret)
        return
    masker = _local_masker()
    if masker is not None:
        masker.add_mask(secret)
    if on_loop:
        _tell_supervisor(secret)
    else:
        loop.call_soon_threadsafe(_tell_supervisor, secret)


def _tell_supervisor(secret: str) -> None:
    """Send the secret to the supervisor from the running loop, without blocking it."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None]
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow 3.0-3.2: the sync call, from a worker thread
        pending = loop.run_in_executor(None, compat_sdk.mask_secret, secret)
    else:
        pending = loop.create_task(amask_secret(secret))
    _PENDING_MASKS.add(pending)
    pending.add_done_callback(_PENDING_MASKS.discard)


_PENDING_MASKS: set[asyncio.Future[None]] = set()


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "FEATURE_MIN_VERSION",
    "MIN_AIRFLOW_VERSION",
    "CronDataIntervalTimetable",
    "IceAirflowVersionError",
    "TaskStateStore",
    "cron_schedule",
    "has_feature",
    "make_asset",
    "mask_secret_nonblocking",
    "require_feature",
    "task_state_store",
]
