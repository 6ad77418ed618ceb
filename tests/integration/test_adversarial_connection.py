"""A bad ``alibaba_ice`` connection fails every entry point before any request, naming the field.

Also: a bare host means HTTPS, and a connection not written ``http://`` refuses plain-http CallLogUrls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.hooks.ice import IceHook
from tests.integration.adversarial import (
    AGENT,
    generate,
    hook,
    nothing_reached,
    sensor,
)

pytestmark = pytest.mark.integration


def _conn(emulator: IceEmulator, **changes: Any) -> str:
    conn = json.loads(emulator.airflow_conn_json())
    extra = {**conn["extra"], **changes.pop("extra", {})}
    conn.update(changes)
    conn["extra"] = {k: v for k, v in extra.items() if v is not None}
    return json.dumps({k: v for k, v in conn.items() if v is not None})


CONNECTIONS: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    "endpoint-ftp-scheme": (
        {"extra": {"endpoint": "ftp://ice.cn-shanghai.aliyuncs.com"}},
        "endpoint",
        ("https://",),
    ),
    "endpoint-ws-scheme": ({"extra": {"endpoint": "ws://127.0.0.1:1"}}, "endpoint", ("https://",)),
    "endpoint-with-path": (
        {"extra": {"endpoint": "https://ice.example.com/api"}},
        "endpoint",
        ("scheme://host",),
    ),
    "endpoint-bad-port": ({"extra": {"endpoint": "http://127.0.0.1:99999"}}, "endpoint", ("port",)),
    "region-not-a-region": ({"extra": {"endpoint": None, "region": "Shanghai!"}}, "region", ("cn-shanghai",)),
    "no-credentials": ({"login": None, "password": None}, "credentials", ("AccessKey",)),
    "only-access-key-id": ({"password": None}, "credentials", ("half", "secret")),
    "only-access-key-secret": ({"login": None}, "credentials", ("half", "AccessKey ID")),
    "blank-secret": ({"password": "   "}, "credentials", ("half",)),
    "timeout-not-a-number": ({"extra": {"timeout": "soon"}}, "timeout", ("seconds",)),
    "timeout-zero": ({"extra": {"timeout": 0}}, "timeout", ("between 0 and 3600",)),
    "max-retries-99": ({"extra": {"max_retries": 99}}, "max_retries", ("0 and 20",)),
    "ca-bundle-missing": (
        {"extra": {"endpoint": "https://127.0.0.1:1", "verify": "/nonexistent/ca.pem"}},
        "verify",
        ("CA bundle",),
    ),
}


@pytest.mark.parametrize(
    ("changes", "parameter", "allowed"), list(CONNECTIONS.values()), ids=list(CONNECTIONS)
)
@pytest.mark.parametrize("entry", ["hook", "generate-operator", "sensor"])
def test_bad_connection_fails_before_any_request(
    ice_emulator: IceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    changes: dict[str, Any],
    parameter: str,
    allowed: tuple[str, ...],
    entry: str,
) -> None:
    for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", _conn(ice_emulator, **dict(changes)))
    call = {
        "hook": hook("describe_ai_agent_instance", "i-1"),
        "generate-operator": generate(),
        "sensor": sensor(agent_id=AGENT, channel_id="c"),
    }[entry]
    if entry == "sensor":
        # The sensor counts polling errors; a configuration error must fail at once, not be retried.
        with pytest.raises(AirflowFailException) as caught:
            call()
        message = str(caught.value)
    else:
        with pytest.raises(IceValidationError) as validation:
            call()
        assert validation.value.parameter == parameter
        # A task fails without retries (the hook, outside a task, raises the plain error).
        assert isinstance(validation.value, AirflowFailException) is (entry != "hook")
        message = str(validation.value)
    assert parameter in message
    for words in allowed:
        assert words in message, f"{words!r} missing from {message!r}"
    nothing_reached(ice_emulator)


def test_bare_host_means_https_and_plain_http_call_log_urls_are_refused(
    ice_emulator: IceEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Plain http only for an endpoint written ``http://``: a bare host is HTTPS, and a connection
    that is not explicitly http refuses an ``http://`` CallLogUrl before downloading anything."""
    import io

    from airflow_provider_ice.api.download import download_call_log
    from airflow_provider_ice.api.errors import CallLogUrlError

    host = ice_emulator.url.removeprefix("http://")
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", _conn(ice_emulator, extra={"endpoint": host}))
    ice_hook = IceHook()
    assert ice_hook.endpoint == f"https://{host}"
    assert ice_hook.get_conn().endpoint == f"https://{host}"
    assert ice_hook.allows_plain_http is False
    plain_url = f"{ice_emulator.url}/_calllogs/i-1.json?Expires=9999999999&OSSAccessKeyId=x&Signature=y"
    with pytest.raises(CallLogUrlError, match="scheme 'http' is not allowed; allowed: https"):
        download_call_log(plain_url, io.BytesIO(), allow_http=ice_hook.allows_plain_http)
    nothing_reached(ice_emulator)
