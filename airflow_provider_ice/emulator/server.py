"""The emulator's HTTP server (aiohttp) and :class:`IceEmulator`, its Python face.

Routes:

* ``POST /`` (and ``GET /``): the ICE OpenAPI RPC endpoint (action in ``x-acs-action`` or ``Action``;
  parameters in the query string and/or a form body), V3-signed;
* ``GET /_calllogs/<InstanceId>.json?Expires=…&OSSAccessKeyId=…&Signature=…``: call logs;
* ``/_emulator/…``: control plane for tests (state, reset, faults, seed, health), never faulted.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from airflow_provider_ice.api.signing import FORM_CONTENT_TYPE, Credentials
from airflow_provider_ice.emulator.actions import Actions
from airflow_provider_ice.emulator.auth import Authenticator
from airflow_provider_ice.emulator.call_log import CALLLOG_PREFIX, CallLogSigner
from airflow_provider_ice.emulator.config import EmulatorConfig, FaultConfig, QuotaConfig
from airflow_provider_ice.emulator.control import add_control_routes
from airflow_provider_ice.emulator.downloads import CallLogDownloads
from airflow_provider_ice.emulator.faults import FaultInjector
from airflow_provider_ice.emulator.quotas import QuotaEnforcer
from airflow_provider_ice.emulator.secrets import SecretLedger
from airflow_provider_ice.emulator.store import Store
from airflow_provider_ice.emulator.wire import ApiError, error_response, json_response, new_request_id

API_VERSION = "2020-11-09"
# Handlers still running at shutdown (a slow create) are abandoned after this many seconds.
SHUTDOWN_GRACE = 0.5


def _headers(request: web.Request) -> dict[str, str]:
    """Lower-case names; a repeated header's values joined with ``,`` as the V3 spec canonicalises."""
    merged: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return merged


def _drop(request: web.Request) -> web.Response:
    """Close the connection without a byte of answer (the client sees a reset/closed connection)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # Nothing reaches the client after abort(); the response object only satisfies aiohttp.
    return web.Response(status=204)


class IceEmulator:
    """A local Alibaba Cloud ICE AI-agent service that speaks the real wire protocol.

    ``start()`` runs it on a background thread (its own event loop) and returns ``self``; it is also a
    context manager. ``serve_forever()`` runs it in the foreground (the CLI).

    :param config: keys, lifecycle timings, call-log TTL, faults, seed and clock; defaults if None.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.store = Store(self.config)
        self.faults = FaultInjector(self.config.faults, self.config.seed)
        self.quotas = QuotaEnforcer(self.config.quotas)
        self._secrets = SecretLedger(self.config.record_secrets)
        self.signer = CallLogSigner(self.config.access_key_secret, self._secrets)
        self.auth = Authenticator(self.config, self._secrets)
        self.actions = Actions(self.config, self.store, self.faults, self.signer, self._secrets, self.quotas)
        self.calllogs = CallLogDownloads(self.config, self.store, self.faults, self.signer)
        self.request_counts: Counter[str] = Counter()
        self.error_counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- public API ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._port

    # Read-only views of the config (pass-throughs, no logic): what a test gives a client or a
    # connection, like the hook's endpoint and region (hooks/ice.py).
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the endpoint to give a client or an Airflow connection."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def access_key_id(self) -> str:
        return self.config.access_key_id

    @property
    def access_key_secret(self) -> str:
        return self.config.access_key_secret

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key_id, self.access_key_secret, self.config.security_token)

    def rotate_credentials(
        self, *, access_key_secret: str | None = None, security_token: str | None = None
    ) -> None:
        """Accept only the new secret and/or STS token from now on, as after a rotation."""
        if access_key_secret is not None:
            self.config.access_key_secret = access_key_secret
        if security_token is not None:
            self.config.security_token = security_token

    def airflow_conn_json(self) -> str:
        """Return the ``AIRFLOW_CONN_ICE_DEFAULT`` value that points a connection at this emulator."""
        extra: dict[str, Any] = {"endpoint": self.url, "region": self.config.region}
        if self.config.security_token:
            extra["security_token"] = self.config.security_token
        return json.dumps(
            {
                "conn_type": "alibaba_ice",
                "login": self.access_key_id,
                "password": self.access_key_secret,
                "extra": extra,
            }
        )

    def state(self, agent_id: str | None = None) -> dict[str, Any]:
        """Return what the emulator holds: instances, request and error counts, and the faults.

        Every instance (optionally of one agent) comes with its call-log downloads and expired-URL
        refusals; the faults with their settings, what was injected and what is still forced.

        ``quota_refusals`` is ``{kind: {action: n}}`` for kinds throttled and agent_concurrency
        (:mod:`.quotas`); ``active_calls`` counts each agent's calls not yet Finished.
        ``faults_injected`` is ``{kind: {action: n}}`` over every kind (throttled, server_error_5xx,
        dropped_connection, slow_create, calllog_error, calllog_truncated, calllog_expired,
        listing_lag; downloads under the action ``CallLogDownload``), ``faults_injected_total`` is
        ``{kind: n}``.
        """
        store = self.store
        instances = store.instance_states(agent_id)
        with self._counts_lock:
            request_counts, error_counts = dict(self.request_counts), dict(self.error_counts)
        with store.lock:
            downloads = dict(store.downloads)
        injected = self.faults.injected()
        return {
            "instances": instances,
            "request_counts": request_counts,
            "error_counts": error_counts,
            "calllog_downloads": downloads,
            "calllog_denied": self.calllogs.denied,
            "faults": self.faults.config.to_dict(),
            "faults_injected": injected,
            "faults_injected_total": {kind: sum(by_action.values()) for kind, by_action in injected.items()},
            "faults_forced": self.faults.forced(),
            "quotas": self.quotas.config.to_dict(),
            "quota_refusals": self.quotas.refused(),
            "active_calls": self.quotas.active_calls(store.now()),
        }

    def force_faults(self, action: str, kind: str, count: int = 1) -> list[str]:
        """Make the next ``count`` calls of ``action`` meet fault ``kind`` for sure.

        Whatever the rates and the targeted actions; returns the kinds still forced on ``action``,
        in order.

        The seeded stream is drawn as usual for those calls, so the faults after them are the same
        as without forcing. ``action`` is an API action (kinds throttled, server_error_5xx,
        dropped_connection, and slow_create for creating actions) or ``CallLogDownload`` (kinds
        calllog_error, calllog_truncated; met by the next downloads that reach their object).

        :raises ValueError: naming the allowed values, for an unknown action or kind, or count < 1.
        """
        return self.faults.force(action, kind, count)

    def secrets(self) -> dict[str, str]:
        """``{value: kind}`` of every secret this emulator knows or handed out, for leak scans.

        :raises RuntimeError: unless the emulator was configured with ``record_secrets=True``.
        """
        if not self.config.record_secrets:
            raise RuntimeError("secrets(): start the emulator with EmulatorConfig(record_secrets=True)")
        values = {self.config.access_key_secret: "AccessKey secret"}
        if self.config.security_token:
            values[self.config.security_token] = "STS token"
        return {**self._secrets.snapshot(), **values}

    def reset(self) -> None:
        """Forget every instance, count, nonce, forced fault and recorded secret.

        The faults and quotas go back to the configured ones.
        """
        self.store.reset()
        self.auth.nonces.clear()
        self.faults.reset(self.config.faults)
        self.quotas.reset(self.config.quotas)
        self._secrets.clear()
        self.calllogs.denied = 0
        with self._counts_lock:
            self.request_counts.clear()
            self.error_counts.clear()

    def set_faults(self, faults: FaultConfig | None = None, **changes: Any) -> FaultConfig:
        """Replace the faults with ``faults`` and/or change some settings; returns the new settings.

        ``set_faults(FaultConfig())`` switches every fault off.
        """
        if faults is not None:
            self.faults.replace_all(faults)
        return self.faults.set(**changes) if changes else self.faults.config

    def set_quotas(self, quotas: QuotaConfig | None = None, **changes: Any) -> QuotaConfig:
        """Replace the quotas with ``quotas`` and/or change some; return the new settings.

        The settings are ``qps``, ``action_qps`` and ``agent_concurrency``;
        ``set_quotas(QuotaConfig())`` lifts them all.
        """
        return self.quotas.set(quotas, **changes)

    def seed_history(
        self,
        agent_id: str,
        count: int,
        start: float | Any,
        end: float | Any,
        user_data: Callable[[int], str] | None = None,
    ) -> list[str]:
        """Create ``count`` Finished instances created over ``[start, end)`` (epoch seconds or datetimes)."""
        return self.store.seed_history(agent_id, count, _epoch(start), _epoch(end), user_data)

    # -- running ------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/", self._api)
        app.router.add_get(CALLLOG_PREFIX + "{name}", self.calllogs.handle)
        add_control_routes(app, self)
        return app

    async def _setup(self) -> None:
        # access_log=None: call-log URLs carry signatures, and logging every request costs throughput.
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, backlog=1024)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    def start(self) -> IceEmulator:
        """Start serving on a background thread; returns ``self`` once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._setup())
            except BaseException as err:  # reported to the caller of start()
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                # Handlers still sleeping (slow create, latency) are cancelled, not left dangling.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="ice-emulator", daemon=True)
        self._thread.start()
        ready.wait(timeout=30)
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"the ICE emulator could not start: {failure[0]}") from failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self._port = None

    async def serve_forever(self, on_ready: Callable[[IceEmulator], None] | None = None) -> None:
        """Serve in the current event loop until cancelled (Ctrl-C in the CLI)."""
        await self._setup()
        if on_ready is not None:
            on_ready(self)
        try:
            await asyncio.Event().wait()
        finally:
            if self._runner is not None:
                await self._runner.cleanup()
            self._port = None

    def __enter__(self) -> IceEmulator:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "stopped"
        return f"IceEmulator({where}, access_key_id={self.access_key_id!r})"

    # -- the RPC endpoint ---------------------------------------------------------------------
    def _count(self, action: str, code: str | None = None) -> None:
        with self._counts_lock:
            if code is None:
                self.request_counts[action] += 1
            else:
                self.error_counts[code] += 1

    async def _api(self, request: web.Request) -> web.Response:
        request_id = new_request_id()
        host_id = request.host
        raw_query = request.raw_path.partition("?")[2]
        body = await request.read()
        headers = _headers(request)
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        if body and headers.get("content-type", "").startswith(FORM_CONTENT_TYPE):
            params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        action = headers.get("x-acs-action") or params.get("Action", "")
        try:
            handler = self.actions.handlers.get(action)
            if handler is None:
                raise ApiError(
                    404,
                    "InvalidAction.NotFound",
                    f"Specified api is not found, please check your url and method: {action!r}.",
                )
            self._count(action)
            version = headers.get("x-acs-version") or params.get("Version")
            if version != API_VERSION:
                raise ApiError(
                    404, "InvalidVersion", f"Specified parameter Version is not valid: {version!r}."
                )
            if not (self.config.allow_unsigned and "authorization" not in headers):
                self.auth.verify(
                    method=request.method, path=request.path, raw_query=raw_query, headers=headers, body=body
                )
            self.quotas.admit(action)
            fault = self.faults.for_api(action)
            if fault.drop_before:
                return _drop(request)
            if fault.refuse is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                raise fault.refuse
            # Form-body requests carry the ICE parameters next to the signature's own.
            result = handler(params, f"{request.scheme}://{request.host}")
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop_after:
                return _drop(request)
        except ApiError as err:
            self._count(action, err.code)
            return error_response(err, request_id, host_id)
        return json_response({"RequestId": request_id, **result}, request_id)


def _epoch(value: float | Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    timestamp = getattr(value, "timestamp", None)
    if callable(timestamp):
        if getattr(value, "tzinfo", None) is None:
            raise ValueError("seed_history: datetimes must be timezone-aware")
        return float(timestamp())
    raise TypeError(f"seed_history: expected epoch seconds or an aware datetime, got {type(value).__name__}")
