"""Our V3 signer and wire format against the official SDK (test-only oracle)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.signing import (
    ALGORITHM,
    Credentials,
    encode_param_value,
    expected_signature,
    parse_authorization,
    sign_request,
)

from .fakes import local_server

AK, SECRET = "testAccessKeyId", "testAccessKeySecret"
SIGNED = {
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
}


def sdk_authorization(query: dict[str, str], headers: dict[str, str], secret: str = SECRET) -> str:
    """What the SDK computes for a request with exactly these (signed) headers and query."""
    request = SimpleNamespace(method="POST", pathname="/", query=query, headers=headers)
    payload = headers["x-acs-content-sha256"]
    return SdkUtils.get_authorization(
        request, ALGORITHM, payload, headers.get("x-acs-accesskey-id", AK), secret
    )


def signed_headers_of(headers: dict[str, str]) -> dict[str, str]:
    names = parse_authorization(headers["authorization"]).signed_headers
    return {name: headers[name] for name in names}


def test_fixed_vector_from_reference() -> None:
    """ice-api.md §7.1, verified there against the SDK and by hand."""
    signed = sign_request(
        Credentials(AK, SECRET),
        host="ice.cn-shanghai.aliyuncs.com",
        action="ListAIAgentInstance",
        params={
            "AIAgentId": "39f8e0bc005e4f309379701645f4abcd",
            "StartTime": "2025-07-18T00:00:00Z",
            "EndTime": "2025-07-19T00:00:00Z",
            "PageSize": 100,
            "PageNumber": 1,
        },
        date="2025-07-18T06:39:08Z",
        nonce="d410180a5abf7fe235dd9b74aca91fc0",
    )
    assert signed.query_string == (
        "AIAgentId=39f8e0bc005e4f309379701645f4abcd&EndTime=2025-07-19T00%3A00%3A00Z"
        "&PageNumber=1&PageSize=100&StartTime=2025-07-18T00%3A00%3A00Z"
    )
    assert signed.headers["authorization"] == (
        "ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;"
        "x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=524a8ed0a714b9390c20ef3756e2caa5f6a1b8e68db614c350cee66ccf004798"
    )


# Values that stress RFC 3986 encoding: unicode, emoji, reserved characters, JSON strings.
TRICKY = st.sampled_from(
    [" ", "*", "~", "+", "/", "=", "&", "%", "?", "#", ":", "😀", "é", "中文", '"', "\n"]
)
VALUES = st.one_of(
    st.text(min_size=0, max_size=40),
    st.lists(TRICKY | st.text(max_size=4), max_size=12).map("".join),
    st.dictionaries(st.text(max_size=8), st.text(max_size=12) | st.integers() | st.booleans(), max_size=4),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.booleans(),
)
KEYS = st.text(
    alphabet=st.characters(min_codepoint=65, max_codepoint=122, categories=["Lu", "Ll"]), min_size=1
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=st.dictionaries(KEYS, VALUES, min_size=1, max_size=6),
    action=st.sampled_from(["GenerateAIAgentCall", "ListAIAgentInstance", "StopAIAgentInstance"]),
    nonce=st.text(alphabet="0123456789abcdef", min_size=8, max_size=32),
    token=st.none() | st.text(alphabet="abcXYZ0129+/=", min_size=5, max_size=30),
    secret=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != ""),
    empty_body_content_type=st.none() | st.just("application/x-www-form-urlencoded"),
)
def test_authorization_matches_sdk(
    params: dict[str, Any],
    action: str,
    nonce: str,
    token: str | None,
    secret: str,
    empty_body_content_type: str | None,
) -> None:
    signed = sign_request(
        Credentials(AK, secret, token),
        host="ice.cn-hangzhou.aliyuncs.com",
        action=action,
        params=params,
        date="2025-07-18T06:39:08Z",
        nonce=nonce,
        extra_headers={"user-agent": "airflow-provider-ice/test"},
        empty_body_content_type=empty_body_content_type,
    )
    headers = signed_headers_of(signed.headers)
    assert set(headers) >= SIGNED
    assert headers.get("content-type") == empty_body_content_type
    if token:
        assert headers["x-acs-security-token"] == token
        assert headers["x-acs-accesskey-id"] == AK
    query = {k: encode_param_value(v) for k, v in params.items()}
    assert signed.headers["authorization"] == sdk_authorization(query, headers, secret)


@settings(max_examples=40, deadline=None)
@given(prompt=st.text(min_size=1, max_size=200))
def test_form_body_signature_matches_sdk(prompt: str) -> None:
    """Long parameters travel in a signed form body: the SDK agrees on the payload hash signature."""
    params = {"AIAgentId": "agent", "AgentConfig": {"LlmConfig": {"LlmSystemPrompt": prompt}}}
    signed = sign_request(
        Credentials(AK, SECRET), host="h", action="GenerateAIAgentCall", params=params, force_body=True
    )
    headers = signed_headers_of(signed.headers)
    assert signed.query_string == ""
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["x-acs-content-sha256"] == hashlib.sha256(signed.body).hexdigest()
    assert signed.headers["authorization"] == sdk_authorization({}, headers)
    decoded = {k: v[0] for k, v in parse_qs(signed.body.decode(), keep_blank_values=True).items()}
    assert json.loads(decoded["AgentConfig"]) == params["AgentConfig"]


# --- wire format: what the SDK client and our client put on the wire for GenerateAIAgentCall ----------


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with local_server(
        lambda _: (200, {"RequestId": "req-1", "InstanceId": "inst-1", "ChannelId": "ch"})
    ) as server:
        yield server


def _decoded_query(target: str) -> dict[str, str]:
    query = urlsplit(target).query
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


def test_generate_wire_format_matches_sdk(recorder: tuple[str, list[dict[str, Any]]]) -> None:
    from alibabacloud_ice20201109 import models as sdk_models
    from alibabacloud_ice20201109.client import Client as SdkClient
    from alibabacloud_tea_openapi.utils_models import Config
    from darabonba.runtime import RuntimeOptions

    host, captured = recorder
    agent_config = {
        "Greeting": "你好 * ~ + / = & 😀",
        "LlmConfig": {"LlmSystemPrompt": 'Be brief; say "hi" & bye'},
        "UserOnlineTimeout": 60,
        "EnablePushToTalk": True,
    }
    user_data = json.dumps(
        {"AirflowCorrelationId": "af-1", "note": "é ü"}, separators=(",", ":"), ensure_ascii=False
    )
    sdk_request = sdk_models.GenerateAIAgentCallRequest().from_map(
        {
            "AIAgentId": "agent-1",
            "AgentConfig": agent_config,
            "Expire": 600,
            "SessionId": "s-1",
            "UserData": user_data,
            "UserId": "user 1",
        }
    )
    sdk = SdkClient(Config(access_key_id=AK, access_key_secret=SECRET, endpoint=host, protocol="HTTP"))
    sdk.generate_aiagent_call_with_options(sdk_request, RuntimeOptions())
    # Same key order as the SDK model's to_map, so the JSON strings can be compared byte for byte.
    sdk_agent_config = sdk_request.agent_config.to_map()

    with IceClient(Credentials(AK, SECRET), endpoint=f"http://{host}", max_retries=0) as client:
        response = client.generate_ai_agent_call(
            "agent-1",
            agent_config=sdk_agent_config,
            expire=600,
            session_id="s-1",
            user_data={"AirflowCorrelationId": "af-1", "note": "é ü"},
            user_id="user 1",
        )
    assert response.instance_id == "inst-1"
    sdk_sent, ours = captured
    assert _decoded_query(ours["target"]) == _decoded_query(sdk_sent["target"])
    # Compact, UTF-8 (not \u-escaped) JSON, as the SDK sends it.
    assert _decoded_query(ours["target"])["AgentConfig"] == json.dumps(
        sdk_agent_config, separators=(",", ":"), ensure_ascii=False
    )
    assert json.loads(_decoded_query(ours["target"])["UserData"]) == json.loads(user_data)
    assert sdk_sent["body"] == ours["body"] == b""
    for sent in (sdk_sent, ours):
        # Both verify with the server-side check the emulator uses.
        auth = parse_authorization(sent["headers"]["authorization"])
        assert auth.signature == expected_signature(
            SECRET,
            method="POST",
            path="/",
            raw_query=urlsplit(sent["target"]).query,
            headers=sent["headers"],
            signed_headers=auth.signed_headers,
        )
    assert ours["headers"]["user-agent"].startswith("airflow-provider-ice/")
