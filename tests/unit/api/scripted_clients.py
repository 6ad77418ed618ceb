"""Clients over a :class:`~.fakes.Script` whose retry sleeps are recorded instead of slept."""

from __future__ import annotations

from typing import Any

import httpx

from airflow_provider_ice.api.client import AsyncIceClient, IceClient

from .fakes import CREDENTIALS, ENDPOINT, Script

GENERATED = {"RequestId": "r", "InstanceId": "inst-1", "ChannelId": "ch-1", "Token": "artc-token-xyz"}


def make_client(script: Script, **kwargs: Any) -> tuple[IceClient, list[float]]:
    client = IceClient(CREDENTIALS, endpoint=ENDPOINT, transport=script.sync, **kwargs)
    sleeps: list[float] = []
    client._sleep = sleeps.append
    return client, sleeps


def make_async_client(script: Script, **kwargs: Any) -> tuple[AsyncIceClient, list[float]]:
    client = AsyncIceClient(CREDENTIALS, endpoint=ENDPOINT, transport=httpx.MockTransport(script), **kwargs)
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    client._sleep = record
    return client, sleeps
