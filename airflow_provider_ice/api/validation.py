"""Parameter validation shared by the client and the operators.

Every check runs before any request is sent and raises :class:`~.errors.IceValidationError`
naming the parameter and the allowed values, so a typo fails fast with a readable message instead
of an ``InvalidParameter`` from the service (or, worse, a phone call with the wrong settings).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import IceValidationError

MAX_EXPIRE_SECONDS = 604_800
MAX_USER_ID_LENGTH = 64
MAX_PAGE_SIZE = 100
MAX_PAGE_NUMBER = 100
#: Bounds of a call-log download's settings (the downloader's own).
MAX_DOWNLOAD_RETRIES = 20
MAX_DOWNLOAD_TIMEOUT = 3600.0
ICE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# E.164 allows 15 digits; national formats used by PSTN trunks are at least 3 digits long.
_PHONE_RE = re.compile(r"^\+?[0-9]{3,20}$")


def require_non_empty(value: Any, parameter: str) -> str:
    """Return a non-blank string (AIAgentId, InstanceId, action names)."""
    if not isinstance(value, str) or not value.strip():
        raise IceValidationError(parameter, f"must be a non-empty string, got {value!r}")
    return value


def validate_int_range(value: Any, parameter: str, low: int, high: int | None = None) -> int:
    """Return an integer (not a bool, not a numeric string) within ``low..high`` inclusive.

    Without ``high`` there is no upper bound.
    """
    allowed = f"between {low} and {high}" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise IceValidationError(
            parameter, f"must be an integer {allowed}, got {type(value).__name__} {value!r}"
        )
    if value < low or (high is not None and value > high):
        raise IceValidationError(parameter, f"must be {allowed}, got {value}")
    return value


def validate_download_limits(
    max_bytes: Any, max_url_refreshes: Any, download_retries: Any, download_timeout: Any
) -> None:
    """Check the call-log download settings the fetch and analytics operators share."""
    validate_int_range(max_bytes, "max_bytes", 1)
    validate_int_range(max_url_refreshes, "max_url_refreshes", 0)
    validate_int_range(download_retries, "download_retries", 0, MAX_DOWNLOAD_RETRIES)
    positive_seconds(download_timeout, "download_timeout", maximum=MAX_DOWNLOAD_TIMEOUT)


def validate_epoch(value: Any, parameter: str) -> float | None:
    """Return None, or a moment as finite, non-negative seconds since the epoch (a trigger's deadlines)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise IceValidationError(
            parameter, f"must be None or seconds since the epoch (a finite number >= 0), got {value!r}"
        )
    return float(value)


def validate_flag(value: Any, parameter: str) -> bool:
    """Return ``value`` if it is a real bool: the string ``"False"`` is truthy and would mean the opposite."""
    if not isinstance(value, bool):
        raise IceValidationError(parameter, f"must be True or False, got {type(value).__name__} {value!r}")
    return value


def validate_expire(value: Any, parameter: str = "Expire") -> int:
    """Token lifetime in seconds, ``0..604800`` (7 days)."""
    return validate_int_range(value, parameter, 0, MAX_EXPIRE_SECONDS)


def validate_page_size(value: Any, parameter: str = "PageSize") -> int:
    """Return a PageSize within 1..100."""
    return validate_int_range(value, parameter, 1, MAX_PAGE_SIZE)


def validate_page_number(value: Any, parameter: str = "PageNumber") -> int:
    """Return a PageNumber within 1..100."""
    return validate_int_range(value, parameter, 1, MAX_PAGE_NUMBER)


def validate_user_id(value: Any, parameter: str = "UserId") -> str:
    """Return the end user's name in the channel: a non-empty string of at most 64 characters."""
    require_non_empty(value, parameter)
    if len(value) > MAX_USER_ID_LENGTH:
        raise IceValidationError(
            parameter, f"must be at most {MAX_USER_ID_LENGTH} characters, got {len(value)}"
        )
    return str(value)


def to_json_string(value: Any, parameter: str) -> str:
    """Return a string as is, anything else as compact JSON (``ensure_ascii=False``, as the SDK sends it)."""
    if isinstance(value, str):
        return value
    if hasattr(value, "to_wire"):  # an IceModel (AIAgentConfig...)
        value = value.to_wire()
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise IceValidationError(
            parameter, f"must be a string or a JSON-serialisable object ({exc.__class__.__name__}: {exc})"
        ) from None


def validate_user_data(value: Any, parameter: str = "UserData") -> str:
    """UserData: a string, or a JSON-serialisable object sent as compact JSON."""
    if not isinstance(value, (str, Mapping, list, tuple)) and not hasattr(value, "to_wire"):
        raise IceValidationError(
            parameter, f"must be a string or a JSON object/array, got {type(value).__name__}"
        )
    return to_json_string(value, parameter)


def json_object(value: Any, parameter: str) -> dict[str, Any]:
    """Return ``value`` when it is a dict, or the JSON object the string ``value`` holds.

    :raises IceValidationError: naming ``parameter`` for text that is not JSON, JSON that is not an
        object, and anything else that is not a dict.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise IceValidationError(
                parameter, "must be a JSON object; the string given is not JSON"
            ) from None
        if not isinstance(value, dict):
            raise IceValidationError(parameter, f"must be a JSON object, got JSON {type(value).__name__}")
    if not isinstance(value, dict):
        raise IceValidationError(parameter, f"must be a JSON object, got {type(value).__name__}")
    return value


def validate_json_object(value: Any, parameter: str) -> str:
    """AgentConfig, TemplateConfig, ChatSyncConfig, Config: a mapping/model or a JSON object string."""
    if isinstance(value, str):
        json_object(value, parameter)  # refuses text that holds no JSON object
        return value
    if not (isinstance(value, Mapping) or hasattr(value, "to_wire")):
        raise IceValidationError(
            parameter, f"must be a dict or a JSON object string, got {type(value).__name__}"
        )
    return to_json_string(dict(value) if isinstance(value, Mapping) else value, parameter)


def parse_time(value: Any, parameter: str) -> datetime:
    """Return an aware datetime, or an ISO-8601 string with an offset or ``Z``, as an aware UTC datetime."""
    if isinstance(value, str):
        text = value.strip()
        try:
            # fromisoformat accepts "Z" only from Python 3.11; normalise it for 3.10.
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" and text else text)
        except ValueError:
            raise IceValidationError(
                parameter, f"must be an ISO-8601 timestamp such as 2025-07-18T00:00:00Z, got {value!r}"
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise IceValidationError(
            parameter, f"must be an aware datetime or an ISO-8601 string, got {type(value).__name__}"
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise IceValidationError(
            parameter, f"must carry a time zone (naive values are ambiguous), got {value!r}; use UTC"
        )
    return parsed.astimezone(timezone.utc)


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def iso(value: datetime) -> str:
    """Return ``value`` as ISO-8601 UTC with a ``Z`` suffix, sub-second precision kept as given."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def positive_seconds(
    value: Any, parameter: str, *, allow_zero: bool = False, maximum: float | None = None
) -> float:
    """Return ``value`` (a number of seconds or a timedelta) as finite seconds.

    The one rule for durations: > 0 (>= 0 with ``allow_zero``), at most ``maximum`` when given;
    bools, strings and NaN are refused with an :class:`~.errors.IceValidationError` naming ``parameter``.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds = math.nan
    low_ok = seconds >= 0 if allow_zero else seconds > 0
    if not (math.isfinite(seconds) and low_ok and (maximum is None or seconds <= maximum)):
        kind = "non-negative" if allow_zero else "positive"
        cap = f" of at most {maximum:g}" if maximum is not None else ""
        raise IceValidationError(parameter, f"must be a {kind}, finite number of seconds{cap}, got {value!r}")
    return seconds


def bounded_number(value: Any, parameter: str, high: float, expected: str) -> float:
    """Return ``value`` (a number or a numeric string) as a finite float in (0, ``high``].

    Anything else raises an :class:`~.errors.IceValidationError` naming ``parameter``: ``expected``
    (what is allowed) followed by the value given.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and 0 < number <= high):
        raise IceValidationError(parameter, f"{expected}, got {value!r}")
    return number


def format_time(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, the only format ICE accepts."""
    return value.astimezone(timezone.utc).strftime(ICE_TIME_FORMAT)


def truncate_to_second(value: datetime) -> datetime:
    """Return ``value`` without its microseconds."""
    return value - timedelta(microseconds=value.microsecond)


def validate_time_window(start_time: Any, end_time: Any) -> tuple[datetime | None, datetime | None]:
    """Parse both bounds (either may be None), truncated to whole seconds; start must be before end."""
    start = truncate_to_second(parse_time(start_time, "StartTime")) if start_time is not None else None
    end = truncate_to_second(parse_time(end_time, "EndTime")) if end_time is not None else None
    if start is not None and end is not None and start >= end:
        raise IceValidationError(
            "StartTime", f"must be before EndTime, got {format_time(start)} >= {format_time(end)}"
        )
    return start, end


def validate_phone_number(value: Any, parameter: str) -> str:
    """Digits with an optional leading ``+`` (3..20 digits); spaces and dashes are removed."""
    if not isinstance(value, str):
        raise IceValidationError(parameter, f"must be a phone number string, got {type(value).__name__}")
    compact = re.sub(r"[\s\-()]", "", value)
    if not _PHONE_RE.match(compact):
        raise IceValidationError(
            parameter, "must be a phone number: digits with an optional leading '+', 3 to 20 digits"
        )
    return compact
