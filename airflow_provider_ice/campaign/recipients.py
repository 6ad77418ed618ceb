"""Campaign recipients: parsing (a list, JSONL or CSV), validation and per-recipient UserData.

Two kinds of bad input are told apart, because they call for different reactions:

* a **structural** error (a line that is not JSON, a recipient that is not an object, no key field,
  a template that does not render or names a field the recipient lacks, a missing phone field)
  means the campaign is set up wrongly. :func:`prepare` raises :class:`RecipientError` naming
  the recipient's position before any call is placed;
* a **per-recipient** problem (an invalid phone number, an unknown time zone, a key seen before) is
  that recipient's alone: it becomes a ``rejected`` result row and the rest of the campaign goes on.

Nothing here imports Airflow.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.validation import json_object, validate_phone_number

#: The recipient file formats, chosen by suffix unless given.
FORMATS = ("jsonl", "csv")


class RecipientError(IceValidationError):
    """A structural error in the recipients: raised before any call, naming the recipient's position."""

    def __init__(self, position: int, message: str) -> None:
        self.position = position
        super().__init__("recipients", f"recipient #{position}: {message}")


@dataclass(frozen=True)
class Recipient:
    """One person to call: position (1-based, in input order), key, fields and what was rendered."""

    position: int
    key: str
    fields: Mapping[str, Any]
    user_data: dict[str, Any] = field(default_factory=dict)
    called_number: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class Rejected:
    """A recipient left out of the campaign, and why (reported in the results)."""

    position: int
    key: str | None
    problem: str


@dataclass(frozen=True)
class RecipientSpec:
    """How recipients become calls.

    :param key: the field holding each recipient's unique key.
    :param user_data_template: a dict (string values rendered) or a string rendering to a JSON
        object; the recipient's fields are the template's variables (also as ``recipient``).
    :param phone_field: for phone calls, the field holding the number to call.
    :param timezone_field: the field holding the recipient's IANA time zone, if any (a recipient
        without the field, or with an empty value, is in ``default_timezone``).
    :param default_timezone: the time zone of recipients without one (with ``timezone_field``
        unset, of everybody).
    """

    key: str
    user_data_template: dict[str, Any] | str | None = None
    phone_field: str | None = None
    timezone_field: str | None = None
    default_timezone: str = "UTC"


def detect_format(name: str, given: str | None = None) -> str:
    """Return the file format: ``given``, else from the suffix (``.jsonl``/``.ndjson``/``.csv``)."""
    if given:
        if given not in FORMATS:
            raise IceValidationError("recipients_format", f"must be one of {list(FORMATS)}, got {given!r}")
        return given
    lowered = name.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    raise IceValidationError(
        "recipients_format", f"cannot tell the format of {name!r}: give one of {list(FORMATS)}"
    )


def parse_lines(lines: Iterable[str], fmt: str) -> Iterator[Any]:
    """Yield the raw recipients of a JSONL or CSV text, in order (blank JSONL lines are skipped)."""
    if fmt == "csv":
        yield from csv.DictReader(lines if not isinstance(lines, str) else io.StringIO(lines))
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as error:
            raise IceValidationError("recipients", f"line {number} is not valid JSON: {error}") from None


def prepare(raw: Iterable[Any], spec: RecipientSpec) -> tuple[list[Recipient], list[Rejected]]:
    """Validate and render every recipient: the campaign's calls and the rejected recipients.

    Raises :class:`RecipientError` at the first structural error, before anything is sent.
    """
    render = _renderer(spec.user_data_template)
    recipients: list[Recipient] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for position, item in enumerate(raw, start=1):
        if not isinstance(item, Mapping):
            raise RecipientError(position, f"must be an object with fields, got {type(item).__name__}")
        key = _key_of(item, spec.key, position)
        user_data = render(item, position)
        phone = _field(item, spec.phone_field, position) if spec.phone_field else None
        # A recipient without a time zone is in the default one.
        tz = item.get(spec.timezone_field) if spec.timezone_field else None
        if key in seen:
            rejected.append(Rejected(position, key, f"duplicate key {key!r}: called once, at its first row"))
            continue
        seen.add(key)
        problem = None
        try:
            if phone is not None:
                phone = validate_phone_number(str(phone), spec.phone_field or "phone_field")
            tz_name = str(tz).strip() if tz not in (None, "") else spec.default_timezone
            ZoneInfo(tz_name)
        except IceValidationError as error:
            problem = str(error)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            problem = f"{spec.timezone_field}: unknown time zone {tz!r}"
        if problem is not None:
            rejected.append(Rejected(position, key, problem))
            continue
        recipients.append(Recipient(position, key, dict(item), user_data, phone, tz_name))
    return recipients, rejected


def _key_of(item: Mapping[str, Any], key_field: str, position: int) -> str:
    if key_field not in item:
        raise RecipientError(
            position, f"has no key field {key_field!r} (recipient_key); fields: {sorted(item)}"
        )
    value = item[key_field]
    if value is None or isinstance(value, (dict, list)) or str(value).strip() == "":
        raise RecipientError(position, f"key field {key_field!r} must be a non-empty text or number")
    return str(value).strip()


def _field(item: Mapping[str, Any], name: str, position: int) -> Any:
    if name not in item:
        raise RecipientError(position, f"has no field {name!r}; fields: {sorted(item)}")
    return item[name]


def _renderer(template: dict[str, Any] | str | None) -> Any:
    """Return a function ``(fields, position) -> dict`` that renders ``template`` strictly with Jinja."""
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

    def compile_(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return env.from_string(value)
            except TemplateError as error:
                raise IceValidationError("user_data_template", f"does not compile: {error}") from None
        if isinstance(value, dict):
            return {k: compile_(v) for k, v in value.items()}
        if isinstance(value, list):
            return [compile_(v) for v in value]
        return value

    compiled = compile_(template)

    def fill(value: Any, variables: dict[str, Any]) -> Any:
        if hasattr(value, "render"):
            return value.render(variables)
        if isinstance(value, dict):
            return {k: fill(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, variables) for v in value]
        return value

    def render(item: Mapping[str, Any], position: int) -> dict[str, Any]:
        if compiled is None:
            return {}
        variables = {**item, "recipient": item}
        try:
            rendered = fill(compiled, variables)
        except TemplateError as error:  # UndefinedError: a field this recipient does not have
            raise RecipientError(position, f"user_data_template does not render: {error}") from None
        try:
            rendered = json_object(rendered, "user_data_template")
        except IceValidationError as error:
            raise RecipientError(position, str(error)) from None
        if CORRELATION_KEY in rendered:
            raise RecipientError(
                position, f"UserData may not set the provider's reserved key {CORRELATION_KEY!r}"
            )
        return rendered

    return render
