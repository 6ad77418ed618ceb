"""Wire-level pieces shared by the emulator's handlers: errors, request ids and JSON answers."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

JSON_CONTENT_TYPE = "application/json;charset=utf-8"


def new_request_id() -> str:
    """Return a request id in the service's format (upper-case UUID)."""
    return str(uuid.uuid4()).upper()


class ApiError(Exception):
    """An error answer of the ICE gateway: a code, a message and the real HTTP status.

    :param status: HTTP status of the answer.
    :param code: the ``Code`` field (``InvalidParameter``, ``SignatureDoesNotMatch``...).
    :param message: the ``Message`` field; never contains a secret.
    :param headers: extra response headers (``x-acs-retry-after`` for throttling).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def invalid_parameter(name: str, message: str) -> ApiError:
    """Return the service's ``InvalidParameter`` error for ``name``."""
    return ApiError(400, "InvalidParameter", f"The specified parameter {name} is not valid: {message}")


def missing_parameter(name: str) -> ApiError:
    """Return the service's ``MissingParameter`` error for ``name``."""
    return ApiError(400, "MissingParameter", f"The input parameter {name} that is mandatory is not supplied.")


def json_response(body: dict[str, Any], request_id: str, status: int = 200, **headers: str) -> web.Response:
    """Return a JSON answer carrying ``request_id`` as the service sends it."""
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": JSON_CONTENT_TYPE, "x-acs-request-id": request_id, **headers},
    )


def error_response(error: ApiError, request_id: str, host_id: str) -> web.Response:
    """Return the gateway's error body: ``RequestId``, ``HostId``, ``Code``, ``Message``, ``Recommend``."""
    body = {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": error.code,
        "Message": error.message,
        "Recommend": (
            f"https://api.aliyun.com/troubleshoot?q={error.code}&product=ICE&requestId={request_id}"
        ),
    }
    return json_response(body, request_id, error.status, **error.headers)
