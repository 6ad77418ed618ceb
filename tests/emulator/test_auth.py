"""V3 signature verification: raw signed httpx requests, tampered in the ways attackers and bugs do."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from airflow_provider_ice.api.signing import Credentials, SignedRequest, utc_timestamp
from airflow_provider_ice.emulator import IceEmulator
from airflow_provider_ice.emulator.auth import NonceCache
from tests.emulator.conftest import send, signed

LIST = "ListAIAgentInstance"
PARAMS = {"AIAgentId": "agent-1", "PageSize": 10}


def _error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert response.headers["x-acs-request-id"] == body["RequestId"]
    return response.status_code, body["Code"]


def _with(request: SignedRequest, **changes: object) -> SignedRequest:
    values = {
        "method": request.method,
        "path": request.path,
        "query_string": request.query_string,
        "headers": dict(request.headers),
        "body": request.body,
    }
    values.update(changes)
    return SignedRequest(**values)  # type: ignore[arg-type]


def test_a_properly_signed_request_succeeds(call: Callable[..., httpx.Response]) -> None:
    response = call(LIST, PARAMS)
    assert response.status_code == 200
    assert response.json()["Instances"] == []
    assert response.headers["content-type"].startswith("application/json")


def test_form_body_parameters_are_signed_and_accepted(
    ice_emulator: IceEmulator, call: Callable[..., httpx.Response]
) -> None:
    user_data = '{"note": "sent in a form body, with spaces & symbols ~*"}'
    response = call("GenerateAIAgentCall", {"AIAgentId": "agent-1", "UserData": user_data}, force_body=True)
    assert response.status_code == 200, response.text
    [instance] = ice_emulator.state()["instances"]
    assert instance["UserData"] == user_data


def test_tampered_query_is_rejected(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS)
    tampered = _with(request, query_string=request.query_string.replace("agent-1", "agent-2"))
    assert _error(send(ice_emulator, tampered)) == (400, "SignatureDoesNotMatch")


def test_tampered_signed_header_is_rejected(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS)
    headers = {**request.headers, "x-acs-action": "DescribeAIAgentInstance"}
    assert _error(send(ice_emulator, _with(request, headers=headers))) == (400, "SignatureDoesNotMatch")


def test_body_hash_mismatch_is_rejected(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS, force_body=True)
    body = request.body.replace(b"agent-1", b"agent-9")
    assert hashlib.sha256(body).hexdigest() != request.headers["x-acs-content-sha256"]
    assert _error(send(ice_emulator, _with(request, body=body))) == (400, "SignatureDoesNotMatch")


def test_reused_nonce_is_rejected(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS)
    assert send(ice_emulator, request).status_code == 200
    assert _error(send(ice_emulator, request)) == (400, "SignatureNonceUsed")
    # A fresh nonce with otherwise identical parameters is fine.
    assert send(ice_emulator, signed(ice_emulator, LIST, PARAMS)).status_code == 200


def test_forged_request_does_not_burn_a_nonce(ice_emulator: IceEmulator) -> None:
    good = signed(ice_emulator, LIST, PARAMS, nonce="nonce-under-attack")
    forged = signed(
        ice_emulator,
        LIST,
        PARAMS,
        nonce="nonce-under-attack",
        credentials=Credentials(ice_emulator.access_key_id, "guessed-secret"),
    )
    assert _error(send(ice_emulator, forged)) == (400, "SignatureDoesNotMatch")
    assert send(ice_emulator, good).status_code == 200


@pytest.mark.parametrize("skew", [-16 * 60, 16 * 60])
def test_stale_or_future_date_is_rejected(ice_emulator: IceEmulator, skew: int) -> None:
    import time

    request = signed(ice_emulator, LIST, PARAMS, date=utc_timestamp(time.time() + skew))
    assert _error(send(ice_emulator, request)) == (400, "InvalidTimeStamp.Expired")


def test_date_within_fifteen_minutes_is_accepted(ice_emulator: IceEmulator) -> None:
    import time

    request = signed(ice_emulator, LIST, PARAMS, date=utc_timestamp(time.time() - 14 * 60))
    assert send(ice_emulator, request).status_code == 200


def test_malformed_date_is_rejected(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS, date="2026-01-01 10:00:00")
    assert _error(send(ice_emulator, request)) == (400, "InvalidTimeStamp.Format")


def test_unknown_access_key_is_rejected(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS, credentials=Credentials("LTAIunknown", "whatever"))
    assert _error(send(ice_emulator, request)) == (404, "InvalidAccessKeyId.NotFound")


def test_missing_or_malformed_authorization(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS)
    headers = {k: v for k, v in request.headers.items() if k != "authorization"}
    assert _error(send(ice_emulator, _with(request, headers=headers))) == (400, "IncompleteSignature")
    headers["authorization"] = "ACS3-HMAC-SHA256 Credential=x"
    assert _error(send(ice_emulator, _with(request, headers=headers))) == (400, "IncompleteSignature")


def test_unsigned_acs_header_is_rejected(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS)
    headers = {**request.headers, "x-acs-extra": "sneaked in"}
    assert _error(send(ice_emulator, _with(request, headers=headers))) == (400, "IncompleteSignature")


def test_unsigned_plain_headers_are_allowed(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS, extra_headers={"user-agent": "test/1", "accept": "*/*"})
    assert send(ice_emulator, request).status_code == 200


def test_unknown_action_and_version(ice_emulator: IceEmulator) -> None:
    assert _error(send(ice_emulator, signed(ice_emulator, "DeleteEverything", {}))) == (
        404,
        "InvalidAction.NotFound",
    )
    request = signed(ice_emulator, LIST, PARAMS, version="2017-09-06")
    assert _error(send(ice_emulator, request)) == (404, "InvalidVersion")


def test_wrong_sts_token_in_raw_request(ice_emulator_factory: Callable[..., IceEmulator]) -> None:
    emulator = ice_emulator_factory(security_token="token-a")
    good = signed(
        emulator,
        LIST,
        PARAMS,
        credentials=Credentials(emulator.access_key_id, emulator.access_key_secret, "token-a"),
    )
    assert send(emulator, good).status_code == 200
    bad = signed(
        emulator,
        LIST,
        PARAMS,
        credentials=Credentials(emulator.access_key_id, emulator.access_key_secret, "token-b"),
    )
    assert _error(send(emulator, bad)) == (400, "InvalidSecurityToken.MismatchWithAccessKey")


def test_error_counts_are_recorded(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS)
    send(ice_emulator, request)
    send(ice_emulator, request)
    state = ice_emulator.state()
    assert state["request_counts"] == {LIST: 2}
    assert state["error_counts"] == {"SignatureNonceUsed": 1}


def test_nonce_cache_forgets_after_the_window_and_beyond_capacity() -> None:
    cache = NonceCache(window=900, capacity=3)
    assert cache.add("a", now=0)
    assert not cache.add("a", now=899)
    assert cache.add("a", now=1800)  # the first "a" has left the window
    for name, moment in (("b", 1801), ("c", 1802), ("d", 1803)):
        assert cache.add(name, now=moment)
    assert len(cache) <= 3  # memory stays bounded: the oldest nonce was forgotten
    assert cache.add("a", now=1804)


def test_form_body_content_type_must_be_signed(ice_emulator: IceEmulator) -> None:
    request = signed(ice_emulator, LIST, PARAMS, force_body=True)
    authorization = request.headers["authorization"].replace("content-type;", "")
    headers = {**request.headers, "authorization": authorization}
    assert _error(send(ice_emulator, _with(request, headers=headers))) == (400, "IncompleteSignature")
