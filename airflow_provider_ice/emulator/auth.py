"""Server-side V3 (ACS3-HMAC-SHA256) verification, built on the project's own signer.

The checks and their codes follow the gateway (shared/reference/ice-api.md §6-7):

=============================  ======  ====================================================
Condition                      HTTP    Code
=============================  ======  ====================================================
no/unparsable Authorization    400     ``IncompleteSignature``
header present but unsigned    400     ``IncompleteSignature`` (host, every ``x-acs-*``, and
                                       content-type when there is a body: aiohttp-based
                                       clients add one to empty bodies)
unknown AccessKey ID           404     ``InvalidAccessKeyId.NotFound`` (404 as observed on
                                       the live gateway; older docs say 400)
missing STS token              400     ``InvalidSecurityToken.Missing``
wrong STS token                400     ``InvalidSecurityToken.MismatchWithAccessKey``
no/unparsable ``x-acs-date``   400     ``InvalidTimeStamp.Format``
date more than 15 min off      400     ``InvalidTimeStamp.Expired``
no ``x-acs-signature-nonce``   400     ``MissingParameter``
body hash mismatch             400     ``SignatureDoesNotMatch`` (the service hashes the body
                                       it received, so the signature cannot match)
wrong signature                400     ``SignatureDoesNotMatch``
nonce seen in the last 15 min  400     ``SignatureNonceUsed``
=============================  ======  ====================================================
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone

from airflow_provider_ice.api.signing import expected_signature, parse_authorization
from airflow_provider_ice.emulator.config import EmulatorConfig
from airflow_provider_ice.emulator.secrets import SecretLedger
from airflow_provider_ice.emulator.wire import ApiError

#: How long a nonce is remembered: the gateway's replay window.
NONCE_WINDOW = 900.0
_MUST_SIGN_PREFIX = "x-acs-"


class NonceCache:
    """Nonces seen recently, forgotten after ``window`` seconds or beyond ``capacity`` (oldest first)."""

    def __init__(self, window: float = NONCE_WINDOW, capacity: int = 1_000_000) -> None:
        self._window = window
        self._capacity = capacity
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str, now: float | None = None) -> bool:
        """Remember ``nonce``; False when it was already seen inside the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            horizon = now - self._window
            order, seen = self._order, self._seen
            while order and (order[0][0] < horizon or len(order) >= self._capacity):
                seen.discard(order.popleft()[1])
            if nonce in seen:
                return False
            seen.add(nonce)
            order.append((now, nonce))
            return True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
            self._order.clear()


def parse_acs_date(value: str) -> float:
    """Epoch seconds of an ``x-acs-date`` value (``YYYY-MM-DDTHH:MM:SSZ``)."""
    parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    return parsed.replace(tzinfo=timezone.utc).timestamp()


class Authenticator:
    """Checks one request's V3 signature against the configured AccessKey pair.

    :param config: the emulator configuration (keys, STS token, allowed clock skew).
    :param ledger: notes the signature of every Authorization header, when secret recording is on.
    """

    def __init__(self, config: EmulatorConfig, ledger: SecretLedger | None = None) -> None:
        self._config = config
        self._ledger = ledger or SecretLedger(enabled=False)
        self.nonces = NonceCache(capacity=config.nonce_capacity)

    def verify(
        self, *, method: str, path: str, raw_query: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        """Raise :class:`ApiError` with the gateway's code unless the request is properly signed.

        ``headers`` must have lower-case names, repeated headers joined with ``,``.
        """
        config = self._config
        authorization = headers.get("authorization")
        if not authorization:
            raise ApiError(400, "IncompleteSignature", "The request has no Authorization header.")
        try:
            parsed = parse_authorization(authorization)
        except ValueError as err:
            raise ApiError(400, "IncompleteSignature", f"The request signature is malformed: {err}.")
        if self._ledger.enabled:
            self._ledger.record(parsed.signature, "Authorization signature")
        if parsed.access_key_id != config.access_key_id:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        signed = set(parsed.signed_headers)
        unsigned = sorted(
            name
            for name in headers
            if (name.startswith(_MUST_SIGN_PREFIX) or name == "host" or (name == "content-type" and body))
            and name not in signed
        )
        if unsigned:
            raise ApiError(
                400,
                "IncompleteSignature",
                f"The request signature does not cover these headers: {', '.join(unsigned)}.",
            )
        self._check_token(headers.get("x-acs-security-token"))
        self._check_date(headers.get("x-acs-date"))
        nonce = headers.get("x-acs-signature-nonce")
        if not nonce:
            raise ApiError(
                400, "MissingParameter", "The input parameter x-acs-signature-nonce is not supplied."
            )
        claimed_hash = headers.get("x-acs-content-sha256", "")
        if not hmac.compare_digest(claimed_hash, hashlib.sha256(body).hexdigest()):
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header does not match the SHA-256 of the request body.",
            )
        expected = expected_signature(
            config.access_key_secret,
            method=method,
            path=path,
            raw_query=raw_query,
            headers=headers,
            signed_headers=parsed.signed_headers,
        )
        if not hmac.compare_digest(expected, parsed.signature):
            raise ApiError(
                400, "SignatureDoesNotMatch", "Specified signature does not match our calculation."
            )
        # Only a verified request burns its nonce, so a forged request cannot block a real one.
        if not self.nonces.add(f"{parsed.access_key_id}:{nonce}"):
            raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")

    def _check_token(self, token: str | None) -> None:
        expected = self._config.security_token
        if expected is None:
            return
        if not token:
            raise ApiError(400, "InvalidSecurityToken.Missing", "The security token is required.")
        if not hmac.compare_digest(token, expected):
            raise ApiError(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not match the access key.",
            )

    def _check_date(self, value: str | None) -> None:
        if not value:
            raise ApiError(400, "InvalidTimeStamp.Format", "The x-acs-date header is not supplied.")
        try:
            sent = parse_acs_date(value)
        except ValueError:
            raise ApiError(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp is not in the format YYYY-MM-DDThh:mm:ssZ (UTC).",
            )
        if abs(time.time() - sent) > self._config.max_timestamp_skew:
            raise ApiError(
                400,
                "InvalidTimeStamp.Expired",
                f"Specified time stamp or date header is expired (more than "
                f"{int(self._config.max_timestamp_skew // 60)} minutes from the server time).",
            )
