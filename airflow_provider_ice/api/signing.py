"""Alibaba Cloud V3 request signing (ACS3-HMAC-SHA256), shared by the client and the emulator.

The canonicalisation follows the public V3 spec and the official SDK byte for byte
(``alibabacloud_tea_openapi.utils.get_authorization``); ``tests/unit/api/test_signing.py``
checks it against the SDK over generated inputs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

ALGORITHM = "ACS3-HMAC-SHA256"
API_VERSION = "2020-11-09"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# Alibaba Cloud gateways reject request lines longer than this (HTTP 414 above ~16 KB); the V3
# spec lets RPC parameters travel as a signed form body instead, so longer queries move there.
MAX_QUERY_LENGTH = 8192


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, optionally with an STS token. The secret parts never print."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.access_key_secret:
            raise ValueError(
                "credentials: both access_key_id and access_key_secret must be non-empty "
                "(an AccessKey pair, optionally with an STS security_token)"
            )


#: Headers whose values are credentials (the signature and the STS token).
SECRET_HEADERS = frozenset({"authorization", "x-acs-security-token"})


@dataclass(frozen=True, repr=False)
class SignedRequest:
    """Exactly what goes on the wire: the query string and body that were signed.

    Its repr shows neither the credentials in the headers nor the parameters (which may carry an
    AuthToken or UserData): only the method, the path, the header names and the sizes.
    """

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query_string}" if self.query_string else self.path

    def __repr__(self) -> str:
        headers = {k: "<redacted>" if k.lower() in SECRET_HEADERS else v for k, v in self.headers.items()}
        return (
            f"SignedRequest(method={self.method!r}, path={self.path!r}, "
            f"query_string=<{len(self.query_string)} chars>, headers={headers!r}, "
            f"body=<{len(self.body)} bytes>)"
        )


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the V3 spec wants it: only ``A-Za-z0-9-_.~`` stay literal."""
    # Most names and values (ids, numbers) need no encoding: a regex check is far cheaper than quote.
    return value if _UNRESERVED(value) else quote(value, safe="~", encoding="utf-8")


def encode_param_value(value: Any) -> str:
    """Turn a parameter into the string the SDK sends: JSON objects compact, booleans lowercase."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def canonical_query(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Sorted ``key=value`` pairs, both RFC 3986 encoded, joined with ``&``."""
    items = params.items() if isinstance(params, Mapping) else params
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(items, key=lambda kv: kv[0])
    )


def string_to_sign(
    method: str, path: str, query: str, headers: Mapping[str, str], signed_names: Iterable[str]
) -> tuple[str, str]:
    """Return (string to sign, signed header list) for one request."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return _string_to_sign(method, path, query, lowered, sorted({n.lower() for n in signed_names}))


def _string_to_sign(
    method: str, path: str, query: str, lowered: Mapping[str, str], signed_names: list[str]
) -> tuple[str, str]:
    """:func:`string_to_sign` for lower-case header names and a sorted, unique list of signed names."""
    block = "".join(f"{name}:{str(lowered.get(name, '')).strip()}\n" for name in signed_names)
    signed = ";".join(signed_names)
    payload_hash = lowered.get("x-acs-content-sha256", EMPTY_BODY_SHA256)
    canonical_request = f"{method.upper()}\n{path or '/'}\n{query}\n{block}\n{signed}\n{payload_hash}"
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{digest}", signed


def compute_signature(secret: str, to_sign: str) -> str:
    """Return the hex HMAC-SHA256 of ``to_sign`` under ``secret`` (ACS3-HMAC-SHA256)."""
    return hmac.digest(secret.encode("utf-8"), to_sign.encode("utf-8"), "sha256").hex()


#: The last second formatted by :func:`utc_timestamp` (a client signs many requests per second).
_last_timestamp: tuple[int, str] = (-1, "")


def utc_timestamp(epoch: float | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, the format ``x-acs-date`` requires."""
    global _last_timestamp
    second = int(time.time() if epoch is None else epoch)
    cached = _last_timestamp  # one read: another thread may replace the tuple, never tear it
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
        _last_timestamp = cached
    return cached[1]


def new_nonce() -> str:
    """128 random bits as 32 hex digits (what ``uuid4().hex`` gave, without building a UUID)."""
    return os.urandom(16).hex()


def sign_request(
    credentials: Credentials,
    *,
    host: str,
    action: str,
    params: Mapping[str, Any],
    version: str = API_VERSION,
    date: str | None = None,
    nonce: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    force_body: bool = False,
    empty_body_content_type: str | None = None,
) -> SignedRequest:
    """Sign one RPC-style ``POST /`` request.

    Parameters go in the query string, as the SDK sends them, unless the encoded query would be
    longer than :data:`MAX_QUERY_LENGTH` (long system prompts) or ``force_body`` is set; then they
    travel as a form-encoded body whose SHA-256 is signed. Either way, the bytes sent are the
    bytes signed. ``empty_body_content_type`` sends (and signs) a content-type even without a
    body, for HTTP stacks that would otherwise add an unsigned one (aiohttp adds
    ``application/octet-stream`` to every POST, which the service rejects as unsigned).
    """
    encoded = {k: encode_param_value(v) for k, v in params.items() if v is not None}
    query = canonical_query(encoded)
    body = b""
    headers: dict[str, str] = {}
    if force_body or len(query) > MAX_QUERY_LENGTH:
        body, query = query.encode("ascii"), ""
        headers["content-type"] = FORM_CONTENT_TYPE
    elif empty_body_content_type:
        headers["content-type"] = empty_body_content_type
    headers.update(
        {
            "host": host,
            "x-acs-action": action,
            "x-acs-version": version,
            "x-acs-date": date or utc_timestamp(),
            "x-acs-signature-nonce": nonce or new_nonce(),
            "x-acs-content-sha256": hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256,
        }
    )
    if credentials.security_token:
        headers["x-acs-security-token"] = credentials.security_token
        headers["x-acs-accesskey-id"] = credentials.access_key_id
    # Every header name here is lower-case already: sign them all, in order.
    to_sign, signed = _string_to_sign("POST", "/", query, headers, sorted(headers))
    signature = compute_signature(credentials.access_key_secret, to_sign)
    headers["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id},SignedHeaders={signed},Signature={signature}"
    )
    if extra_headers:
        # Unsigned extras (user-agent, accept) are sent but not signed, which the spec allows.
        headers.update({k.lower(): v for k, v in extra_headers.items()})
    return SignedRequest("POST", "/", query, headers, body)


@dataclass(frozen=True)
class ParsedAuthorization:
    """The parts of an ``Authorization`` header: key id, signed header names, signature."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split an ``Authorization: ACS3-HMAC-SHA256 ...`` header; ``ValueError`` when malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}; expected {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    try:
        return ParsedAuthorization(
            access_key_id=fields["Credential"],
            signed_headers=tuple(h for h in fields["SignedHeaders"].split(";") if h),
            signature=fields["Signature"],
        )
    except KeyError as missing:
        raise ValueError(f"Authorization header lacks {missing.args[0]}") from None


def expected_signature(
    secret: str,
    *,
    method: str,
    path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
) -> str:
    """Return what the signature of a received request should be (the emulator's check).

    The query is decoded and canonicalised again, as the service does, so a client that sends
    ``+`` for spaces (the SDK) verifies just like one that sends ``%20``.
    """
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    to_sign, _ = string_to_sign(method, path, canonical_query(pairs), headers, signed_headers)
    return compute_signature(secret, to_sign)
