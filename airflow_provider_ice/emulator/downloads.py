"""Serving ``GET /_calllogs/<InstanceId>.json``: OSS-style checks, faults and download counting.

An expired URL's refusal is recorded per instance (``Store.expired_refusals``): under
``calllog_expire_first`` every URL handed out for an instance is expired until one such refusal.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

from aiohttp import web

from airflow_provider_ice.emulator.call_log import CallLogSigner, build_call_log, oss_error_xml
from airflow_provider_ice.emulator.config import EmulatorConfig
from airflow_provider_ice.emulator.faults import CALLLOG_ACTION, FaultInjector
from airflow_provider_ice.emulator.store import FINISHED, Store, iso_utc
from airflow_provider_ice.emulator.wire import new_request_id

XML_CONTENT_TYPE = "application/xml"


class CallLogDownloads:
    """The call-log "bucket": 403 for an expired or tampered URL, 404 for an unknown object.

    :param config: the emulator configuration (seed, clock).
    :param store: instances, per-instance download counts and expired-URL refusals.
    :param faults: latency, 503 and truncation faults for downloads.
    :param signer: checks the URL signature.
    """

    def __init__(
        self, config: EmulatorConfig, store: Store, faults: FaultInjector, signer: CallLogSigner
    ) -> None:
        self._config = config
        self._store = store
        self._faults = faults
        self._signer = signer
        #: Downloads refused with 403 (expired or tampered URLs).
        self.denied = 0

    def _error(self, status: int, code: str, message: str, **extra: str) -> web.Response:
        request_id = new_request_id()
        if status == 403:
            self.denied += 1
        return web.Response(
            status=status,
            body=oss_error_xml(code, message, request_id, **extra),
            headers={"Content-Type": XML_CONTENT_TYPE, "x-oss-request-id": request_id},
        )

    async def handle(self, request: web.Request) -> web.Response:
        fault = self._faults.for_calllog()
        if fault.delay:
            await asyncio.sleep(fault.delay)
        name = request.match_info["name"]
        instance_id = name.removesuffix(".json")
        expires_raw, signature = request.query.get("Expires"), request.query.get("Signature")
        if not expires_raw or not signature or not name.endswith(".json"):
            return self._error(
                403, "AccessDenied", "AccessDenied: anonymous access is forbidden for this object."
            )
        try:
            expires = int(expires_raw)
        except ValueError:
            return self._error(403, "AccessDenied", "Invalid argument: Expires must be epoch seconds.")
        now = self._store.now()
        if now > expires:
            if self._signer.valid_signature(instance_id, expires, signature):
                # Only a genuine URL that ran out counts: a tampered Expires is no expiry.
                with self._store.lock:
                    self._store.expired_refusals[instance_id] += 1
                self._faults.count("calllog_expired", CALLLOG_ACTION)
            return self._error(
                403,
                "AccessDenied",
                "Request has expired.",
                Expires=iso_utc(expires),
                ServerTime=iso_utc(now),
            )
        if not self._signer.valid_signature(instance_id, expires, signature):
            return self._error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        instance = self._store.get(instance_id)
        if instance is None or instance.status(now) != FINISHED:
            return self._error(404, "NoSuchKey", "The specified key does not exist.", Key=name)
        fault = self._faults.settle_calllog(fault)
        if fault.error:
            return self._error(503, "ServiceUnavailable", "Please reduce your request rate.")
        body = json.dumps(build_call_log(self._config.seed, instance).to_wire(), ensure_ascii=False).encode()
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest().upper()
        if fault.truncate:
            body = body[: len(body) // 2]
        with self._store.lock:
            self._store.downloads[instance_id] += 1
        return web.Response(
            body=body,
            headers={
                "Content-Type": "application/json",
                "ETag": f'"{etag}"',
                "x-oss-request-id": new_request_id(),
            },
        )
