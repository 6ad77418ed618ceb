"""IceHook clients: delegation to the sync and async clients, rate limits, secret hygiene."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any
from unittest import mock

import httpx
import pytest
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_ice._compat import AIRFLOW_V_3_0_PLUS
from airflow_provider_ice.api.client import AsyncIceClient
from airflow_provider_ice.hooks.ice import IceHook
from tests.unit.api.fakes import Script, local_server, ok
from tests.unit.hooks.connections import set_conn

# --- API methods delegate to the client ---------------------------------------------------------


def test_methods_use_the_sync_client(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)

    def answer(request: httpx.Request) -> httpx.Response:
        action = request.headers["x-acs-action"]
        return {
            "GenerateAIAgentCall": ok({"InstanceId": "i-1", "ChannelId": "c"}),
            "StartAIAgentOutboundCall": ok({"InstanceId": "i-2"}),
            "ListAIAgentInstance": ok({"Instances": [{"Status": "Finished"}]}),
            "DescribeAIAgentInstance": ok({"Instance": {"Status": "Executing"}}),
            "StopAIAgentInstance": ok({"RequestId": "stop"}),
        }.get(action, ok({"Raw": action}))

    script = Script(answer)
    hook = IceHook(transport=script.sync)
    assert hook.generate_ai_agent_call("a", user_data={"k": 1}, expire=60).instance_id == "i-1"
    assert (
        hook.start_ai_agent_outbound_call(
            "a", called_number="13800000000", caller_number="0571123"
        ).instance_id
        == "i-2"
    )
    assert [i.status for i in hook.list_ai_agent_instances("a", start_time="2025-01-01T00:00:00Z")] == [
        "Finished"
    ]
    assert hook.describe_ai_agent_instance("i-1").status == "Executing"
    assert hook.stop_ai_agent_instance("i-1").request_id == "stop"
    assert hook.call_api("GetAIAgentConcurrency", {"AIAgentId": "a"}) == {"Raw": "GetAIAgentConcurrency"}
    assert script.actions() == [
        "GenerateAIAgentCall",
        "StartAIAgentOutboundCall",
        "ListAIAgentInstance",
        "DescribeAIAgentInstance",
        "StopAIAgentInstance",
        "GetAIAgentConcurrency",
    ]
    assert all(
        r.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=LTAIhookKeyId,")
        for r in script.requests
    )


async def test_async_methods_use_async_lookup_only(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, endpoint="http://127.0.0.1:1")
    script = Script(
        lambda request: {
            "ListAIAgentInstance": ok({"Instances": [{"Status": "Created"}, {"Status": "Finished"}]}),
            "DescribeAIAgentInstance": ok({"Instance": {"Status": "Finished"}}),
            "StopAIAgentInstance": ok({"RequestId": "s"}),
        }.get(request.headers["x-acs-action"], ok({"Raw": 1}))
    )
    hook = IceHook(async_transport=httpx.MockTransport(script))
    loop_thread = threading.get_ident()
    sync_lookup = BaseHook.get_connection

    def off_the_loop(*args: Any, **kwargs: Any) -> Any:
        # Below 3.3.2 common-compat runs the sync lookup in a worker thread, which is fine.
        assert threading.get_ident() != loop_thread, "sync connection lookup on the event loop"
        return sync_lookup(*args, **kwargs)

    with mock.patch.object(BaseHook, "get_connection", side_effect=off_the_loop):
        assert [i.status async for i in hook.alist_ai_agent_instances("a")] == ["Created", "Finished"]
        assert (await hook.adescribe_ai_agent_instance("i")).status == "Finished"
        assert (await hook.astop_ai_agent_instance("i")).request_id == "s"
        assert await hook.acall_api("ListAIAgentDialogues", {"SessionId": "s"}) == {"Raw": 1}
        client = await hook.aget_async_client()
        assert isinstance(client, AsyncIceClient)
        assert client is await hook.aget_async_client()  # cached within one loop
        assert hook.endpoint == "http://127.0.0.1:1"  # settings cached by the async lookup
    await hook.aclose()


def test_rate_limits_from_extras_are_shared_by_every_client_of_the_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_ice.api import ratelimit

    ratelimit.reset_shared_buckets()
    limits = {"rate_limit": "8", "rate_limits": '{"GenerateAIAgentCall": 2}'}
    set_conn(monkeypatch, conn_id="ice_campaign", **limits)
    set_conn(monkeypatch, conn_id="ice_poller", **limits)
    campaign, poller = IceHook("ice_campaign"), IceHook("ice_poller")
    settings = campaign.settings
    assert settings.rate_limits is not None
    assert settings.rate_limits.rate_for("ListAIAgentInstance") == 8.0
    assert settings.rate_limits.rate_for("GenerateAIAgentCall") == 2.0

    async def async_client() -> AsyncIceClient:
        return await poller.aget_async_client()

    sync, other = campaign.get_conn(), asyncio.run(async_client())
    assert sync._limiter is not None
    assert other._limiter is not None
    # Two connections, one AccessKey and endpoint: one bucket per action for both clients.
    assert sync._limiter.bucket("ListAIAgentInstance") is other._limiter.bucket("ListAIAgentInstance")
    ratelimit.reset_shared_buckets()


def test_no_rate_limit_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)
    hook = IceHook()
    assert hook.settings.rate_limits is None
    assert hook.get_conn()._limiter is None


def test_async_client_is_per_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch)
    hook = IceHook()

    async def get() -> AsyncIceClient:
        return await hook.aget_async_client()

    first = asyncio.run(get())
    second = asyncio.run(get())
    assert first is not second
    assert len(hook._async_clients) == 1  # the closed loop's client was dropped


# --- secrets ------------------------------------------------------------------------------------

SECRETS = {
    "access_key_secret": "S3cr3t-AccessKey-Value-7f41",
    "sts": "STS-Token-Value-Qz93kd",
    "artc_token": "ARTC-Token-Value-x0x0x0",
    "auth_token": "Agent-AuthToken-Value-99",
    "call_log_url": "https://oss.example.com/log.json?Expires=1&Signature=SignedUrlSignature123",
}


def _ice_answers(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    action = request["headers"]["x-acs-action"]
    if action == "GenerateAIAgentCall":
        return 200, {"InstanceId": "i-1", "ChannelId": "c-1", "Token": SECRETS["artc_token"]}
    if action == "DescribeAIAgentInstance":
        return 200, {
            "Instance": {
                "Status": "Finished",
                "CallLogUrl": SECRETS["call_log_url"],
                "RuntimeConfig": {"ChannelId": "c-1", "AuthToken": SECRETS["auth_token"]},
            }
        }
    # Errors echo the request, as gateways sometimes do.
    return 500, {"Code": "InternalError", "Message": f"failed for Token={SECRETS['artc_token']}"}


async def _async_calls(hook: IceHook) -> None:
    assert (await hook.adescribe_ai_agent_instance("i-1")).has_call_log
    with pytest.raises(Exception, match="InternalError"):
        await hook.astop_ai_agent_instance("i-1")
    await hook.aclose()


def test_no_secret_reaches_logs_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real HTTP (httpx/httpcore and aiohttp) with every logger at DEBUG: no secret in any output."""
    with local_server(_ice_answers) as (host, captured):
        set_conn(
            monkeypatch,
            password=SECRETS["access_key_secret"],
            endpoint=f"http://{host}",
            security_token=SECRETS["sts"],
            max_retries=1,
        )
        caplog.set_level(logging.DEBUG)
        for name in ("httpx", "httpcore", "aiohttp", "airflow_provider_ice", "tenacity"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        hook = IceHook()
        generated = hook.generate_ai_agent_call("agent-1", user_data={"k": "v"})
        print(generated, repr(generated), generated.model_dump())
        described = hook.describe_ai_agent_instance("i-1")
        print(described, repr(described), described.model_dump())
        with pytest.raises(Exception, match="InternalError") as failed:
            hook.stop_ai_agent_instance("i-1")
        logging.getLogger("test").error("failure: %s", failed.value)
        asyncio.run(_async_calls(hook))
        hook.close()
    output = caplog.text + "".join(r.getMessage() for r in caplog.records) + "".join(capsys.readouterr())
    # Guards: the client's and httpcore's DEBUG logging was captured, or the test would prove nothing.
    assert "ICE GenerateAIAgentCall -> HTTP 200" in output, "client debug logging was not captured"
    assert "send_request_headers" in output, "httpcore debug logging was not captured"
    assert len(captured) >= 6
    authorizations = [request["headers"]["authorization"] for request in captured]
    for label, secret in [
        *SECRETS.items(),
        *((f"authorization-{i}", a) for i, a in enumerate(authorizations)),
    ]:
        assert secret not in output, f"{label} leaked into the logs"
    assert "SignedUrlSignature123" not in output


def test_secrets_are_registered_with_the_airflow_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import redact

    with local_server(_ice_answers) as (host, _):
        set_conn(
            monkeypatch,
            password=SECRETS["access_key_secret"],
            endpoint=f"http://{host}",
            security_token=SECRETS["sts"],
        )
        hook = IceHook()
        hook.generate_ai_agent_call("agent-1")
        hook.describe_ai_agent_instance("i-1")
        hook.close()
    for label, secret in SECRETS.items():
        assert secret not in str(redact(f"value: {secret}")), f"{label} is not masked"


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS,
    reason="supervisor masking: Airflow 2 masks in-process only, there is no call to avoid",
)
async def test_async_secrets_are_masked_without_sync_supervisor_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import mask_secret, redact

    set_conn(monkeypatch, endpoint="http://127.0.0.1:1")
    body = {"Instance": {"CallLogUrl": "https://oss/x?Signature=AsyncOnlySignature77"}}
    hook = IceHook(async_transport=httpx.MockTransport(Script(ok(body))))
    loop_thread = threading.get_ident()

    def blocking_mask(secret: str, *args: Any) -> None:
        assert threading.get_ident() != loop_thread, "blocking mask_secret on the event loop"
        mask_secret(secret, *args)

    with mock.patch("airflow.providers.common.compat.sdk.mask_secret", side_effect=blocking_mask):
        await hook.adescribe_ai_agent_instance("i")
        # Masked in-process at once, before the supervisor has been told.
        assert "AsyncOnlySignature77" not in str(redact("url https://oss/x?Signature=AsyncOnlySignature77"))
        await asyncio.sleep(0.2)  # the supervisor message (3.0-3.2: from a worker thread)
    await hook.aclose()
