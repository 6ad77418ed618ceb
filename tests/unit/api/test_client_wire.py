"""IceClient on the wire: parameters, signatures, form bodies, timeouts, endpoints and TLS settings."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import certifi
import httpx
import pytest

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.errors import (
    IceValidationError,
)
from airflow_provider_ice.api.signing import (
    MAX_QUERY_LENGTH,
    Credentials,
)

from .fakes import CREDENTIALS, ENDPOINT, Script, assert_signed, ok
from .scripted_clients import GENERATED, make_client

# --- wire details -------------------------------------------------------------------------------


def test_generate_wire_parameters_and_signature() -> None:
    script = Script(ok(GENERATED))
    client, _ = make_client(script)
    result = client.generate_ai_agent_call(
        "agent-1",
        user_id="u1",
        user_data={"AirflowCorrelationId": "af-1", "名": "值"},
        session_id="s-1",
        expire=0,
        agent_config={"Greeting": "hi *", "UserOnlineTimeout": 60},
        template_config={"VoiceChat": {"Greeting": "x"}},
        chat_sync_config={"IMAIAgentId": "im", "ReceiverId": "r"},
    )
    assert result.instance_id == "inst-1"
    assert result.token is not None
    assert "artc-token-xyz" not in repr(result)
    assert script.params() == {
        "AIAgentId": "agent-1",
        "UserId": "u1",
        "UserData": '{"AirflowCorrelationId":"af-1","名":"值"}',
        "SessionId": "s-1",
        "Expire": "0",
        "AgentConfig": '{"Greeting":"hi *","UserOnlineTimeout":60}',
        "TemplateConfig": '{"VoiceChat":{"Greeting":"x"}}',
        "ChatSyncConfig": '{"IMAIAgentId":"im","ReceiverId":"r"}',
    }
    request = script.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/"
    assert request.headers["host"] == "ice.cn-shanghai.aliyuncs.com"
    assert request.headers["user-agent"].startswith("airflow-provider-ice/0.")
    assert request.content == b""
    assert_signed(request)


def test_long_parameters_move_to_a_signed_form_body() -> None:
    script = Script(ok(GENERATED))
    client, _ = make_client(script)
    prompt = "Answer politely. " * (MAX_QUERY_LENGTH // 10)
    client.generate_ai_agent_call("agent-1", agent_config={"LlmConfig": {"LlmSystemPrompt": prompt}})
    request = script.requests[0]
    assert request.url.query == b""
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert prompt.strip() in httpx.QueryParams(request.content.decode())["AgentConfig"]
    assert "content-type" in request.headers["authorization"]


def test_sts_token_is_sent_and_signed() -> None:
    script = Script(ok({"Instance": {}}))
    client = IceClient(
        Credentials("STS.id", "sts-secret", "sts-token-value"), endpoint=ENDPOINT, transport=script.sync
    )
    client.describe_ai_agent_instance("i")
    request = script.requests[0]
    assert request.headers["x-acs-security-token"] == "sts-token-value"
    assert request.headers["x-acs-accesskey-id"] == "STS.id"
    assert "x-acs-security-token" in request.headers["authorization"]
    assert_signed(request, "sts-secret")


def test_timeouts_reach_the_transport() -> None:
    script = Script(ok({"Instance": {}}))
    client, _ = make_client(script, timeout=7.5, connect_timeout=1.5)
    client.describe_ai_agent_instance("i")
    timeout = script.requests[0].extensions["timeout"]
    assert timeout["connect"] == 1.5
    assert timeout["read"] == 7.5
    default = IceClient(CREDENTIALS, endpoint=ENDPOINT)
    assert (default.timeout.connect, default.timeout.read) == (5.0, 10.0)


def test_secrets_are_reported_for_masking() -> None:
    body = {
        "Instance": {
            "CallLogUrl": "https://oss/x.json?Signature=abc",
            "RuntimeConfig": {"AuthToken": "auth-token-1"},
        }
    }
    seen: list[str] = []
    client = IceClient(
        Credentials("id", "the-secret", "the-sts-token"),
        endpoint=ENDPOINT,
        transport=Script(ok(body)).sync,
        on_secret=seen.append,
    )
    instance_ = client.describe_ai_agent_instance("i")
    assert seen == ["the-secret", "the-sts-token", "https://oss/x.json?Signature=abc", "auth-token-1"]
    assert "auth-token-1" not in repr(instance_)
    assert "Signature=abc" not in repr(instance_)


# --- endpoint and TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("ice.cn-beijing.aliyuncs.com", "https://ice.cn-beijing.aliyuncs.com"),
        ("https://ice.cn-beijing.aliyuncs.com/", "https://ice.cn-beijing.aliyuncs.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("HTTPS://Example.com:8443", "https://example.com:8443"),
    ],
)
def test_endpoint_forms(given: str, url: str) -> None:
    assert IceClient(CREDENTIALS, endpoint=given).endpoint == url


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://ice.example.com",
        "ws://x",
        "https://ice.example.com/path",
        "",
        "https://user:pw@h",
        "http://h:99999",
    ],
)
def test_bad_endpoints_are_rejected(bad: str) -> None:
    with pytest.raises(IceValidationError) as raised:
        IceClient(CREDENTIALS, endpoint=bad)
    assert raised.value.parameter == "endpoint"


def test_verify_false_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        IceClient(CREDENTIALS, endpoint=ENDPOINT, verify=False)
    assert "verification is DISABLED" in caplog.text


def test_ca_bundle_path(tmp_path: Any) -> None:
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, verify=certifi.where())
    assert isinstance(client._verify, ssl.SSLContext)
    with pytest.raises(IceValidationError, match="does not exist"):
        IceClient(CREDENTIALS, endpoint=ENDPOINT, verify=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize(("name", "value"), [("timeout", 0), ("connect_timeout", -1), ("max_retries", 99)])
def test_bad_client_settings(name: str, value: Any) -> None:
    with pytest.raises(IceValidationError, match=name):
        IceClient(CREDENTIALS, endpoint=ENDPOINT, **{name: value})
