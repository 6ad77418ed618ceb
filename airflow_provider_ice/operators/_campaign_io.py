"""The campaign operator's I/O: checkpoint storage, recipients files, the listing and the call logs.

The decisions live in :mod:`airflow_provider_ice.campaign`; this module only moves their inputs and
outputs between the task and the outside world.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api.correlation import correlation_id_of
from airflow_provider_ice.campaign.ledger import Attempt, Ledger
from airflow_provider_ice.campaign.recipients import detect_format, parse_lines

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ice.api.call_log import CallLog
    from airflow_provider_ice.api.client import IceClient
    from airflow_provider_ice.api.download import CallLogDownloader
    from airflow_provider_ice.api.models import AIAgentInstance
    from airflow_provider_ice.hooks.ice import IceHook


log = logging.getLogger(__name__)

#: Task state store / XCom key of the ledger's header; chunk ``i`` is under ``<key>:<i>``.
CHECKPOINT_KEY = "ice_campaign"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
#: ListAIAgentInstance page size (the service's maximum).
PAGE_SIZE = 100


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
        self._write(ledger, sorted(ledger.dirty), extra)

    def save_chunks(self, ledger: Ledger, chunks: list[int], **extra: Any) -> None:
        """Write ``chunks`` (a batch about to be sent, or one just answered), then the header.

        Other changed chunks wait for the next :meth:`save`: what they record (statuses, outcomes)
        the listing tells again on a resume; the write-ahead record is what must never be missing.
        """
        self._write(ledger, chunks, extra)

    def _write(self, ledger: Ledger, chunks: list[int], extra: dict[str, Any]) -> None:
        for chunk in chunks:
            self._set(f"{CHECKPOINT_KEY}:{chunk}", ledger.chunk_payload(chunk))
            ledger.dirty.discard(chunk)
        self._set(CHECKPOINT_KEY, {**ledger.header(), **extra})


def write_results(final: Any, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Publish the result rows and the summary as one partition version at ``final``.

    Sets ``summary["uri"]`` and ``summary["version"]``.
    """
    import json

    from airflow_provider_ice import storage

    with storage.staged_partition(final) as staging:
        with (staging / RESULTS_FILE).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, sort_keys=True) + "\n")
        with (staging / SUMMARY_FILE).open("w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
        summary["uri"], summary["version"] = storage.commit_partition(staging, final)


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
    client: IceClient,
    agent_id: str,
    expected: Mapping[str, Any],
    *,
    start: float,
    wanted: Collection[str] | None = None,
    is_older: Callable[[str], bool] | None = None,
) -> dict[str, AIAgentInstance]:
    """Return the listed instances of this campaign (by correlation id) created after ``start``.

    ``expected`` maps every correlation id the campaign may have used; the newest listing entry wins.
    The listing is newest first: with ``wanted``, paging stops once all of them are found, or at the
    end of a page holding an instance of ours for which ``is_older(cid)`` is true (sent before every
    wanted one: whatever of them exists is listed before it). Only our entries are parsed.
    """
    from datetime import datetime, timezone

    from airflow_provider_ice.api import params as ops
    from airflow_provider_ice.api.models import AIAgentInstance
    from airflow_provider_ice.api.validation import MAX_PAGE_NUMBER
    from airflow_provider_ice.api.waiting import WINDOW_MARGIN

    begin = datetime.fromtimestamp(start, timezone.utc) - WINDOW_MARGIN
    end = datetime.now(timezone.utc) + WINDOW_MARGIN
    window = ops.list_window(agent_id, begin, end, PAGE_SIZE)
    missing = set(wanted) if wanted is not None else None
    found: dict[str, AIAgentInstance] = {}
    for number in range(1, MAX_PAGE_NUMBER + 1):
        params = ops.list_params(agent_id, *window, PAGE_SIZE, number)
        items = ops.listed_instances(client.call_api(ops.LIST_INSTANCES, params))
        passed = False
        for item in items:
            user_data = item.get("UserData")
            cid = correlation_id_of(user_data) if isinstance(user_data, str) else None
            if cid is None or cid not in expected or cid in found:
                continue
            found[cid] = AIAgentInstance.model_validate(item)
            if missing is not None:
                missing.discard(cid)
                passed = passed or (is_older is not None and is_older(cid))
        if len(items) < PAGE_SIZE or (missing is not None and (not missing or passed)):
            return found
    # Page 100 was full: more instances than one listing reaches; the client splits the window.
    found = {}
    for instance in client.list_ai_agent_instances(agent_id, start_time=begin, end_time=end):
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
    """Whether the person joined a Finished call, and when they answered; optionally keep its call log.

    A phone call whose InstanceId is known: ``CallInfo`` of DescribeAIAgentInstance (the listing has
    none; ``CallStartTime`` is set once the callee answered). Otherwise (app calls, adopted calls):
    ``UserJoined`` of the call log. None when it cannot be told.

    With ``call_logs`` (a folder), every Finished call's log is downloaded once, validated and
    published there as ``<correlation id>.json`` (atomically, the bytes as served, like
    ``IceFetchCallLogOperator``); its URI goes to ``attempt.call_log_uri``. The signed URL is not
    registered with the secrets masker (one regular expression over thousands of them would be
    rebuilt for every call): it is never logged, and errors name only the host.
    """

    def __init__(
        self, client: IceClient, kind: str, downloader_settings: dict[str, Any], call_logs: Any = None
    ) -> None:
        self.client = client
        self.kind = kind
        self.settings = downloader_settings
        self.call_logs = call_logs
        self._downloader: CallLogDownloader | None = None

    def __call__(self, attempt: Attempt, instance: AIAgentInstance) -> tuple[bool | None, str | None]:
        joined: bool | None = None
        answered: str | None = None
        if self.kind == "phone" and attempt.instance_id:
            try:
                info = self.client.describe_ai_agent_instance(attempt.instance_id).call_info
            except Exception as error:
                log.warning("DescribeAIAgentInstance of %s failed (%s)", attempt.instance_id, error)
                info = None
            if info is not None:
                joined, answered = info.call_start_time is not None, info.call_start_time
        if (joined is None or self.call_logs is not None) and instance.call_log_url is not None:
            from airflow_provider_ice.analytics.metrics import user_joined

            try:
                call_log = self._fetch(attempt, instance.call_log_url.get_secret_value())
            except Exception as error:  # one unreadable log must not stop the campaign
                log.warning("Call log of %s unreadable (%s)", attempt.correlation_id, error)
            else:
                joined = user_joined(call_log) if joined is None else joined
        return joined, answered

    def _fetch(self, attempt: Attempt, url: str) -> CallLog:
        """Download (and with ``call_logs``, publish) the call log; return it parsed."""
        from airflow_provider_ice import storage
        from airflow_provider_ice.api.call_log import parse_call_log
        from airflow_provider_ice.api.download import CallLogDownloader

        if self._downloader is None:
            self._downloader = CallLogDownloader(**self.settings)
        if self.call_logs is None:
            sink = io.BytesIO()
            self._downloader.download(url, sink)
            return parse_call_log(sink.getvalue())
        final = self.call_logs / f"{attempt.correlation_id}.json"
        with storage.spool_for(final) as spool:
            self._downloader.download(url, spool)
            spool.seek(0)
            call_log = parse_call_log(spool.read())  # published only when valid
            attempt.call_log_uri = storage.publish_file(spool, final)
        return call_log

    def close(self) -> None:
        if self._downloader is not None:
            self._downloader.close()
            self._downloader = None
