"""Helpers for the emulator tests: an official-SDK client and raw signed httpx requests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from airflow_provider_ice.api.signing import Credentials, SignedRequest, sign_request
from airflow_provider_ice.emulator import IceEmulator


def sdk_client(emulator: IceEmulator, **config: Any) -> Any:
    """The official SDK (the test oracle), unchanged, pointed at the emulator over plain HTTP."""
    from alibabacloud_ice20201109.client import Client
    from alibabacloud_tea_openapi.models import Config

    return Client(
        Config(
            access_key_id=config.pop("access_key_id", emulator.access_key_id),
            access_key_secret=config.pop("access_key_secret", emulator.access_key_secret),
            endpoint=f"127.0.0.1:{emulator.port}",
            protocol="http",
            **config,
        )
    )


def signed(
    emulator: IceEmulator,
    action: str,
    params: Mapping[str, Any],
    *,
    credentials: Credentials | None = None,
    **sign_kwargs: Any,
) -> SignedRequest:
    return sign_request(
        credentials or emulator.credentials,
        host=f"127.0.0.1:{emulator.port}",
        action=action,
        params=params,
        **sign_kwargs,
    )


def send(emulator: IceEmulator, request: SignedRequest, timeout: float = 10.0) -> httpx.Response:
    """Send exactly the signed bytes (query string, headers, body) to the emulator."""
    return _HTTP.post(
        f"{emulator.url}{request.target}", headers=request.headers, content=request.body, timeout=timeout
    )


# One pooled client: a fresh httpx client per request builds an SSL context each time (slow).
_HTTP = httpx.Client()


@pytest.fixture
def call(ice_emulator: IceEmulator) -> Callable[..., httpx.Response]:
    """``call(action, params, **sign_kwargs)``: one freshly signed request; returns the response."""

    def _call(action: str, params: Mapping[str, Any] | None = None, **sign_kwargs: Any) -> httpx.Response:
        return send(ice_emulator, signed(ice_emulator, action, params or {}, **sign_kwargs))

    return _call


class FakeClock:
    """An injectable time source: starts at a fixed epoch and moves only when told."""

    def __init__(self, start: float = 1_767_261_600.0) -> None:  # 2026-01-01T10:00:00Z
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
