r"""Call logs: OSS-style signed, expiring URLs on the emulator itself, and a deterministic document.

A Finished instance's ``CallLogUrl`` looks like an OSS signed URL::

    http://127.0.0.1:PORT/_calllogs/<InstanceId>.json?Expires=<epoch>&OSSAccessKeyId=...&Signature=...

``Signature`` is OSS V1 style (base64 HMAC-SHA1 of ``GET\\n\\n\\n<Expires>\\n/<bucket>/<key>``). A URL
past ``Expires`` or with a changed part is answered 403 with OSS's XML error. The document follows
:mod:`airflow_provider_ice.api.call_log` and is rebuilt on every download from the instance id and
the global seed, so it is identical each time and costs no memory while nobody downloads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from datetime import datetime, timezone
from itertools import pairwise
from urllib.parse import quote
from xml.sax.saxutils import escape

from airflow_provider_ice.api.call_log import (
    ROLE_AGENT,
    ROLE_USER,
    SCHEMA_VERSION,
    CallLog,
    CallLogMetrics,
    CallLogTurn,
)
from airflow_provider_ice.emulator.identity import wire_names
from airflow_provider_ice.emulator.secrets import SecretLedger
from airflow_provider_ice.emulator.store import Instance

CALLLOG_PREFIX = "/_calllogs/"
BUCKET = "ice-emulator-calllogs"
OSS_ACCESS_KEY_ID = "LTAIEmulatorCallLogs"

_GREETINGS = ("Hello, this is your assistant. How can I help you today?", "Hi! Thanks for joining.")
_USER_LINES = (
    "I'd like to check the status of my order.",
    "Can you tell me when the delivery arrives?",
    "Yes, that works for me.",
    "Could you repeat that, please?",
    "I want to change my appointment to Friday.",
    "No, that's all, thank you.",
    "What are your opening hours?",
)
_AGENT_LINES = (
    "Sure, let me look that up for you.",
    "Your order was shipped yesterday and should arrive on Thursday.",
    "I have moved your appointment to Friday at ten.",
    "Of course. We are open from nine to six on weekdays.",
    "Is there anything else I can help you with?",
    "Thank you for calling. Goodbye!",
)


class CallLogSigner:
    """Signs and checks call-log URLs with the emulator's secret.

    :param secret: HMAC key (the emulator's AccessKey secret; never appears in a URL).
    :param ledger: notes every URL and signature handed out, when secret recording is on.
    """

    def __init__(self, secret: str, ledger: SecretLedger | None = None) -> None:
        self._key = secret.encode("utf-8")
        self._ledger = ledger or SecretLedger(enabled=False)

    def signature(self, instance_id: str, expires: int) -> str:
        to_sign = f"GET\n\n\n{expires}\n/{BUCKET}/{instance_id}.json"
        digest = hmac.new(self._key, to_sign.encode("utf-8"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode("ascii")

    def url(self, base_url: str, instance_id: str, expires: int) -> str:
        raw = self.signature(instance_id, expires)
        signature = quote(raw, safe="")
        url = (
            f"{base_url}{CALLLOG_PREFIX}{instance_id}.json"
            f"?Expires={expires}&OSSAccessKeyId={OSS_ACCESS_KEY_ID}&Signature={signature}"
        )
        if self._ledger.enabled:
            self._ledger.record(url, "CallLogUrl")
            self._ledger.record(raw, "CallLogUrl signature")
            self._ledger.record(signature, "CallLogUrl signature (encoded)")
        return url

    def valid_signature(self, instance_id: str, expires: int, signature: str) -> bool:
        return hmac.compare_digest(self.signature(instance_id, expires), signature)


def oss_error_xml(code: str, message: str, request_id: str, **extra: str) -> bytes:
    """OSS's XML error document (``<Error><Code>…</Code><Message>…</Message>…</Error>``)."""
    fields = {"Code": code, "Message": message, "RequestId": request_id, "HostId": f"{BUCKET}.emulator"}
    fields.update(extra)
    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}</Error>'.encode()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _turns(
    rng: random.Random, greeting: str, talk_from_ms: int, end_ms: int, idle: bool
) -> list[CallLogTurn]:
    """Alternating agent/user turns between the user's arrival and the end of the call."""
    turns: list[CallLogTurn] = []
    begin = talk_from_ms + rng.randint(200, 600)
    length = 55 * len(greeting)
    if begin >= end_ms:
        return turns
    turns.append(
        CallLogTurn(Role=ROLE_AGENT, Text=greeting, BeginMs=begin, EndMs=min(begin + length, end_ms))
    )
    cursor = turns[-1].end_ms or begin
    while not idle:
        user_begin = cursor + rng.randint(300, 1500)
        user_end = user_begin + rng.randint(800, 3500)
        if user_end > end_ms:
            break
        turns.append(
            CallLogTurn(Role=ROLE_USER, Text=rng.choice(_USER_LINES), BeginMs=user_begin, EndMs=user_end)
        )
        agent_begin = user_end + rng.randint(450, 1200)
        if agent_begin >= end_ms:
            break
        agent_end = agent_begin + rng.randint(1200, 4500)
        # The user barges in now and then; the end of the call cuts the last answer short.
        interrupted = rng.random() < 0.1 or agent_end > end_ms
        agent_end = min(agent_end, end_ms)
        turns.append(
            CallLogTurn(
                Role=ROLE_AGENT,
                Text=rng.choice(_AGENT_LINES),
                BeginMs=agent_begin,
                EndMs=agent_end,
                Interrupted=interrupted,
            )
        )
        cursor = agent_end
    return turns


def _metrics(rng: random.Random, turns: list[CallLogTurn]) -> CallLogMetrics:
    latencies = [
        float((after.begin_ms or 0) - (before.end_ms or 0))
        for before, after in pairwise(turns)
        if before.role == ROLE_USER and after.role == ROLE_AGENT
    ]
    if not latencies:
        return CallLogMetrics()
    average = sum(latencies) / len(latencies)
    asr_share, tts_share = rng.uniform(0.2, 0.3), rng.uniform(0.2, 0.3)
    return CallLogMetrics(
        FirstResponseLatencyMs=latencies[0],
        AverageResponseLatencyMs=round(average, 1),
        AsrLatencyMs=round(average * asr_share, 1),
        LlmLatencyMs=round(average * (1 - asr_share - tts_share), 1),
        TtsLatencyMs=round(average * tts_share, 1),
    )


def build_call_log(seed: int | None, instance: Instance) -> CallLog:
    """Return the call log of a Finished instance, identical for the same seed and instance id."""
    rng = random.Random(f"{seed}:{instance.instance_id}:calllog")
    end_ms = _ms(instance.finished_at - instance.created_at)
    joined = instance.user_joined()
    turns: list[CallLogTurn] = []
    if joined and instance.join_at is not None:
        greeting = (instance.agent_config or {}).get("Greeting")
        greeting = greeting if isinstance(greeting, str) and greeting else rng.choice(_GREETINGS)
        idle = instance.end_reason == "MaxIdleTime"
        turns = _turns(rng, greeting, _ms(instance.join_at - instance.created_at), end_ms, idle)
    return CallLog(
        SchemaVersion=SCHEMA_VERSION,
        **wire_names(seed, instance),
        StartTime=datetime.fromtimestamp(instance.created_at, tz=timezone.utc),
        EndTime=datetime.fromtimestamp(instance.finished_at, tz=timezone.utc),
        DurationMs=end_ms,
        UserJoined=joined,
        EndReason=instance.final_reason(),
        Turns=turns,
        Metrics=_metrics(rng, turns),
    )
