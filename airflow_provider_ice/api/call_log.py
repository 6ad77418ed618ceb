"""The call-log document behind an instance's ``CallLogUrl``: one schema for the parser and the emulator.

Alibaba Cloud documents only that the file "contains the CallLog struct in JSON format"; its fields
are not public. This module is the single place where this provider defines that structure. The
emulator serves exactly this shape, and the parser is tolerant: every field is optional, unknown
fields are kept (``model_extra``), and the raw bytes are never altered by parsing.

Shape (PascalCase, like every ICE payload)::

    {
      "SchemaVersion": "1",
      "InstanceId": "…", "AIAgentId": "…", "ChannelId": "…", "SessionId": "…",
      "AIAgentUserId": "…", "UserId": "…", "UserData": "…",
      "StartTime": "2026-01-01T10:00:00Z", "EndTime": "2026-01-01T10:01:05Z", "DurationMs": 65000,
      "UserJoined": true, "EndReason": "UserHangup",
      "Turns": [
        {"Role": "agent", "Text": "Hello!", "BeginMs": 0, "EndMs": 1800, "Interrupted": false},
        {"Role": "user", "Text": "Hi", "BeginMs": 2300, "EndMs": 3100, "Interrupted": false}
      ],
      "Metrics": {"FirstResponseLatencyMs": 640, "AverageResponseLatencyMs": 710,
                  "AsrLatencyMs": 180, "LlmLatencyMs": 350, "TtsLatencyMs": 170}
    }

``BeginMs``/``EndMs`` are offsets from ``StartTime``. A response latency is the gap between the end of
a user turn and the beginning of the next agent turn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import CallLogFormatError
from .models import wire_name

SCHEMA_VERSION = "1"
ROLE_AGENT = "agent"
ROLE_USER = "user"
END_REASONS = ("UserHangup", "AgentHangup", "UserOnlineTimeout", "MaxIdleTime", "Stopped")


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True, alias_generator=wire_name)


class CallLogTurn(_Tolerant):
    """One utterance in the conversation."""

    role: str = ""
    text: str = ""
    begin_ms: int | None = None
    end_ms: int | None = None
    interrupted: bool = False


class CallLogMetrics(_Tolerant):
    """Latency figures the service measured (all optional, in milliseconds)."""

    first_response_latency_ms: float | None = None
    average_response_latency_ms: float | None = None
    asr_latency_ms: float | None = None
    llm_latency_ms: float | None = None
    tts_latency_ms: float | None = None


class CallLog(_Tolerant):
    """A parsed call log. Missing fields are ``None``/empty; unknown ones stay in ``model_extra``."""

    # A declaration, one line per field of the document (see the module docstring): nothing to
    # share with the API's models but the form.
    schema_version: str | None = None
    instance_id: str | None = None
    agent_id: str | None = Field(default=None, alias="AIAgentId")
    channel_id: str | None = None
    session_id: str | None = None
    ai_agent_user_id: str | None = None
    user_id: str | None = None
    user_data: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_ms: int | None = None
    user_joined: bool | None = None
    end_reason: str | None = None
    turns: list[CallLogTurn] = Field(default_factory=list)
    metrics: CallLogMetrics = Field(default_factory=CallLogMetrics)

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON document as the service (and the emulator) serves it."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


def parse_call_log(raw: bytes) -> CallLog:
    """Parse call-log bytes, raising :class:`CallLogFormatError` with a short, secret-free reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CallLogFormatError(f"call log is not valid UTF-8 (byte {err.start} of {len(raw)})") from None
    try:
        return CallLog.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "document"
        kind = first.get("type", "invalid")
        if kind.startswith("json"):
            raise CallLogFormatError(
                f"call log is not complete JSON ({len(raw)} bytes): {first.get('msg')}"
            ) from None
        raise CallLogFormatError(f"call log field {where!r} is invalid: {first.get('msg')}") from None
