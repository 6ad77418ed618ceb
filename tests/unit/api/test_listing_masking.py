"""Listing many instances must not register every instance's secrets with the log masker."""

from __future__ import annotations

import httpx

from airflow_provider_ice.api.client import IceClient
from airflow_provider_ice.api.signing import Credentials


def _transport(body: dict[str, object]) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, json=body))


def test_list_page_secrets_are_not_reported_but_describe_ones_are() -> None:
    page = {
        "RequestId": "r",
        "Instances": [
            {
                "Status": "Finished",
                "CallLogUrl": f"https://oss/{n}.json?Signature=s{n}",
                "RuntimeConfig": {"ChannelId": f"c{n}", "AuthToken": f"auth-{n}"},
            }
            for n in range(100)
        ],
    }
    seen: list[str] = []
    with IceClient(
        Credentials("id", "the-secret"),
        endpoint="http://127.0.0.1:9",
        transport=_transport(page),
        on_secret=seen.append,
    ) as client:
        listed = client.list_ai_agent_instances_page("agent", page_size=100)
    assert len(listed.instances) == 100
    assert seen == ["the-secret"]  # 200 per-instance secrets would each recompile the masker's regex
    assert "auth-7" not in repr(listed)
    assert "Signature=s7" not in repr(listed)

    describe = {
        "Instance": {"CallLogUrl": "https://oss/x?Signature=d", "RuntimeConfig": {"AuthToken": "auth-d"}}
    }
    with IceClient(
        Credentials("id", "the-secret"),
        endpoint="http://127.0.0.1:9",
        transport=_transport(describe),
        on_secret=seen.append,
    ) as client:
        client.describe_ai_agent_instance("i")
    assert seen[-2:] == ["https://oss/x?Signature=d", "auth-d"]
