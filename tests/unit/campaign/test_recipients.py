"""Recipients: parsing, structural errors (with the position) and per-recipient problems."""

from __future__ import annotations

import pytest

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.campaign.recipients import (
    RecipientError,
    RecipientSpec,
    detect_format,
    parse_lines,
    prepare,
)

SPEC = RecipientSpec(key="id", user_data_template={"who": "{{ name }}", "n": "{{ recipient.id }}"})


def test_renders_user_data_per_recipient_in_input_order() -> None:
    recipients, rejected = prepare([{"id": 7, "name": "Ann"}, {"id": "b", "name": "Bo"}], SPEC)
    assert rejected == []
    assert [(r.position, r.key, r.user_data) for r in recipients] == [
        (1, "7", {"who": "Ann", "n": "7"}),
        (2, "b", {"who": "Bo", "n": "b"}),
    ]
    assert recipients[0].timezone == "UTC"


def test_string_template_must_render_a_json_object() -> None:
    spec = RecipientSpec(key="id", user_data_template='{"who": "{{ name }}"}')
    [recipient], _ = prepare([{"id": "a", "name": "Ann"}], spec)
    assert recipient.user_data == {"who": "Ann"}
    not_json = r"recipient #1: user_data_template: must be a JSON object; the string given is not JSON"
    with pytest.raises(RecipientError, match=not_json):
        prepare([{"id": "a", "name": "Ann"}], RecipientSpec(key="id", user_data_template="hello {{ name }}"))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "a", "name": "A"}, {"name": "B"}], r"recipient #2: has no key field 'id'"),
        (
            [{"id": "a", "name": "A"}, {"id": " ", "name": "B"}],
            r"recipient #2: key field 'id' must be a non-empty",
        ),
        (
            [{"id": "a", "name": "A"}, {"id": "b"}],
            r"recipient #2: user_data_template does not render: .*'name'",
        ),
        ([{"id": "a", "name": "A"}, "b"], r"recipient #2: must be an object"),
    ],
    ids=["no-key", "blank-key", "unknown-field", "not-an-object"],
)
def test_structural_errors_name_the_position(rows: list, message: str) -> None:
    with pytest.raises(RecipientError, match=message) as caught:
        prepare(rows, SPEC)
    assert caught.value.parameter == "recipients"
    assert caught.value.position == 2


def test_user_data_may_not_set_the_reserved_correlation_key() -> None:
    rows = [{"id": "a", "name": "A", CORRELATION_KEY: "x"}]
    # A recipient field of that name is harmless while the template does not put it in UserData.
    [recipient], _ = prepare(rows, SPEC)
    assert recipient.user_data == {"who": "A", "n": "a"}
    spec = RecipientSpec(key="id", user_data_template={CORRELATION_KEY: "{{ id }}"})
    with pytest.raises(
        RecipientError, match=r"recipient #1: UserData may not set the provider's reserved key"
    ):
        prepare(rows, spec)


def test_missing_phone_field_is_structural_but_a_bad_number_is_per_recipient() -> None:
    spec = RecipientSpec(key="id", phone_field="phone")
    with pytest.raises(RecipientError, match=r"recipient #2: has no field 'phone'"):
        prepare([{"id": "a", "phone": "+8613800000000"}, {"id": "b"}], spec)
    recipients, rejected = prepare(
        [
            {"id": "a", "phone": "+86 138-0000-0000"},
            {"id": "b", "phone": "call me"},
            {"id": "c", "phone": 13800000001},
        ],
        spec,
    )
    assert [(r.key, r.called_number) for r in recipients] == [("a", "+8613800000000"), ("c", "13800000001")]
    [bad] = rejected
    assert (bad.position, bad.key) == (2, "b")
    assert "phone" in bad.problem


def test_duplicates_and_unknown_time_zones_are_rejected_rows_not_failures() -> None:
    spec = RecipientSpec(key="id", timezone_field="tz", default_timezone="Asia/Shanghai")
    rows = [
        {"id": "a", "tz": "Europe/Berlin"},
        {"id": "b", "tz": "Nowhere/City"},
        {"id": "a", "tz": "UTC"},
        {"id": "c"},
        {"id": "d", "tz": ""},
    ]
    recipients, rejected = prepare(rows, spec)
    assert [(r.key, r.timezone) for r in recipients] == [
        ("a", "Europe/Berlin"),
        ("c", "Asia/Shanghai"),
        ("d", "Asia/Shanghai"),
    ]
    assert [(r.position, r.key) for r in rejected] == [(2, "b"), (3, "a")]
    assert "Nowhere/City" in rejected[0].problem
    assert "duplicate key 'a'" in rejected[1].problem


def test_csv_and_jsonl_parsing() -> None:
    assert list(parse_lines("id,name\n1,Ann\n2,Bo\n", "csv")) == [
        {"id": "1", "name": "Ann"},
        {"id": "2", "name": "Bo"},
    ]
    assert list(parse_lines(['{"id": 1}\n', "\n", '{"id": 2}\n'], "jsonl")) == [{"id": 1}, {"id": 2}]
    with pytest.raises(IceValidationError, match=r"recipients: line 2 is not valid JSON"):
        list(parse_lines(['{"id": 1}\n', "{oops\n"], "jsonl"))


def test_format_detection() -> None:
    assert detect_format("s3://bucket/people.CSV") == "csv"
    assert detect_format("/data/people.ndjson") == "jsonl"
    assert detect_format("/data/people.txt", "jsonl") == "jsonl"
    with pytest.raises(IceValidationError, match=r"recipients_format: cannot tell the format"):
        detect_format("/data/people.txt")
    with pytest.raises(IceValidationError, match=r"recipients_format: must be one of \['jsonl', 'csv'\]"):
        detect_format("/data/people.csv", "xlsx")


def test_a_template_that_does_not_compile_is_a_parameter_error() -> None:
    with pytest.raises(IceValidationError, match=r"user_data_template: does not compile"):
        prepare([{"id": "a"}], RecipientSpec(key="id", user_data_template={"x": "{{ oops"}))
