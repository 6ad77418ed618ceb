"""Property tests (hypothesis): response parsers raise only their typed errors, whatever arrives;
the V3 signer's canonicalisation is order-independent, round-trips, and verifies server-side."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import parse_qsl

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_ice.api.call_log import CallLog, parse_call_log
from airflow_provider_ice.api.correlation import CORRELATION_KEY, correlation_id_of, make_correlation_id
from airflow_provider_ice.api.errors import (
    CallLogFormatError,
    IceApiError,
    IceResponseError,
    error_from_response,
    scrub,
)
from airflow_provider_ice.api.models import (
    AIAgentInstance,
    DescribeAIAgentInstanceResponse,
    GenerateAIAgentCallResponse,
    InstanceStatus,
    ListAIAgentInstanceResponse,
    StartAIAgentOutboundCallResponse,
)
from airflow_provider_ice.api.params import parse_model
from airflow_provider_ice.api.protocol import RequestBuilder, parse_endpoint
from airflow_provider_ice.api.signing import (
    Credentials,
    canonical_query,
    expected_signature,
    parse_authorization,
    sign_request,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
CALL_LOG_KEYS = [field.alias for field in CallLog.model_fields.values() if field.alias] + ["Role", "Text"]
INSTANCE_KEYS = [f.alias for f in AIAgentInstance.model_fields.values() if f.alias]


def _outcome(call: Any, *args: Any) -> Any:
    """The result, or the exception if it is one of the typed ones; anything else propagates."""
    try:
        return call(*args)
    except (CallLogFormatError, IceApiError) as error:
        return error


def _shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects using the real field names with values of any JSON type (the likely hostile shape)."""
    return st.dictionaries(st.sampled_from(keys), JSON, max_size=len(keys))


# -- call logs -----------------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
def test_parse_call_log_of_any_bytes_returns_a_call_log_or_a_format_error(raw: bytes) -> None:
    result = _outcome(parse_call_log, raw)
    assert isinstance(result, (CallLog, CallLogFormatError))
    assert str(result)


@SETTINGS
@given(
    JSON
    | _shaped(CALL_LOG_KEYS)
    | st.builds(lambda turns: {"Turns": turns}, st.lists(_shaped(CALL_LOG_KEYS)))
)
def test_parse_call_log_of_any_json_returns_a_call_log_or_a_format_error(document: Any) -> None:
    raw = json.dumps(document).encode()
    for candidate in (raw, raw[: len(raw) // 2]):  # whole, and truncated mid-transfer
        parsed = _outcome(parse_call_log, candidate)
        if isinstance(parsed, CallLogFormatError):
            assert "call log" in str(parsed)
        else:
            assert isinstance(parsed, CallLog)
            assert isinstance(parsed.turns, list)


@SETTINGS
@given(st.text(max_size=200))
def test_parse_call_log_never_echoes_more_than_a_reason(text: str) -> None:
    """A format error names the problem, not the document (which may hold personal data)."""
    secret = "PERSONAL-DATA-" + text
    error = _outcome(parse_call_log, json.dumps({"Turns": secret}).encode())
    assert isinstance(error, CallLogFormatError)
    assert secret not in str(error)


# -- service responses ---------------------------------------------------------------------------

HEADERS = st.dictionaries(
    st.sampled_from(["content-type", "x-acs-retry-after", "retry-after", "x-acs-request-id", "X-Other"]),
    # Header values arrive as latin-1 text from the wire.
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=20),
    max_size=4,
)
BODIES = (
    st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    | _shaped(["Code", "Message", "RequestId", "Recommend", "HostId", "code", "message"]).map(
        lambda v: json.dumps(v).encode()
    )
    | st.builds(
        lambda code, message: (
            f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        ),
        st.text(max_size=20),
        st.text(max_size=40),
    )
)


@SETTINGS
@given(
    st.integers(min_value=100, max_value=599), BODIES, HEADERS, st.sampled_from([None, "ListAIAgentInstance"])
)
def test_error_from_response_always_builds_a_typed_error(
    status: int, body: bytes, headers: dict[str, str], action: str | None
) -> None:
    error = error_from_response(status, body, headers, action=action)
    assert isinstance(error, IceApiError)
    assert error.http_status == status
    assert str(error)
    if error.retry_after is not None:
        assert error.retry_after >= 0


@SETTINGS
@given(st.integers(min_value=100, max_value=599), BODIES, HEADERS)
def test_response_parsing_returns_a_dict_or_a_typed_error(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    builder = RequestBuilder(Credentials("LTAIprop", "prop-secret"), parse_endpoint("127.0.0.1:1"), "ua")
    data = _outcome(builder.parse, "DescribeAIAgentInstance", status, _wire_headers(headers), body)
    if isinstance(data, IceApiError):
        assert str(data)
    else:
        assert 200 <= status < 300
        assert isinstance(data, dict)


def _wire_headers(headers: dict[str, str]) -> httpx.Headers:
    """Headers as a response carries them: latin-1 bytes."""
    return httpx.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()])


MODELS = [
    ListAIAgentInstanceResponse,
    DescribeAIAgentInstanceResponse,
    GenerateAIAgentCallResponse,
    StartAIAgentOutboundCallResponse,
]
RESPONSES = (
    st.dictionaries(st.text(max_size=10), JSON, max_size=4)
    | st.builds(lambda items: {"Instances": items}, st.lists(_shaped(INSTANCE_KEYS) | JSON, max_size=3))
    | st.builds(lambda item: {"Instance": item}, _shaped(INSTANCE_KEYS) | JSON)
    | _shaped(["InstanceId", "ChannelId", "Token", "RequestId", "UserId"])
)


@SETTINGS
@given(st.sampled_from(MODELS), RESPONSES)
def test_response_models_parse_or_raise_a_response_error(model: type[Any], data: dict[str, Any]) -> None:
    parsed = _outcome(parse_model, model, data, "Action")
    if isinstance(parsed, IceResponseError):
        assert "unexpected response shape" in str(parsed)
    else:
        assert isinstance(parsed, model)
        if isinstance(parsed, ListAIAgentInstanceResponse):
            for instance in parsed.instances:
                _ = (instance.channel_id, instance.has_call_log, str(instance.status))


@SETTINGS
@given(st.text(max_size=40))
def test_any_status_is_kept(value: str) -> None:
    status = InstanceStatus(value)
    assert str(status) == value
    assert status.is_known == (value in {"Created", "Executing", "Finished"})
    assert status.is_terminal == (value == "Finished")


@SETTINGS
@given(st.none() | st.text(max_size=80) | JSON.map(json.dumps))
def test_correlation_id_of_any_user_data_is_none_or_a_string(user_data: str | None) -> None:
    found = correlation_id_of(user_data)
    assert found is None or isinstance(found, str)


@SETTINGS
@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.integers(-1, 10_000))
def test_correlation_ids_round_trip_through_user_data(dag_id: str, run_id: str, map_index: int) -> None:
    correlation_id = make_correlation_id(dag_id, run_id, "task", map_index)
    assert correlation_id_of(json.dumps({"x": 1, CORRELATION_KEY: correlation_id})) == correlation_id


SIGNATURE_VALUES = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=%", min_size=12
)


@SETTINGS
@given(SIGNATURE_VALUES, st.text(max_size=30))
def test_scrub_removes_url_signatures_and_is_idempotent(signature: str, prefix: str) -> None:
    text = f"{prefix} GET https://oss.example.com/x.json?Expires=1&Signature={signature}&a=b"
    cleaned = scrub(text)
    assert signature not in cleaned.partition("Signature=")[2].partition("&")[0]
    assert scrub(cleaned) == cleaned


# -- the signer ----------------------------------------------------------------------------------

PARAMS = st.dictionaries(st.text(min_size=1, max_size=15), st.text(max_size=40), max_size=8)


@SETTINGS
@given(PARAMS, st.randoms())
def test_canonical_query_is_order_independent(params: dict[str, str], rng: random.Random) -> None:
    items = list(params.items())
    rng.shuffle(items)
    assert canonical_query(items) == canonical_query(params)
    assert canonical_query(dict(items)) == canonical_query(params)


@SETTINGS
@given(PARAMS)
def test_canonical_query_round_trips_through_parse_qsl(params: dict[str, str]) -> None:
    query = canonical_query(params)
    assert parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)) == sorted(params.items())
    # Only unreserved characters travel literally: nothing a proxy could re-encode differently.
    assert all((c.isalnum() and c.isascii()) or c in "-_.~%=&" for c in query)


@SETTINGS
@given(
    PARAMS,
    st.sampled_from(["GenerateAIAgentCall", "ListAIAgentInstance"]),
    st.booleans(),
    st.none() | st.text(alphabet="abcdefXYZ0123456789", min_size=8, max_size=30),
    st.booleans(),
)
def test_the_server_side_signature_equals_the_client_signature(
    params: dict[str, str], action: str, force_body: bool, token: str | None, content_type: bool
) -> None:
    credentials = Credentials("LTAIproperty", "property-secret-value", token)
    signed = sign_request(
        credentials,
        host="ice.cn-shanghai.aliyuncs.com",
        action=action,
        params=params,
        force_body=force_body,
        empty_body_content_type="application/x-www-form-urlencoded" if content_type else None,
    )
    authorization = parse_authorization(signed.headers["authorization"])
    assert authorization.access_key_id == credentials.access_key_id
    server = expected_signature(
        credentials.access_key_secret,
        method=signed.method,
        path=signed.path,
        raw_query=signed.query_string,
        headers=signed.headers,
        signed_headers=authorization.signed_headers,
    )
    assert server == authorization.signature
    # A changed parameter, or another secret, no longer verifies.
    wrong = expected_signature(
        credentials.access_key_secret + "x",
        method=signed.method,
        path=signed.path,
        raw_query=signed.query_string,
        headers=signed.headers,
        signed_headers=authorization.signed_headers,
    )
    assert wrong != authorization.signature
    if signed.query_string:
        tampered = expected_signature(
            credentials.access_key_secret,
            method=signed.method,
            path=signed.path,
            raw_query=signed.query_string + "&Injected=1",
            headers=signed.headers,
            signed_headers=authorization.signed_headers,
        )
        assert tampered != authorization.signature
