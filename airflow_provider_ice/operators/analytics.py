"""``IceSessionAnalyticsOperator``: per-session metrics and a summary for one data interval."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_ice import storage
from airflow_provider_ice._compat import cron_schedule
from airflow_provider_ice.api.decompress import DEFAULT_MAX_BYTES
from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.validation import (
    parse_time,
    validate_download_limits,
    validate_int_range,
    validate_page_size,
)
from airflow_provider_ice.exceptions import IceCallLogError, fail_without_retry
from airflow_provider_ice.hooks.ice import IceHookMixin

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_ice.analytics.collect import CollectStats

SESSIONS_FILE = "sessions.jsonl"
SUMMARY_FILE = "summary.json"
#: Downloads in flight at once, at the most.
MAX_CONCURRENCY = 256
_AGENT_SPLIT = re.compile(r"[\s,]+")


def partition_name(start: datetime, end: datetime) -> str:
    """``date=YYYY-MM-DD`` for one whole UTC day, else ``interval=<start>_<end>`` (compact UTC)."""
    if end - start == timedelta(days=1) and start.time() == datetime.min.time():
        return f"date={start:%Y-%m-%d}"
    return f"interval={start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}"


def _agent_list(agent_ids: Any) -> list[str]:
    if isinstance(agent_ids, str):
        text = agent_ids.strip()
        if text.startswith("["):  # a list rendered by Jinja: Python's repr, or JSON
            try:
                agent_ids = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise IceValidationError("agent_ids", f"not a list of agent ids: {text!r}") from None
        else:
            agent_ids = _AGENT_SPLIT.split(text)
    if isinstance(agent_ids, (list, tuple, set)) and all(isinstance(a, str) for a in agent_ids):
        return sorted({a.strip() for a in agent_ids if a.strip()})
    raise IceValidationError("agent_ids", f"must be an agent id or a list of them, got {agent_ids!r}")


def last_complete_interval(expression: str, timezone: str, run_after: datetime) -> tuple[datetime, datetime]:
    """Return the last whole interval of the cron ``expression`` (in ``timezone``) ending by ``run_after``."""
    import pendulum
    from croniter import croniter

    local = pendulum.instance(run_after).in_timezone(timezone)
    # croniter works on naive wall-clock times; one step back from just after run_after lands on
    # run_after itself when it is a fire time.
    cron = croniter(expression, local.naive().add(microseconds=1))
    end = cron.get_prev(datetime)
    start = cron.get_prev(datetime)
    as_utc = [pendulum.instance(moment, tz=timezone).in_timezone("UTC") for moment in (start, end)]
    return as_utc[0], as_utc[1]


def _inferred_interval(context: Context) -> tuple[datetime | None, datetime | None]:
    dag_run, dag = context.get("dag_run"), context.get("dag")
    cron = cron_schedule(getattr(dag, "timetable", None))
    run_after = getattr(dag_run, "run_after", None)
    if cron is None or run_after is None:
        return None, None
    return last_complete_interval(*cron, run_after)


class IceSessionAnalyticsOperator(IceHookMixin, BaseOperator):
    """Compute session analytics for one interval and write them as one replaceable partition.

    Lists every instance of ``agent_ids`` created in ``[start_time, end_time)`` (all pages, with the
    10,000-result window split), downloads the Finished instances' call logs with bounded
    concurrency, and writes the partition ``<destination>/date=YYYY-MM-DD/`` (or
    ``interval=<start>_<end>/`` for other intervals): a new version folder holding ``sessions.jsonl``
    (one line per session) and ``summary.json`` (counts by status, totals, p50/p90/p95 of duration
    and latency, the pending sessions), committed by writing ``_manifest.json`` last, in one step
    (read the manifest first: :func:`~airflow_provider_ice.storage.committed_files`). A
    rerun or a backfill replaces the partition atomically, locally and on object storage, and
    runs for different intervals never interfere. Instances not yet Finished (or Finished without a
    CallLogUrl yet) are listed as pending; a rerun picks them up. If some call logs cannot be
    downloaded (after retries and fresh URLs), nothing is published and the task fails, so a retry
    completes the partition; a call log that is not valid JSON is recorded as an error instead.

    :param agent_ids: one agent id, a comma-separated string, or a list. (templated)
    :param start_time: interval start (ISO-8601 or datetime); default ``data_interval_start`` or,
        in a run without a logical date of a cron-scheduled DAG, the start of the last complete
        interval before the run was triggered. (templated)
    :param end_time: interval end, exclusive; default ``data_interval_end``. (templated)
    :param destination: the dataset root: a local path, a ``file://``/``s3://``/... URI or an
        ``ObjectStoragePath``; default ``$ICE_DATA_DIR/sessions``, else
        ``$AIRFLOW_HOME/ice_data/sessions``. (templated)
    :param destination_conn_id: Airflow connection for an object-storage destination.
    :param ice_conn_id: the ICE connection. (templated)
    :param concurrency: call-log downloads in flight at once.
    :param max_bytes: size cap of one call log, in bytes.
    :param max_url_refreshes: rounds of fresh URLs for refused URLs and unparsable bodies.
    :param download_retries: retries of one download on 5xx, throttling and dropped connections.
    :param download_timeout: read timeout of a download, in seconds.
    :param page_size: ListAIAgentInstance page size (1-100; the client splits windows beyond
        100 pages).
    """

    template_fields: Sequence[str] = ("agent_ids", "start_time", "end_time", "destination", "ice_conn_id")
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        agent_ids: str | Sequence[str],
        start_time: Any = None,
        end_time: Any = None,
        destination: Any = None,
        destination_conn_id: str | None = None,
        ice_conn_id: str = "ice_default",
        concurrency: int = 8,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_url_refreshes: int = 2,
        download_retries: int = 3,
        download_timeout: float = 60.0,
        page_size: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate_page_size(page_size, "page_size")
        validate_int_range(concurrency, "concurrency", 1, MAX_CONCURRENCY)
        validate_download_limits(max_bytes, max_url_refreshes, download_retries, download_timeout)
        # Airflow's contract: every parameter is kept under its own name (templated ones are rendered
        # in place), so this list looks like every other operator's.
        self.agent_ids = agent_ids
        self.start_time = start_time
        self.end_time = end_time
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.ice_conn_id = ice_conn_id
        self.concurrency = concurrency
        self.max_bytes = max_bytes
        self.max_url_refreshes = max_url_refreshes
        self.download_retries = download_retries
        self.download_timeout = download_timeout
        self.page_size = page_size

    def interval(self, context: Context) -> tuple[datetime, datetime]:
        """``[start, end)`` in UTC, from the parameters or the run's data interval.

        A run without a logical date (``airflow dags trigger``) has no data interval; on a cron
        schedule it then covers the last complete interval before it was triggered, the interval a
        manual run with a logical date gets.
        """
        start = self.start_time if self.start_time not in (None, "") else context.get("data_interval_start")
        end = self.end_time if self.end_time not in (None, "") else context.get("data_interval_end")
        if start is None and end is None:
            start, end = _inferred_interval(context)
        if start is None or end is None:
            raise IceValidationError(
                "start_time",
                "no interval: give start_time and end_time, or run in a DAG run with a data interval "
                "(or in a DAG with a cron schedule)",
            )
        start_utc, end_utc = _as_utc("start_time", start), _as_utc("end_time", end)
        if not start_utc < end_utc:
            raise IceValidationError("end_time", f"must be after start_time ({start_utc} >= {end_utc})")
        return start_utc, end_utc

    def partition(self, start: datetime, end: datetime) -> storage.Target:
        root = self.destination if self.destination not in (None, "") else storage.data_dir() / "sessions"
        return storage.resolve(root, self.destination_conn_id) / partition_name(start, end)

    @fail_without_retry
    def execute(self, context: Context) -> dict[str, Any]:
        start, end = self.interval(context)
        agent_ids = _agent_list(self.agent_ids)
        if not agent_ids:
            raise IceValidationError("agent_ids", "at least one agent id is required")
        final = self.partition(start, end)
        # Resolved here, synchronously, so the event loop below never does a sync connection lookup.
        download_settings = self.hook.download_options()
        self.log.info("Session analytics for %s over [%s, %s) into %s", agent_ids, start, end, final)
        with storage.staged_partition(final) as staging:
            summary, stats = asyncio.run(self._collect(staging, agent_ids, start, end, download_settings))
            if stats.download_failures:
                raise IceCallLogError(
                    f"{len(stats.download_failures)} call log(s) of [{start}, {end}) could not be downloaded "
                    f"(first: {stats.download_failures[0]['error']}); the partition was not replaced"
                )
            with (staging / SUMMARY_FILE).open("w", encoding="utf-8") as handle:
                json.dump(summary, handle, indent=2, sort_keys=True)
            uri, version = storage.commit_partition(staging, final)
        by_status = summary["by_status"]
        self.log.info(
            "Wrote %d session(s) (%s), %d pending, %d call-log error(s), %d duplicate(s) dropped to %s",
            summary["sessions"],
            by_status,
            summary["pending_count"],
            summary["call_log_error_count"],
            stats.duplicates,
            uri,
        )
        return {
            "uri": uri,
            "partition": partition_name(start, end),
            "version": version,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "agent_ids": agent_ids,
            "sessions": summary["sessions"],
            "by_status": by_status,
            "pending": summary["pending_count"],
            "call_log_errors": summary["call_log_error_count"],
            "downloaded_bytes": stats.downloaded_bytes,
            "duplicates_dropped": stats.duplicates,
        }

    async def _collect(
        self,
        staging: Path,
        agent_ids: list[str],
        start: datetime,
        end: datetime,
        download_settings: dict[str, Any],
    ) -> tuple[dict[str, Any], CollectStats]:
        from airflow_provider_ice.analytics.collect import collect_to_jsonl
        from airflow_provider_ice.api.download import AsyncCallLogDownloader

        # The hook's client does not register listed CallLogUrls with the secrets masker (that costs
        # quadratic time over thousands of URLs); they stay SecretStr and are never logged here,
        # and httpx's own request log lines are scrubbed by the downloader.
        client = await self.hook.aget_async_client()
        downloader = AsyncCallLogDownloader(
            **download_settings,
            max_bytes=self.max_bytes,
            max_retries=self.download_retries,
            timeout=self.download_timeout,
        )
        try:
            with (staging / SESSIONS_FILE).open("w", encoding="utf-8") as sessions:
                summary, stats = await collect_to_jsonl(
                    client,
                    downloader,
                    sessions,
                    agent_ids=agent_ids,
                    start=start,
                    end=end,
                    concurrency=self.concurrency,
                    max_url_refreshes=self.max_url_refreshes,
                    page_size=self.page_size,
                )
        finally:
            await downloader.aclose()
            await self.hook.aclose()
        result = summary.to_dict()
        result["listing"] = {"listed": stats.listed, "duplicates_dropped": stats.duplicates}
        return result, stats


def _as_utc(name: str, value: Any) -> datetime:
    # parse_time refuses naive values (as the client and the sensor do): "UTC or local?" is ambiguous.
    return parse_time(value if isinstance(value, datetime) else str(value).strip(), name)


__all__ = ["IceSessionAnalyticsOperator", "partition_name"]
