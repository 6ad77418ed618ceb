"""Every validation rule: accepted values, rejected values, and messages naming the parameter."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pendulum
import pytest

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.models import AIAgentConfig
from airflow_provider_ice.api.validation import (
    format_time,
    parse_time,
    require_non_empty,
    validate_expire,
    validate_json_object,
    validate_page_number,
    validate_page_size,
    validate_phone_number,
    validate_time_window,
    validate_user_data,
    validate_user_id,
)


def rejects(func: Any, value: Any, parameter: str, *fragments: str) -> None:
    with pytest.raises(IceValidationError) as raised:
        func(value)
    assert raised.value.parameter == parameter
    message = str(raised.value)
    assert message.startswith(f"{parameter}: ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("value", ["", "   ", None, 5])
def test_agent_id_non_empty(value: Any) -> None:
    rejects(lambda v: require_non_empty(v, "AIAgentId"), value, "AIAgentId", "non-empty")


@pytest.mark.parametrize("value", [0, 1, 3600, 604800])
def test_expire_accepts_range(value: int) -> None:
    assert validate_expire(value) == value


@pytest.mark.parametrize("value", [-1, 604801, True, False, "abc", "60", 1.5, None])
def test_expire_rejects(value: Any) -> None:
    rejects(validate_expire, value, "Expire", "0", "604800")


def test_user_id_length() -> None:
    assert validate_user_id("u" * 64) == "u" * 64
    rejects(validate_user_id, "u" * 65, "UserId", "at most 64")
    rejects(validate_user_id, "", "UserId")
    rejects(validate_user_id, 7, "UserId")


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("free text", "free text"),
        ({"b": 1, "a": "é"}, '{"b":1,"a":"é"}'),
        ([1, {"x": None}], '[1,{"x":null}]'),
        ('{"already":"json"}', '{"already":"json"}'),
    ],
)
def test_user_data_compact_json(value: Any, wire: str) -> None:
    assert validate_user_data(value) == wire


@pytest.mark.parametrize("value", [{"x": object()}, {"x": float("nan")}, 12, None, b"bytes"])
def test_user_data_rejects(value: Any) -> None:
    rejects(validate_user_data, value, "UserData", "JSON")


@pytest.mark.parametrize(
    ("func", "name"), [(validate_page_size, "PageSize"), (validate_page_number, "PageNumber")]
)
def test_page_bounds(func: Any, name: str) -> None:
    assert func(1) == 1
    assert func(100) == 100
    for bad in (0, 101, -5, True, "10", 2.0):
        rejects(func, bad, name, "1", "100")


def test_json_object_parameters() -> None:
    assert validate_json_object({"Greeting": "hi"}, "AgentConfig") == '{"Greeting":"hi"}'
    assert validate_json_object(AIAgentConfig(Greeting="hi", Volume=50), "AgentConfig") == (
        '{"Greeting":"hi","Volume":50}'
    )
    assert validate_json_object('{"a": 1}', "AgentConfig") == '{"a": 1}'
    for bad in ("[1]", "nope", 3, ["a"]):
        rejects(lambda v: validate_json_object(v, "AgentConfig"), bad, "AgentConfig")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-07-18T06:39:08Z", "2025-07-18T06:39:08Z"),
        ("2025-07-18T06:39:08.123456z", "2025-07-18T06:39:08Z"),
        ("2025-07-18T14:39:08+08:00", "2025-07-18T06:39:08Z"),
        (datetime(2025, 7, 18, 6, 39, 8, tzinfo=timezone.utc), "2025-07-18T06:39:08Z"),
        (datetime(2025, 7, 18, 1, 39, 8, tzinfo=timezone(timedelta(hours=-5))), "2025-07-18T06:39:08Z"),
        (pendulum.datetime(2025, 7, 18, 14, 39, 8, tz="Asia/Shanghai"), "2025-07-18T06:39:08Z"),
    ],
)
def test_times_normalised_to_utc(value: Any, expected: str) -> None:
    assert format_time(parse_time(value, "StartTime")) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (datetime(2025, 7, 18, 6, 39, 8), "time zone"),
        ("2025-07-18T06:39:08", "time zone"),
        ("yesterday", "ISO-8601"),
        ("", "ISO-8601"),
        (1752820748, "aware datetime"),
    ],
)
def test_times_rejected(value: Any, fragment: str) -> None:
    rejects(lambda v: parse_time(v, "EndTime"), value, "EndTime", fragment)


def test_time_window() -> None:
    start, end = validate_time_window("2025-07-18T00:00:00.900Z", "2025-07-19T00:00:00Z")
    assert start is not None
    assert end is not None
    assert (format_time(start), format_time(end)) == ("2025-07-18T00:00:00Z", "2025-07-19T00:00:00Z")
    assert start.microsecond == 0
    assert validate_time_window(None, None) == (None, None)
    with pytest.raises(IceValidationError, match="StartTime: must be before EndTime"):
        validate_time_window("2025-07-19T00:00:00Z", "2025-07-18T00:00:00Z")
    with pytest.raises(IceValidationError, match="before EndTime"):
        validate_time_window("2025-07-18T00:00:00Z", "2025-07-18T08:00:00+08:00")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("+8613800000000", "+8613800000000"), ("0571 8765-4321", "057187654321"), ("(021) 1234", "0211234")],
)
def test_phone_numbers(value: str, expected: str) -> None:
    assert validate_phone_number(value, "CalledNumber") == expected


@pytest.mark.parametrize("value", ["", "12", "++86123", "86+123", "phone", "1" * 21, 8613800000000, None])
def test_phone_numbers_rejected(value: Any) -> None:
    rejects(lambda v: validate_phone_number(v, "CallerNumber"), value, "CallerNumber", "phone number")
