"""What the sync and the async client share below the API methods, without I/O.

Endpoint and TLS set-up, signing a request, reading a response, and :class:`ClientBase`: the
configuration and the decisions of a call (retry or not, outcome unknown or not), written once.
:mod:`.senders` puts requests on the wire and :mod:`.client` drives them, sync and async.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from . import params as ops
from .errors import (
    IceError,
    IceResponseError,
    IceValidationError,
    error_from_response,
    excerpt,
)
from .ratelimit import RateLimits, client_limiter
from .retry import BackoffWait, is_retryable, outcome_unknown, retry_kwargs
from .signing import FORM_CONTENT_TYPE, Credentials, SignedRequest, sign_request
from .validation import positive_seconds, validate_int_range

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .senders import RawResponse

    M = TypeVar("M", bound=BaseModel)

log = logging.getLogger(__name__)

#: Actions that create an instance or place a call: never retried once they may have been sent.
CREATING_ACTIONS = frozenset({"GenerateAIAgentCall", "StartAIAgentInstance", "StartAIAgentOutboundCall"})
#: Raw actions with these prefixes only read (or stop) and are safe to send twice.
SAFE_ACTION_PREFIXES = ("List", "Describe", "Get", "Query", "Search", "Stop")
#: Response fields that are bearer credentials; the client reports them to ``on_secret``.
SECRET_RESPONSE_FIELDS = frozenset({"Token", "AuthToken", "CallLogUrl", "SecurityToken", "AccessKeySecret"})

SecretCallback = Callable[[str], None]


def is_safe_to_repeat(action: str) -> bool:
    """Return True for read-only/stop actions; unknown actions count as creating (the conservative side)."""
    return action not in CREATING_ACTIONS and action.startswith(SAFE_ACTION_PREFIXES)


@dataclass(frozen=True)
class Endpoint:
    """A parsed ICE endpoint: ``url`` without trailing slash, ``host`` as signed and sent."""

    url: str
    host: str
    scheme: str


def parse_endpoint(endpoint: str) -> Endpoint:
    """Accept ``host``, ``host:port``, ``https://host[:port]`` or ``http://host[:port]``.

    A bare host means HTTPS: plain HTTP only when the URL says ``http://`` (the local emulator).
    """
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise IceValidationError("endpoint", "must be a host name or an http(s):// URL")
    text = endpoint.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise IceValidationError(
            "endpoint", f"scheme {parts.scheme!r} is not supported; use https:// (or http:// for an emulator)"
        )
    if not parts.hostname:
        raise IceValidationError("endpoint", f"has no host name: {endpoint!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise IceValidationError(
            "endpoint", f"must be just scheme://host[:port], without path, query or user info: {endpoint!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise IceValidationError("endpoint", f"has an invalid port: {endpoint!r}") from None
    host = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # IPv6 literal
        host = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    return Endpoint(url=f"{scheme}://{host}", host=host, scheme=scheme)


def tls_verify(verify: bool | str) -> bool | ssl.SSLContext:
    """Return ``True`` (system CAs), a CA bundle path, or ``False`` (warned: anyone can impersonate ICE)."""
    if verify is True:
        return True
    if verify is False:
        log.warning(
            "TLS certificate verification is DISABLED for the ICE client; the AccessKey-signed "
            "requests can be intercepted. Use a CA bundle path instead."
        )
        return False
    if isinstance(verify, str) and verify.strip():
        path = os.path.expanduser(verify.strip())
        if not os.path.exists(path):
            raise IceValidationError("verify", f"CA bundle {path!r} does not exist")
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    raise IceValidationError("verify", f"must be true, false or a CA bundle path, got {verify!r}")


def default_user_agent() -> str:
    """Return ``airflow-provider-ice/<version>`` with the Python and platform versions."""
    from airflow_provider_ice import __version__

    return (
        f"airflow-provider-ice/{__version__} httpx/{httpx.__version__} "
        f"Python/{platform.python_version()} ({platform.system()}; {platform.machine()})"
    )


#: Responses whose secrets are not registered with the log masker. A ListAIAgentInstance page carries
#: the AuthToken and CallLogUrl of up to 100 instances: registering each one with Airflow's
#: process-wide masker recompiles its regex once per new secret (quadratic: minutes of CPU for a
#: triggerer or backfill that lists 10,000 instances, and every later log line is matched against
#: thousands of alternatives). List entries become models that keep both fields as SecretStr, and the
#: client never logs response bodies; Describe (one instance) and Generate (the Token) still register.
UNMASKED_RESPONSE_ACTIONS = frozenset({"ListAIAgentInstance"})


class RequestBuilder:
    """Signs requests for one endpoint and turns responses into dicts or typed errors.

    :param credentials: the AccessKey pair (and STS token).
    :param endpoint: the parsed endpoint.
    :param user_agent: the User-Agent header value.
    :param on_secret: called with every secret the client sees (credentials at start, tokens and
        signed URLs in responses) so that a log masker can register it; never called with None.
    :param sign_content_type: send and sign a content-type on body-less requests too (for
        transports that add their own, like aiohttp).
    """

    def __init__(
        self,
        credentials: Credentials,
        endpoint: Endpoint,
        user_agent: str,
        on_secret: SecretCallback | None = None,
        *,
        sign_content_type: bool = False,
    ) -> None:
        self.credentials = credentials
        self._empty_body_content_type = FORM_CONTENT_TYPE if sign_content_type else None
        self.endpoint = endpoint
        self.on_secret = on_secret
        self._extra_headers = {"user-agent": user_agent, "accept": "application/json"}
        self.report_secret(credentials.access_key_secret)
        if credentials.security_token:
            self.report_secret(credentials.security_token)

    def report_secret(self, value: str | None) -> None:
        if self.on_secret is not None and value:
            self.on_secret(value)

    def sign(self, action: str, params: Mapping[str, Any]) -> SignedRequest:
        """Return a freshly signed request: a new date and nonce every call, so every attempt is unique."""
        return sign_request(
            self.credentials,
            host=self.endpoint.host,
            action=action,
            params=params,
            extra_headers=self._extra_headers,
            empty_body_content_type=self._empty_body_content_type,
        )

    def parse(self, action: str, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """Return the JSON object of a 2xx response, or the typed error for anything else."""
        if not 200 <= status < 300:
            raise error_from_response(status, body, dict(headers), action=action)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise IceResponseError(
                f"HTTP {status} response is not a JSON object "
                f"({headers.get('content-type', 'unknown content type')}): {excerpt(body)!r}",
                http_status=status,
                action=action,
            )
        if action not in UNMASKED_RESPONSE_ACTIONS:
            self._report_response_secrets(data)
        return data

    def _report_response_secrets(self, value: Any) -> None:
        if self.on_secret is None:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if key in SECRET_RESPONSE_FIELDS and isinstance(item, str):
                    self.report_secret(item)
                elif isinstance(item, (dict, list)):
                    self._report_response_secrets(item)
        elif isinstance(value, list):
            for item in value:
                self._report_response_secrets(item)


DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3


#: The longest request timeout the client accepts, in seconds.
MAX_TIMEOUT = 3600.0


class ClientBase:
    """Configuration and call decisions shared by both clients (no I/O in the constructor).

    A subclass opens its sender in :meth:`_open` and drives :meth:`_first_failure`,
    :meth:`_raise_final`, :meth:`_finish` and :meth:`_parse` around its own I/O.
    """

    #: Sign a ``content-type`` header (a sender that adds one to a body-less POST needs it).
    sign_content_type = False

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoint: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        verify: bool | str = True,
        user_agent: str | None = None,
        on_secret: SecretCallback | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        transport: Any = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be an airflow_provider_ice.api.signing.Credentials")
        self._endpoint = parse_endpoint(endpoint)
        self.timeout = httpx.Timeout(
            positive_seconds(timeout, "timeout", maximum=MAX_TIMEOUT),
            connect=positive_seconds(connect_timeout, "connect_timeout", maximum=MAX_TIMEOUT),
        )
        self.max_retries = validate_int_range(max_retries, "max_retries", 0, 20)
        self._verify = tls_verify(verify) if self._endpoint.scheme == "https" else True
        agent = default_user_agent()
        self.user_agent = f"{agent} {user_agent}" if user_agent else agent
        self._builder = RequestBuilder(
            credentials, self._endpoint, self.user_agent, on_secret, sign_content_type=self.sign_content_type
        )
        self._wait = BackoffWait(backoff_base, backoff_cap)
        self._retry = {
            safe: retry_kwargs(self.max_retries, self._wait, safe_to_repeat=safe) for safe in (True, False)
        }
        # Shared by every client of the same AccessKey ID and endpoint in this process (None: off).
        self._limiter = client_limiter((credentials.access_key_id, self._endpoint.url), rate_limits)
        self._open(transport)

    def _open(self, transport: Any) -> None:
        """Create the sender (and the retry sleep) of this client; no I/O."""
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        """The endpoint URL, e.g. ``https://ice.cn-shanghai.aliyuncs.com``."""
        return self._endpoint.url

    def _parse(self, model: type[M], data: dict[str, Any], action: str) -> M:
        try:
            return ops.parse_model(model, data, action)
        except IceError as exc:
            converted = outcome_unknown(exc, action, safe_to_repeat=is_safe_to_repeat(action))
            if converted is exc:
                raise
            raise converted from exc

    def _finish(self, action: str, response: RawResponse, started: float) -> dict[str, Any]:
        status, headers, body = response
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "ICE %s -> HTTP %d in %.1f ms (RequestId %s)",
                action,
                status,
                (time.perf_counter() - started) * 1000,
                headers.get("x-acs-request-id", "-"),
            )
        return self._builder.parse(action, status, headers, body)

    def _first_failure(self, exc: IceError, action: str) -> None:
        """After a failed first attempt: raise the final error unless tenacity should take over."""
        if self.max_retries == 0 or not is_retryable(exc, safe_to_repeat=is_safe_to_repeat(action)):
            self._raise_final(exc, action)

    @staticmethod
    def _raise_final(exc: IceError, action: str) -> None:
        converted = outcome_unknown(exc, action, safe_to_repeat=is_safe_to_repeat(action))
        if converted is exc:
            raise exc
        raise converted from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r})"
