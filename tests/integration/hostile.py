"""A tiny stdlib HTTP server that plays a broken or malicious ICE service, and the helpers of its tests."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.api.errors import (
    IceError,
)

AGENT = "hostile-agent"
CORRELATION = "af-hostile"
CHANNEL = "hostile-channel"
RAW_ERRORS = (KeyError, TypeError, UnicodeDecodeError, AttributeError, IndexError)
MB = 1024 * 1024

Body = bytes | Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Answer:
    """One scripted answer: status, headers and a body (or a function that writes the raw reply)."""

    status: int = 200
    body: Body = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(data: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode(), {"Content-Type": "application/json"})


class HostileServer:
    """A local HTTP server answering API actions (by ``x-acs-action``) and GET paths from scripts."""

    def __init__(self) -> None:
        self.actions: dict[str, Answer] = {}
        self.paths: dict[str, Answer] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, answer: Answer | None) -> None:
                if answer is None:
                    answer = Answer(404, b"no script for this request")
                if callable(answer.body):
                    answer.body(self)
                    return
                self.send_response(answer.status)
                headers = {"Content-Length": str(len(answer.body)), **answer.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(answer.body)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                action = self.headers.get("x-acs-action", "")
                server.requests.append(("POST", action))
                self._answer(server.actions.get(action))

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                server.requests.append(("GET", path))
                self._answer(server.paths.get(path))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def context(try_number: int = 1) -> dict[str, Any]:
    from types import SimpleNamespace

    ti = SimpleNamespace(dag_id="hostile", run_id="r", task_id="t", map_index=-1, try_number=try_number)
    return {"ti": ti, "dag_run": None, "task_state_store": None}


def expect_typed(call: Callable[[], Any], *types: type[BaseException]) -> BaseException:
    """``call`` raises one of ``types`` (never a raw parsing error), with a readable message."""
    # Any exception is caught here so that a raw one can be reported as such; the type is checked below.
    with pytest.raises(Exception) as caught:
        call()
    error = caught.value
    raw = isinstance(error, RAW_ERRORS) and not isinstance(error, IceError)
    assert not raw, f"raw {type(error).__name__} escaped: {error!r}"
    assert isinstance(error, types), f"expected one of {types}, got {type(error).__name__}: {error}"
    assert str(error).strip(), "the error must say what went wrong"
    return error


# -- ICE API answers -----------------------------------------------------------------------------


def listed(*items: dict[str, Any]) -> Answer:
    return json_answer({"RequestId": "r", "Instances": list(items)})


def instance_entry(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "Status": status,
        "UserData": json.dumps({CORRELATION_KEY: CORRELATION}),
        "RuntimeConfig": {"ChannelId": CHANNEL, "AgentUserId": "a", "AuthToken": "t"},
        **extra,
    }
