"""Every AuthToken of a RuntimeConfig (top level and the deprecated per-scenario copies) and the STS
token of a signed request stay out of reprs and dumps; to_wire still sends them."""

from __future__ import annotations

import pytest

from airflow_provider_ice.api.models import AIAgentInstance
from airflow_provider_ice.api.signing import Credentials, sign_request

TOKENS = {
    scenario: f"auth-token-of-{scenario}" for scenario in ("Top", "VoiceChat", "VisionChat", "AvatarChat3D")
}


def _instance() -> AIAgentInstance:
    runtime: dict[str, object] = {"AuthToken": TOKENS["Top"]}
    for scenario in ("VoiceChat", "VisionChat", "AvatarChat3D"):
        runtime[scenario] = {
            "ChannelId": f"ch-{scenario}",
            "AgentUserId": "agent",
            "AuthToken": TOKENS[scenario],
        }
    return AIAgentInstance.model_validate({"Status": "Finished", "RuntimeConfig": runtime})


@pytest.mark.parametrize(
    "show",
    [
        repr,
        str,
        lambda i: repr(i.model_dump()),
        lambda i: i.model_dump_json(),
        lambda i: repr(i.runtime_config),
    ],
)
def test_no_auth_token_prints_or_dumps(show: object) -> None:
    text = show(_instance())  # type: ignore[operator]
    for token in TOKENS.values():
        assert token not in text


def test_scenario_copies_resolve_and_still_go_on_the_wire() -> None:
    instance = _instance()
    resolved = instance.runtime_config.resolved()
    assert instance.channel_id == "ch-VoiceChat"
    assert resolved.auth_token is not None
    assert resolved.auth_token.get_secret_value() == TOKENS["Top"]
    wire = instance.to_wire()["RuntimeConfig"]
    assert {wire[s]["AuthToken"] for s in ("VoiceChat", "VisionChat", "AvatarChat3D")} == {
        TOKENS["VoiceChat"],
        TOKENS["VisionChat"],
        TOKENS["AvatarChat3D"],
    }
    # A sub-object that is not an object is ignored, not a validation failure of the whole instance.
    odd = AIAgentInstance.model_validate({"RuntimeConfig": {"VoiceChat": "legacy", "ChannelId": "c"}})
    assert odd.channel_id == "c"


def test_a_signed_request_repr_shows_no_credential_and_no_parameter() -> None:
    credentials = Credentials("LTAIid", "the-secret", "STS-TOKEN-VALUE")
    request = sign_request(
        credentials,
        host="ice.example.com",
        action="StartAIAgentInstance",
        params={"AIAgentId": "a", "RuntimeConfig": {"AuthToken": "rt-auth-token"}},
    )
    assert request.headers["x-acs-security-token"] == "STS-TOKEN-VALUE"
    for text in (repr(request), str(request)):
        for secret in ("STS-TOKEN-VALUE", "rt-auth-token", request.headers["authorization"], "the-secret"):
            assert secret not in text
        assert "StartAIAgentInstance" in text
        assert "<redacted>" in text
