"""The campaign operator's I/O: checkpoint storage, recipients files, the listing and the call logs.

The decisions live in :mod:`airflow_provider_ice.campaign`; this module only moves their inputs and
outputs between the task and the outside world.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.campaign.ledger import Attempt, Ledger
from airflow_provider_ice.campaign.recipients import detect_format, parse_lines

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ice.api.client import IceClient
    from airflow_provider_ice.api.download import CallLogDownloader
    from airflow_provider_ice.api.models import AIAgentInstance
    from airflow_provider_ice.hooks.ice import IceHook

log = logging.getLogger(__name__)

#: Task state store / XCom key of the ledger's header; chunk ``i`` is under ``<key>:<i>``.
CHECKPOINT_KEY = "ice_campaign"


class Checkpoint:
    """Where the ledger survives: the task state store (across retries), else XCom (across deferrals).

    Unlike :mod:`airflow_provider_ice.task_state` (best effort), a failed write raises: a write-ahead
    record that did not land must stop the calls it announces.

    On Airflow versions without a task state store the XCom copy lasts only for one try; a retry then
    rebuilds the ledger from the listing (see the operator's docstring for what that weakens).
    """

    def __init__(self, context: Context) -> None:
        self.store = context.get("task_state_store")
        self.ti = context["ti"]

    @property
    def durable(self) -> bool:
        """True when the checkpoint outlives a failed try (a task state store exists)."""
        return self.store is not None

    def _get(self, key: str) -> Any:
        if self.store is not None:
            return self.store.get(key)
        return self.ti.xcom_pull(task_ids=self.ti.task_id, key=key, map_indexes=self.ti.map_index)

    def _set(self, key: str, value: Any) -> None:
        if self.store is not None:
            self.store.set(key, value)
        else:
            self.ti.xcom_push(key=key, value=value)

    def load(self, campaign_id: str) -> tuple[Ledger | None, dict[str, Any]]:
        """Return the ledger of ``campaign_id`` and the header's extra fields, or ``(None, {})``."""
        header = self._get(CHECKPOINT_KEY)
        if not isinstance(header, Mapping) or header.get("campaign_id") != campaign_id:
            return None, {}
        ledger = Ledger.restore(header, lambda i: self._get(f"{CHECKPOINT_KEY}:{i}"))
        return ledger, {k: v for k, v in header.items() if k not in ledger.header()}

    def save(self, ledger: Ledger, **extra: Any) -> None:
        """Write the changed chunks, then the header (a chunk is never referenced before it exists)."""
        for chunk in sorted(ledger.dirty):
            self._set(f"{CHECKPOINT_KEY}:{chunk}", ledger.chunk_payload(chunk))
        ledger.dirty.clear()
        self._set(CHECKPOINT_KEY, {**ledger.header(), **extra})


def read_recipients(source: Any, fmt: str | None, conn_id: str | None) -> Iterable[Any]:
    """Return the raw recipients of ``source``: a list as given, or the rows of a JSONL/CSV file."""
    if isinstance(source, (list, tuple)):
        return source
    from airflow_provider_ice import storage

    path = storage.resolve(source, conn_id)
    kind = detect_format(str(path), fmt)
    with path.open("rb") as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
        # Read whole: a few MB for tens of thousands of recipients, and each resume re-reads it.
        return list(parse_lines(text, kind))


def list_campaign_instances(
    client: IceClient, agent_id: str, ledger: Ledger, expected: Mapping[str, Any]
) -> dict[str, AIAgentInstance]:
    """Return the listed instances of this campaign (by correlation id), over the campaign's window.

    ``expected`` maps every correlation id the campaign may have used; the newest listing entry wins.
    """
    from datetime import datetime, timezone

    from airflow_provider_ice.api.waiting import WINDOW_MARGIN

    start = datetime.fromtimestamp(ledger.started_at, timezone.utc) - WINDOW_MARGIN
    end = datetime.now(timezone.utc) + WINDOW_MARGIN
    found: dict[str, AIAgentInstance] = {}
    for instance in client.list_ai_agent_instances(agent_id, start_time=start, end_time=end):
        cid = correlation_id_of(instance.user_data)
        if cid is not None and cid in expected and cid not in found:
            found[cid] = instance
    return found


def campaign_client(hook: IceHook) -> IceClient:
    """Return a sync client for the campaign that masks the connection's credentials only.

    The hook's client registers every Token and AuthToken it receives with Airflow's secrets masker,
    which rebuilds one regular expression over all of them each time: quadratic over a campaign of
    thousands of calls (most of a 300-call campaign's CPU). The campaign never logs a response, and
    Tokens stay ``SecretStr`` inside the response models and are dropped right after the call.
    """
    from airflow.providers.common.compat.sdk import mask_secret

    from airflow_provider_ice.api.client import IceClient

    settings = hook.settings
    credentials = {settings.credentials.access_key_secret, settings.credentials.security_token} - {None}

    def mask_credentials(value: str) -> None:
        if value in credentials:
            mask_secret(value)

    return IceClient(settings.credentials, on_secret=mask_credentials, **settings.client_kwargs())


class JoinedProbe:
    """Whether the person joined a Finished call, and when they answered.

    A phone call whose InstanceId is known: ``CallInfo`` of DescribeAIAgentInstance (the listing has
    none; ``CallStartTime`` is set once the callee answered). Otherwise (app calls, adopted calls):
    ``UserJoined`` of the call log. None when it cannot be told.
    """

    def __init__(self, client: IceClient, kind: str, downloader_settings: dict[str, Any]) -> None:
        self.client = client
        self.kind = kind
        self.settings = downloader_settings
        self._downloader: CallLogDownloader | None = None

    def __call__(self, attempt: Attempt, instance: AIAgentInstance) -> tuple[bool | None, str | None]:
        if self.kind == "phone" and attempt.instance_id:
            try:
                info = self.client.describe_ai_agent_instance(attempt.instance_id).call_info
            except Exception as error:
                log.warning("DescribeAIAgentInstance of %s failed (%s)", attempt.instance_id, error)
                info = None
            if info is not None:
                return info.call_start_time is not None, info.call_start_time
        if instance.call_log_url is None:
            return None, None
        from airflow_provider_ice.analytics.metrics import user_joined
        from airflow_provider_ice.api.call_log import parse_call_log
        from airflow_provider_ice.api.download import CallLogDownloader

        if self._downloader is None:
            self._downloader = CallLogDownloader(**self.settings)
        sink = io.BytesIO()
        try:
            self._downloader.download(instance.call_log_url, sink)
            return user_joined(parse_call_log(sink.getvalue())), None
        except Exception as error:  # one unreadable log must not stop the campaign
            log.warning("Call log of %s unreadable (%s): joined unknown", attempt.correlation_id, error)
            return None, None

    def close(self) -> None:
        if self._downloader is not None:
            self._downloader.close()
            self._downloader = None
