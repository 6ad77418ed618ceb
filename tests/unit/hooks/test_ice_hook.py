"""IceHook settings: connection fields and extras, environment fallback, test_connection."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import certifi
import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.hooks.ice import IceHook
from tests.unit.api.fakes import Script, error, ok
from tests.unit.hooks.connections import set_conn


def test_hook_identity() -> None:
    assert IceHook.conn_name_attr == "ice_conn_id"
    assert IceHook.default_conn_name == "ice_default"
    assert IceHook.conn_type == "alibaba_ice"
    assert IceHook.hook_name == "Alibaba Cloud ICE"
    assert IceHook().ice_conn_id == "ice_default"


def test_constructor_does_no_io() -> None:
    with mock.patch.object(BaseHook, "get_connection", side_effect=AssertionError("I/O in __init__")):
        IceHook("anything")


def test_defaults_from_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)
    hook = IceHook()
    assert hook.region == "cn-shanghai"
    assert hook.endpoint == "https://ice.cn-shanghai.aliyuncs.com"
    assert hook.allows_plain_http is False
    client = hook.get_conn()
    assert isinstance(client, IceClient)
    assert client is hook.get_conn()  # cached
    assert (client.timeout.connect, client.timeout.read, client.max_retries) == (5.0, 10.0, 3)
    settings = hook.settings
    assert settings.credentials.access_key_id == "LTAIhookKeyId"
    assert settings.credentials.access_key_secret == "hook-secret-value-42"
    assert settings.credentials.security_token is None


def test_all_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        conn_id="ice_full",
        region="ap-southeast-1",
        security_token="sts-token-value-9",
        timeout="20",
        connect_timeout=2.5,
        max_retries="5",
        verify=certifi.where(),
    )
    hook = IceHook("ice_full")
    assert hook.endpoint == "https://ice.ap-southeast-1.aliyuncs.com"
    assert hook.region == "ap-southeast-1"
    client = hook.get_conn()
    assert (client.timeout.connect, client.timeout.read, client.max_retries) == (2.5, 20.0, 5)
    assert hook.settings.credentials.security_token == "sts-token-value-9"
    assert hook.settings.verify == certifi.where()


@pytest.mark.parametrize(
    ("endpoint", "url", "plain"),
    [
        ("ice.cn-hangzhou.aliyuncs.com", "https://ice.cn-hangzhou.aliyuncs.com", False),
        ("https://ice-vpc.cn-shanghai.aliyuncs.com", "https://ice-vpc.cn-shanghai.aliyuncs.com", False),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765", True),
        ("localhost:8765", "https://localhost:8765", False),
    ],
)
def test_endpoint_override(monkeypatch: pytest.MonkeyPatch, endpoint: str, url: str, plain: bool) -> None:
    set_conn(monkeypatch, endpoint=endpoint, region="cn-beijing")
    hook = IceHook()
    assert hook.endpoint == url
    assert hook.allows_plain_http is plain
    assert hook.get_conn().endpoint == url


@pytest.mark.parametrize(
    ("extra", "parameter"),
    [
        ({"endpoint": "ftp://ice.example.com"}, "endpoint"),
        ({"endpoint": "grpc://127.0.0.1:1"}, "endpoint"),
        ({"region": "Shanghai!"}, "region"),
        ({"timeout": "soon"}, "timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"max_retries": "lots"}, "max_retries"),
        ({"max_retries": 50}, "max_retries"),
        ({"verify": 3}, "verify"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limits": "{oops"}, "rate_limits"),
        ({"rate_limits": {"GenerateAIAgentCall": -1}}, "rate_limits.GenerateAIAgentCall"),
    ],
)
def test_bad_extras_are_rejected_clearly(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], parameter: str
) -> None:
    set_conn(monkeypatch, **extra)
    with pytest.raises(IceValidationError) as raised:
        IceHook().get_conn()
    assert raised.value.parameter == parameter


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("False", False), ("0", False), ("true", True)]
)
def test_verify_strings(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    set_conn(monkeypatch, verify=value)
    assert IceHook().settings.verify is expected


def test_verify_false_logs_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    set_conn(monkeypatch, verify=False)
    with caplog.at_level(logging.WARNING):
        IceHook().get_conn()
    assert "TLS certificate verification is DISABLED" in caplog.text


def test_environment_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, login=None, password=None, region="cn-beijing")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenvKey")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret-value")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "env-sts-token")
    credentials = IceHook().settings.credentials
    assert (credentials.access_key_id, credentials.access_key_secret, credentials.security_token) == (
        "LTAIenvKey",
        "env-secret-value",
        "env-sts-token",
    )


def test_connection_keys_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenvKey")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret-value")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "env-sts-token")
    credentials = IceHook().settings.credentials
    assert credentials.access_key_id == "LTAIhookKeyId"
    assert credentials.security_token is None  # an env STS token belongs to the env keys only


def test_missing_connection_uses_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenvKey")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret-value")
    hook = IceHook("ice_not_defined")
    assert hook.settings.credentials.access_key_id == "LTAIenvKey"
    assert hook.endpoint == "https://ice.cn-shanghai.aliyuncs.com"


def test_missing_connection_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AirflowNotFoundException, match="ice_not_defined"):
        IceHook("ice_not_defined").get_conn()


@pytest.mark.parametrize(
    ("login", "password", "env", "fragment"),
    [
        ("LTAIonlyId", None, {}, "AccessKey secret (password) is missing"),
        (None, "only-secret", {}, "AccessKey ID (login) is missing"),
        (None, None, {}, "no AccessKey found"),
        (None, None, {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIenv"}, "AccessKey secret (password) is missing"),
    ],
)
def test_half_credentials_fail_clearly(
    monkeypatch: pytest.MonkeyPatch,
    login: str | None,
    password: str | None,
    env: dict[str, str],
    fragment: str,
) -> None:
    set_conn(monkeypatch, login=login, password=password)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(IceValidationError) as raised:
        IceHook().get_conn()
    assert raised.value.parameter == "credentials"
    assert fragment in str(raised.value)
    assert "only-secret" not in str(raised.value)


# --- test_connection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "ok_expected", "fragment"),
    [
        (ok({"Instances": []}), True, "Connection works"),
        (error(400, "InvalidParameter.AIAgentId", "agent not found"), True, "InvalidParameter.AIAgentId"),
        (error(404, "AIAgentNotFound"), True, "AIAgentNotFound"),
        (
            error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."),
            False,
            "Authentication",
        ),
        (error(400, "SignatureDoesNotMatch"), False, "Authentication"),
        (error(403, "Forbidden.RAM"), False, "Authentication"),
        (error(503, "ServiceUnavailable"), False, "ServiceUnavailable"),
        (httpx.ConnectError("connection refused"), False, "ConnectError"),
    ],
)
def test_test_connection(
    monkeypatch: pytest.MonkeyPatch, response: Any, ok_expected: bool, fragment: str
) -> None:
    set_conn(monkeypatch, max_retries=0)
    script = Script(response)
    result, message = IceHook(transport=script.sync).test_connection()
    assert (result, fragment in message) == (ok_expected, True), message
    assert script.actions() == ["ListAIAgentInstance"]
    assert script.params()["PageSize"] == "1"
    assert "hook-secret-value-42" not in message


def test_test_connection_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, login="LTAIonly", password=None)
    result, message = IceHook().test_connection()
    assert result is False
    assert "password" in message
