"""Scripted httpx transports for client tests: answer from a script, record what was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from airflow_provider_ice.api.signing import Credentials, expected_signature, parse_authorization

AK, SECRET = "LTAIfakeKeyId", "fake-secret-value-123"
CREDENTIALS = Credentials(AK, SECRET)
ENDPOINT = "https://ice.cn-shanghai.aliyuncs.com"

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def ok(body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body or {"RequestId": "req"}, headers=headers)


def streamed(status: int, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    """A response whose body is still on the wire, as a real transport hands it over.

    ``httpx.Response(content=...)`` reads (and decodes) the body at once; a downloader that reads
    raw bytes needs the stream. A dict body is sent as JSON.
    """
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"content-length": str(len(raw)), **headers}
    return httpx.Response(status, stream=httpx.ByteStream(raw), headers=headers)


def error(status: int, code: str, message: str = "failed", **headers: str) -> httpx.Response:
    body = {"Code": code, "Message": message, "RequestId": "req-err", "Recommend": "https://next.api"}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers requests in order from ``steps`` (the last step repeats) and keeps every request."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, Exception):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step

    @property
    def sync(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def nonces(self) -> list[str]:
        return [r.headers["x-acs-signature-nonce"] for r in self.requests]

    def params(self, index: int = -1) -> dict[str, str]:
        request = self.requests[index]
        return dict(parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True))

    def actions(self) -> list[str]:
        return [r.headers["x-acs-action"] for r in self.requests]


def assert_signed(request: httpx.Request, secret: str = SECRET) -> None:
    """The request verifies with the server-side check (what the emulator and ICE do)."""
    auth = parse_authorization(request.headers["authorization"])
    assert auth.signature == expected_signature(
        secret,
        method=request.method,
        path=request.url.path,
        raw_query=request.url.query.decode(),
        headers=dict(request.headers),
        signed_headers=auth.signed_headers,
    )


def instance(n: int, **extra: Any) -> dict[str, Any]:
    return {"Status": "Finished", "UserData": json.dumps({"n": n}), **extra}


Responder = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


class _RecordingHandler(BaseHTTPRequestHandler):
    captured: list[dict[str, Any]]
    respond: Responder

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        seen = {
            "target": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": self.rfile.read(length) if length else b"",
        }
        self.captured.append(seen)
        status, body = type(self).respond(seen)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def local_server(respond: Responder) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 answering ``respond(request)``; yields (host:port, requests)."""
    captured: list[dict[str, Any]] = []
    handler = type("Handler", (_RecordingHandler,), {"captured": captured, "respond": staticmethod(respond)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", captured
    finally:
        server.shutdown()
        server.server_close()
