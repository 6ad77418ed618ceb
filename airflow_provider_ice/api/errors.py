"""Every error the ICE client raises. Messages carry codes, request ids and short excerpts, never credentials.

The hierarchy::

    IceError
    +-- IceValidationError (also ValueError)    a parameter refused before any request
    +-- IceApiError                             the service answered with an error
    |   +-- IceThrottlingError
    |   +-- IceConcurrencyLimitError            the agent is at its concurrent-call limit
    |   +-- IceAuthError
    |   +-- IceInvalidParameterError
    |   +-- IceNotFoundError
    |   +-- IceServerError
    |   +-- IceResponseError                    the answer could not be understood
    +-- IceTransportError                       no answer: refused, reset or timed out
    +-- IceOutcomeUnknownError                  a creating call may or may not have taken effect
    +-- IcePaginationError                      a listing window too full to reach every instance
    +-- CallLogDownloadError                    a CallLogUrl could not be downloaded
        +-- CallLogUrlError (also ValueError)   the URL itself is refused
        +-- CallLogUrlExpiredError              the storage refused the URL: fetch a fresh one
        +-- CallLogTooLargeError                the decoded body exceeds the size cap
        +-- CallLogEncodingError                the body does not decode with its Content-Encoding
        +-- CallLogUnavailableError             5xx, throttling, dropped, over the deadline (retried)

    CallLogFormatError (ValueError)             the downloaded bytes are not a call log

IceApiError and CallLogDownloadError share a private base that holds what the retry policy reads
(``http_status``, ``code``, ``retry_after``); :func:`call_log_failure` says what a failed call-log
fetch asks for next.

The Airflow-facing errors (what a task fails with) are in :mod:`airflow_provider_ice.exceptions`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

EXCERPT_LENGTH = 200
# Signed URLs and tokens must not survive into an error message, even inside an echoed body.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(signature|token|authtoken|accesskeysecret|security-token|expires)=([^&\s\"'<]+)"),
    re.compile(r"(?i)(\"(?:Token|AuthToken|SecurityToken|AccessKeySecret|Signature)\"\s*:\s*\")([^\"]*)"),
    re.compile(r"(?i)(Signature=)([0-9a-f]{16,})"),
)


def scrub(text: str) -> str:
    """Blank out anything that looks like a signature, token or signed-URL parameter."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{'=' if m.group(1)[-1:].isalnum() else ''}***", text)
    return text


class IceError(Exception):
    """Base of every error this provider raises about ICE."""


class IceValidationError(IceError, ValueError):
    """A parameter was rejected before any request was sent."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")


class Answer(TypedDict, total=False):
    """What an HTTP answer said that the retry policy reads; every error of an answer takes it."""

    http_status: int | None
    code: str | None
    retry_after: float | None


class _AnsweredError(IceError):
    """An error an HTTP answer gave, with its :class:`Answer` (status, code, Retry-After).

    The message is scrubbed of secrets, then rendered by :meth:`_render`.
    """

    def __init__(self, message: str, **answer: Unpack[Answer]) -> None:
        self.http_status = answer.get("http_status")
        self.code = answer.get("code")
        self.retry_after = answer.get("retry_after")
        super().__init__(self._render(scrub(message)))

    def _render(self, message: str) -> str:
        return message


class IceApiError(_AnsweredError):
    """The service answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        recommend: str | None = None,
        action: str | None = None,
        **answer: Unpack[Answer],
    ) -> None:
        self.message = scrub(message)
        self.request_id = request_id
        self.recommend = recommend
        self.action = action
        super().__init__(message, **answer)

    def _render(self, message: str) -> str:
        parts = [f"{self.action}: " if self.action else ""]
        parts.append(f"{self.code}: " if self.code else "")
        parts.append(message)
        details = [
            f"{name}={value}"
            for name, value in (("HTTP", self.http_status), ("RequestId", self.request_id))
            if value is not None
        ]
        if details:
            parts.append(f" ({', '.join(details)})")
        return "".join(parts)


class IceThrottlingError(IceApiError):
    """``Throttling*``: the request was refused before it took effect; retry later."""


class IceConcurrencyLimitError(IceApiError):
    """The agent already has as many calls as it may run at once: nothing was created.

    Safe to try again once one of the agent's calls has finished; the client does not retry it by
    itself (waiting for a call to end is the caller's decision, e.g. a campaign's ``max_active_calls``).
    """


class IceAuthError(IceApiError):
    """Bad AccessKey, signature, timestamp or missing RAM permission."""


class IceInvalidParameterError(IceApiError):
    """The service rejected a parameter (``InvalidParameter``, ``MissingParameter``...)."""


class IceNotFoundError(IceApiError):
    """The instance, action or resource does not exist."""


class IceServerError(IceApiError):
    """5xx from the service."""


class IceResponseError(IceApiError):
    """The response could not be understood (not JSON, an HTML proxy page, wrong field types)."""


class IceTransportError(IceError):
    """The request never got a response: connection refused, reset, or timed out."""

    def __init__(self, message: str, *, action: str | None = None, sent: bool = True) -> None:
        self.action = action
        #: False when the request certainly never reached the service (e.g. connection refused).
        self.sent = sent
        super().__init__(f"{action}: {message}" if action else message)


class IceOutcomeUnknownError(IceError):
    """A creating call (GenerateAIAgentCall...) may or may not have taken effect.

    Raised instead of retrying blindly: the caller should look the instance up (by correlation
    id) before placing a second call to a real person.
    """

    def __init__(self, action: str, cause: BaseException) -> None:
        self.action = action
        self.cause = cause
        super().__init__(
            f"{action}: the outcome is unknown ({type(cause).__name__}: {scrub(str(cause))}); "
            "look the instance up before trying again"
        )


class IcePaginationError(IceError):
    """A listing window holds more instances than ListAIAgentInstance can reach and cannot be split."""


class CallLogDownloadError(_AnsweredError):
    """A call log could not be downloaded. Messages never contain the URL."""

    #: Named in the retry log line of :mod:`.retry`.
    action = "Call-log download"


class CallLogUrlError(CallLogDownloadError, ValueError):
    """The URL itself is refused: wrong scheme, no host, or a redirect to another host."""


class CallLogUrlExpiredError(CallLogDownloadError):
    """The storage refused the URL (expired, tampered, or not there yet): fetch a fresh URL."""


class CallLogTooLargeError(CallLogDownloadError):
    """The body exceeds the size cap."""


class CallLogEncodingError(CallLogDownloadError):
    """The body does not decode with its ``Content-Encoding`` (broken or unsupported coding)."""


class CallLogUnavailableError(CallLogDownloadError):
    """5xx, throttling, a dropped connection or an attempt over its deadline (retried, then raised)."""


class CallLogFormatError(ValueError):
    """The bytes behind a CallLogUrl are not a call log (not UTF-8 JSON, truncated, wrong types)."""


#: What a failed call-log fetch asks for next (see :func:`call_log_failure`).
CallLogFailure = Literal["refused", "damaged", "expired", "failed"]


def call_log_failure(err: CallLogDownloadError | CallLogFormatError) -> CallLogFailure:
    """Return what a failed call-log fetch asks for next: the one rule the operator and collector share.

    ``"refused"``: the URL or the size cap refuses it for good; ``"damaged"``: the body does not
    decode or is not a call log (download again); ``"expired"``: the storage refused the URL (fetch a
    fresh one); ``"failed"``: the download kept failing (already retried) and may succeed later.
    """
    if isinstance(err, (CallLogTooLargeError, CallLogUrlError)):
        return "refused"
    if isinstance(err, (CallLogFormatError, CallLogEncodingError)):
        return "damaged"
    if isinstance(err, CallLogUrlExpiredError):
        return "expired"
    return "failed"


AUTH_CODE_PREFIXES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidTimeStamp",
    "SignatureNonceUsed",
    "Forbidden",
    "InvalidSecurityToken",
    "NoPermission",
)
INVALID_PARAMETER_PREFIXES = ("InvalidParameter", "MissingParameter", "InvalidParam", "Missing")
NOT_FOUND_MARKERS = ("NotFound", "NotExist")
#: The code the service answers when an agent is at its concurrent-call limit. Undocumented
#: (ice-api.md §6 lists no ICE business codes); the emulator answers this one, and any code that
#: mentions "Concurrency" is read the same way.
CONCURRENCY_LIMIT_CODE = "QuotaExceeded.AIAgentConcurrency"


def error_class_for(code: str | None, http_status: int) -> type[IceApiError]:
    """Pick the error class from the code first (gateways disagree on statuses), then the status."""
    code = code or ""
    if code.startswith("Throttling") or http_status == 429:
        return IceThrottlingError
    if code == CONCURRENCY_LIMIT_CODE or "Concurrency" in code:
        return IceConcurrencyLimitError
    if code.startswith(AUTH_CODE_PREFIXES) or http_status in (401, 403):
        return IceAuthError
    if code.startswith(INVALID_PARAMETER_PREFIXES):
        return IceInvalidParameterError
    if any(marker in code for marker in NOT_FOUND_MARKERS) or http_status == 404:
        return IceNotFoundError
    if http_status >= 500 or code in ("InternalError", "ServiceUnavailable"):
        return IceServerError
    return IceApiError


def excerpt(body: bytes) -> str:
    """Return the start of a body as one short line of text, secrets scrubbed."""
    text = body[:EXCERPT_LENGTH].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return scrub(text) + ("…" if len(body) > EXCERPT_LENGTH else "")


def _field(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name, data.get(name[:1].lower() + name[1:]))
    return None if value is None else str(value)


def error_from_response(
    http_status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    action: str | None = None,
) -> IceApiError:
    """Build the typed error for a non-2xx response with a JSON, XML or unreadable body."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    retry_after = parse_retry_after(headers)
    data: dict[str, Any] | None = None
    stripped = body.lstrip()
    if stripped.startswith(b"{"):
        try:
            loaded = json.loads(body)
            data = loaded if isinstance(loaded, dict) else None
        except ValueError:
            data = None
    elif stripped.startswith(b"<") and b"<Error" in body[:400]:
        # Imported here: xml.etree costs DAG-parse time and XML error bodies are rare.
        from xml.etree import ElementTree

        try:
            root = ElementTree.fromstring(body)
            data = {child.tag: (child.text or "") for child in root}
        except ElementTree.ParseError:
            data = None
    if data is None or not (_field(data, "Code") or _field(data, "Message")):
        content_type = headers.get("content-type", "unknown content type")
        return error_class_for(None, http_status)(
            f"unexpected HTTP {http_status} response ({content_type}): {excerpt(body)!r}",
            http_status=http_status,
            action=action,
            retry_after=retry_after,
        )
    code = _field(data, "Code")
    return error_class_for(code, http_status)(
        _field(data, "Message") or "no message",
        code=code,
        request_id=_field(data, "RequestId"),
        http_status=http_status,
        recommend=_field(data, "Recommend"),
        action=action,
        retry_after=retry_after,
    )


def parse_retry_after(headers: dict[str, str]) -> float | None:
    """Seconds to wait from ``x-acs-retry-after`` (milliseconds) or ``Retry-After`` (seconds)."""
    raw_ms = headers.get("x-acs-retry-after")
    try:
        if raw_ms is not None and float(raw_ms) > 0:
            return float(raw_ms) / 1000.0
        raw_s = headers.get("retry-after")
        if raw_s is not None and float(raw_s) >= 0:
            return float(raw_s)
    except ValueError:
        return None
    return None


#: Failures a retry cannot fix: a parameter rejected before sending, refused credentials or
#: permissions, a parameter the service rejects. Tasks fail on them without retries.
NON_RETRYABLE_ERRORS: tuple[type[IceError], ...] = (
    IceValidationError,
    IceAuthError,
    IceInvalidParameterError,
)
