"""Hostile call-log downloads: a 50 MB, truncated or non-UTF-8 body, redirects to another host.

Every case must end in a typed, readable error and never leave a file under its final name (nor a
temporary one); see :mod:`tests.integration.test_hostile_responses` for the API answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.exceptions import (
    IceCallLogError,
    IceCallLogInvalidError,
)
from airflow_provider_ice.operators.call_log import IceFetchCallLogOperator
from tests.integration.hostile import (
    AGENT,
    CHANNEL,
    CORRELATION,
    MB,
    Answer,
    HostileServer,
    context,
    expect_typed,
    instance_entry,
    listed,
)

pytestmark = pytest.mark.integration


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
    hostile.actions["ListAIAgentInstance"] = listed(instance_entry("Finished", CallLogUrl=signed))
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
