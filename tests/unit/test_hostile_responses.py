"""Hostile answers from the ICE endpoint and the call-log storage, through the public surface.

A tiny stdlib HTTP server plays a broken or malicious service: non-JSON and HTML bodies, missing or
wrongly typed fields, unknown statuses, an instance that never shows up, a 50 MB or truncated or
non-UTF-8 call log, redirects to another host. Every case must end in a typed, readable error (or
the documented fallback), never a raw KeyError/TypeError/UnicodeDecodeError, and never leave a file
under its final name (nor a temporary one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import PokeReturnValue

from airflow_provider_ice.api.correlation import CORRELATION_KEY
from airflow_provider_ice.api.errors import (
    IceApiError,
    IceError,
    IceOutcomeUnknownError,
    IceResponseError,
    IceServerError,
)
from airflow_provider_ice.hooks.ice import IceHook
from airflow_provider_ice.operators._agent_wait import IceAgentCallError, IceAgentInstanceNotFoundError
from airflow_provider_ice.operators.agent_call import IceGenerateAIAgentCallOperator
from airflow_provider_ice.operators.call_log import (
    IceCallLogError,
    IceCallLogInvalidError,
    IceFetchCallLogOperator,
)
from airflow_provider_ice.sensors.agent_instance import IceAIAgentInstanceSensor

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


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileServer]:
    server = HostileServer()
    conn = {
        "conn_type": "alibaba_ice",
        "login": "LTAIhostile",
        "password": "hostile-secret",
        "extra": {"endpoint": server.url, "max_retries": 0, "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", json.dumps(conn))
    yield server
    server.close()


@pytest.fixture
def elsewhere() -> Iterator[HostileServer]:
    """Another host (another port): redirects there must never be followed."""
    server = HostileServer()
    yield server
    server.close()


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

API_CASES: dict[str, tuple[str, Answer, type[BaseException], str]] = {
    "200-not-json": (
        "DescribeAIAgentInstance",
        Answer(200, b"OK, done!"),
        IceResponseError,
        "not a JSON object",
    ),
    "200-json-array": ("DescribeAIAgentInstance", json_answer([1, 2]), IceResponseError, "not a JSON object"),
    "200-empty-body": ("DescribeAIAgentInstance", Answer(200, b""), IceResponseError, "not a JSON object"),
    "200-invalid-utf8": (
        "DescribeAIAgentInstance",
        Answer(200, b'{"Instance": {"Status": "\xff\xfe"}}', {"Content-Type": "application/json"}),
        IceResponseError,
        "not a JSON object",
    ),
    "502-html-proxy-page": (
        "DescribeAIAgentInstance",
        Answer(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"}),
        IceServerError,
        "HTTP 502",
    ),
    "500-invalid-utf8-error-body": (
        "DescribeAIAgentInstance",
        Answer(500, b'{"Code": "\xff\xfe", "Message": 1}'),
        IceServerError,
        "500",
    ),
    "400-error-fields-wrong-types": (
        "DescribeAIAgentInstance",
        json_answer({"Code": ["x"], "Message": {"a": 1}, "RequestId": 7}, 400),
        IceApiError,
        "400",
    ),
    "instance-wrong-type": (
        "DescribeAIAgentInstance",
        json_answer({"Instance": "Finished"}),
        IceResponseError,
        "unexpected response shape",
    ),
    "runtime-config-wrong-type": (
        "DescribeAIAgentInstance",
        json_answer({"Instance": {"Status": "Finished", "RuntimeConfig": ["a"]}}),
        IceResponseError,
        "RuntimeConfig",
    ),
    "instances-not-a-list": (
        "ListAIAgentInstance",
        json_answer({"Instances": "abc"}),
        IceResponseError,
        "Instances",
    ),
    "instances-items-wrong-type": (
        "ListAIAgentInstance",
        json_answer({"Instances": [42]}),
        IceResponseError,
        "Instances",
    ),
    "call-log-url-wrong-type": (
        "ListAIAgentInstance",
        json_answer({"Instances": [{"Status": "Finished", "CallLogUrl": 12}]}),
        IceResponseError,
        "CallLogUrl",
    ),
    "302-redirect-elsewhere": (
        "DescribeAIAgentInstance",
        Answer(302, b"", {"Location": "{elsewhere}/"}),
        IceApiError,
        "302",
    ),
}


@pytest.mark.parametrize(
    ("action", "answer", "error", "words"), list(API_CASES.values()), ids=list(API_CASES)
)
def test_hostile_api_answers_become_typed_errors(
    hostile: HostileServer, elsewhere: HostileServer, action: str, answer: Answer, error: type, words: str
) -> None:
    answer.headers = {k: v.replace("{elsewhere}", elsewhere.url) for k, v in answer.headers.items()}
    hostile.actions[action] = answer
    hook = IceHook()
    if action == "ListAIAgentInstance":
        call: Callable[[], Any] = lambda: list(hook.list_ai_agent_instances(AGENT))  # noqa: E731
    else:
        call = lambda: hook.describe_ai_agent_instance("i-1")  # noqa: E731
    caught = expect_typed(call, error)
    assert words in str(caught)
    assert "hostile-secret" not in str(caught)
    assert elsewhere.requests == [], "a redirect of a signed API request was followed"


def test_unreadable_create_answer_is_outcome_unknown_then_looked_up_not_repeated(
    hostile: HostileServer,
) -> None:
    """GenerateAIAgentCall answered 200 without InstanceId: the documented fallback is "outcome unknown",
    a lookup by correlation id, and a clear failure; never a second GenerateAIAgentCall."""
    hostile.actions["GenerateAIAgentCall"] = json_answer({"RequestId": "r", "ChannelId": 5})
    hostile.actions["ListAIAgentInstance"] = json_answer({"Instances": []})
    with pytest.raises(IceOutcomeUnknownError):
        IceHook().generate_ai_agent_call(AGENT)
    operator = IceGenerateAIAgentCallOperator(task_id="call", agent_id=AGENT, poll_interval=0.01)
    failure = expect_typed(lambda: operator.execute(context()), IceAgentCallError)  # type: ignore[arg-type]
    assert "correlation id" in str(failure)
    assert "probably not placed" in str(failure)
    assert [r for r in hostile.requests if r[1] == "GenerateAIAgentCall"] == [
        ("POST", "GenerateAIAgentCall")
    ] * 2


def _instances(*items: dict[str, Any]) -> Answer:
    return json_answer({"RequestId": "r", "Instances": list(items)})


def _instance(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "Status": status,
        "UserData": json.dumps({CORRELATION_KEY: CORRELATION}),
        "RuntimeConfig": {"ChannelId": CHANNEL, "AgentUserId": "a", "AuthToken": "t"},
        **extra,
    }


def sensor(**kwargs: Any) -> IceAIAgentInstanceSensor:
    return IceAIAgentInstanceSensor(
        task_id="wait",
        agent_id=AGENT,
        correlation_id=CORRELATION,
        created_after=datetime.now(timezone.utc) - timedelta(minutes=1),
        poke_interval=0.01,
        **kwargs,
    )


def test_unknown_status_keeps_waiting_with_one_warning(
    hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    hostile.actions["ListAIAgentInstance"] = _instances(_instance("Hibernating"))
    waiting = sensor()
    with caplog.at_level(logging.WARNING):
        assert waiting.poke(context()) is False  # type: ignore[arg-type]
        assert waiting.poke(context()) is False  # type: ignore[arg-type]
    warnings = [r for r in caplog.records if "Hibernating" in r.getMessage()]
    assert len(warnings) == 1
    hostile.actions["ListAIAgentInstance"] = _instances(_instance("Finished"))
    done = waiting.poke(context())  # type: ignore[arg-type]
    assert isinstance(done, PokeReturnValue)
    assert done.is_done
    assert done.xcom_value["status"] == "Finished"  # type: ignore[index]


def test_a_status_of_the_wrong_type_is_kept_as_an_unknown_status(hostile: HostileServer) -> None:
    """Documented fallback: Status keeps any value; a non-string one is an unknown, non-terminal status."""
    hostile.actions["DescribeAIAgentInstance"] = json_answer({"Instance": {"Status": {"nested": True}}})
    instance = IceHook().describe_ai_agent_instance("i-1")
    assert instance.status is not None
    assert not instance.status.is_known
    assert not instance.status.is_terminal


def test_empty_instances_forever_ends_with_not_found_naming_agent_and_window(hostile: HostileServer) -> None:
    hostile.actions["ListAIAgentInstance"] = _instances()
    waiting = sensor(not_found_timeout=0.3)
    assert waiting.poke(context()) is False  # type: ignore[arg-type]
    time.sleep(0.35)
    error = expect_typed(lambda: waiting.poke(context()), IceAgentInstanceNotFoundError)  # type: ignore[arg-type]
    message = str(error)
    assert AGENT in message
    assert CORRELATION in message
    assert "created between" in message
    assert "not_found_timeout" in message


# -- call-log downloads --------------------------------------------------------------------------


def _stream(total: int, declare: bool) -> Callable[[BaseHTTPRequestHandler], None]:
    """Write ``total`` bytes of a JSON-looking body in 64 KiB chunks, with or without Content-Length."""

    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        chunk = b" " * (64 * 1024)
        sent = 0
        try:
            handler.wfile.write(b'{"Turns": [')
            while sent < total:
                handler.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return
        handler.close_connection = True

    return write


def _short_body(handler: BaseHTTPRequestHandler) -> None:
    """Declares 4000 bytes, sends 100 and hangs up: a truncated transfer."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "4000")
    handler.end_headers()
    handler.wfile.write(b'{"SchemaVersion": "1", "Turns": [' + b" " * 66)
    handler.close_connection = True


GOOD_LOG = json.dumps({"SchemaVersion": "1", "InstanceId": "i-1", "ChannelId": CHANNEL, "Turns": []}).encode()

DOWNLOAD_CASES: dict[str, tuple[Answer, type[BaseException], str]] = {
    "50MB-streamed-without-length": (
        Answer(body=_stream(50 * MB, False)),
        IceCallLogInvalidError,
        "max_bytes",
    ),
    "50MB-declared": (Answer(body=_stream(50 * MB, True)), IceCallLogInvalidError, "max_bytes"),
    "truncated-json": (
        Answer(200, GOOD_LOG[: len(GOOD_LOG) // 2]),
        IceCallLogInvalidError,
        "not complete JSON",
    ),
    "connection-cut-mid-body": (Answer(body=_short_body), IceCallLogError, "download"),
    "invalid-utf8": (Answer(200, b'{"Turns": [{"Text": "\xff\xfe\xfa"}]}'), IceCallLogInvalidError, "UTF-8"),
    "html-page-200": (Answer(200, b"<html>Sign in to continue</html>"), IceCallLogInvalidError, "JSON"),
    "wrong-field-types": (
        Answer(200, b'{"Turns": "all of them", "DurationMs": "long"}'),
        IceCallLogInvalidError,
        "is invalid",
    ),
    "json-array": (Answer(200, b"[1, 2, 3]"), IceCallLogInvalidError, "invalid"),
    "403-forever": (
        Answer(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired.</Message></Error>"),
        IceCallLogError,
        "fresh URLs",
    ),
    "503-html-forever": (Answer(503, b"<html><h1>Service Unavailable</h1></html>"), IceCallLogError, "503"),
    "redirect-to-another-host": (
        Answer(302, b"", {"Location": "{elsewhere}/steal"}),
        IceCallLogInvalidError,
        "another host",
    ),
}


def _fetch_serving(
    hostile: HostileServer, answer: Answer, tmp_path: Path, **kwargs: Any
) -> IceFetchCallLogOperator:
    """A fetch of a Finished instance whose signed CallLogUrl the hostile server answers with ``answer``."""
    signed = (
        f"{hostile.url}/_calllogs/i-1.json?Expires=9999999999&OSSAccessKeyId=k&Signature=SIGNATURE-SECRET"
    )
    hostile.actions["ListAIAgentInstance"] = _instances(_instance("Finished", CallLogUrl=signed))
    hostile.paths["/_calllogs/i-1.json"] = answer
    return IceFetchCallLogOperator(
        task_id="fetch",
        agent_id=AGENT,
        correlation_id=CORRELATION,
        created_after=datetime.now(timezone.utc) - timedelta(minutes=1),
        destination=str(tmp_path) + "/",
        **kwargs,
    )


@pytest.mark.parametrize(
    ("answer", "error", "words"), list(DOWNLOAD_CASES.values()), ids=list(DOWNLOAD_CASES)
)
def test_hostile_call_log_ends_in_a_typed_error_and_no_file(
    hostile: HostileServer,
    elsewhere: HostileServer,
    tmp_path: Path,
    answer: Answer,
    error: type[BaseException],
    words: str,
) -> None:
    answer.headers = {k: v.replace("{elsewhere}", elsewhere.url) for k, v in answer.headers.items()}
    operator = _fetch_serving(
        hostile, answer, tmp_path, max_url_refreshes=1, download_retries=1, download_timeout=5
    )
    caught = expect_typed(lambda: operator.execute(context()), error)  # type: ignore[arg-type]
    assert words in str(caught), str(caught)
    assert "SIGNATURE-SECRET" not in str(caught)
    assert list(tmp_path.iterdir()) == [], "no file may be left, under its final name or a temporary one"
    assert elsewhere.requests == [], "a redirect to another host was followed"


def test_a_good_call_log_from_the_same_server_is_saved(hostile: HostileServer, tmp_path: Path) -> None:
    """The control case: the same set-up with a valid body does write the file."""
    result = _fetch_serving(hostile, Answer(200, GOOD_LOG), tmp_path).execute(context())  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir()] == [f"{CHANNEL}.json"]
    assert (tmp_path / f"{CHANNEL}.json").read_bytes() == GOOD_LOG
    assert result["bytes"] == len(GOOD_LOG)
