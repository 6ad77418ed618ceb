"""``IceFetchCallLogOperator``: download one agent instance's call log to a file, atomically."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator

from airflow_provider_ice import storage
from airflow_provider_ice._compat import make_asset
from airflow_provider_ice.api.decompress import DEFAULT_MAX_BYTES
from airflow_provider_ice.api.errors import (
    CallLogDownloadError,
    CallLogFormatError,
    IceValidationError,
    call_log_failure,
)
from airflow_provider_ice.api.validation import parse_time, positive_seconds, validate_download_limits
from airflow_provider_ice.api.waiting import InstanceTarget, Outcome, poll_instance, window_after
from airflow_provider_ice.exceptions import (
    IceCallLogError,
    IceCallLogInvalidError,
    IceCallLogNotReadyError,
    fail_without_retry,
)
from airflow_provider_ice.hooks.ice import IceHookMixin

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    # The call-log schema, the downloader and the pydantic models cost DAG-parse time: they are
    # imported where used.
    from airflow_provider_ice.api.call_log import CallLog
    from airflow_provider_ice.api.download import CallLogDownloader, DownloadResult
    from airflow_provider_ice.api.models import AIAgentInstance


log = logging.getLogger(__name__)

#: The asset a fetch emits when the user names none.
CALL_LOG_ASSET_PREFIX = "ice://call-logs/"
_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")
#: The warning logged before another attempt, by :func:`~.api.errors.call_log_failure`.
_RETRY_NOTES = {
    "damaged": "Downloaded call log does not decode or is invalid (%s); downloading again",
    "expired": "CallLogUrl refused (%s); fetching a fresh one",
}


def default_asset(agent_id: str | None) -> Asset:
    """``ice://call-logs/<agent_id>`` (or ``.../all`` when the agent id is only known at run time)."""
    fixed = agent_id if agent_id and "{{" not in agent_id else "all"
    return make_asset(f"ice_call_logs_{fixed}", f"{CALL_LOG_ASSET_PREFIX}{fixed}")


class IceFetchCallLogOperator(IceHookMixin, BaseOperator):
    """Fetch a fresh CallLogUrl for one agent instance and stream the call log to ``destination``.

    The URL is looked up at fetch time (ListAIAgentInstance by correlation id / ChannelId, or
    DescribeAIAgentInstance when only the InstanceId is known), because a URL from an earlier task
    may have expired. The file is written under a temporary name, validated as a call log, then
    renamed into place: no partial file is ever visible under the final name, and a rerun replaces
    it. The raw bytes are kept exactly as served. The URL is masked in logs and never returned.

    :param call: the output of ``IceGenerateAIAgentCallOperator`` or ``IceAIAgentInstanceSensor``
        (a dict with ``agent_id`` and ``instance_id``/``channel_id``/``correlation_id``, and
        ``created_at``). (templated)
    :param agent_id: AIAgentId, when ``call`` is not given. (templated)
    :param channel_id: ChannelId of the instance. (templated)
    :param correlation_id: the provider's correlation id carried in UserData. (templated)
    :param instance_id: InstanceId (used when neither channel nor correlation id is known). (templated)
    :param created_after: only instances created after this (ISO-8601 or datetime) are searched;
        defaults to ``call["created_at"]`` minus 5 minutes, else one day ago. (templated)
    :param destination: the file to write: a local path, a ``file://``/``s3://``/... URI or an
        ``ObjectStoragePath``. A value ending in ``/`` or naming an existing directory gets
        ``<ChannelId>.json`` appended. Defaults to
        ``$ICE_DATA_DIR/call_logs/<agent_id>/`` (``$AIRFLOW_HOME/ice_data`` without ICE_DATA_DIR). (templated)
    :param destination_conn_id: Airflow connection for an object-storage destination.
    :param ice_conn_id: the ICE connection. (templated)
    :param max_bytes: size cap of the call log, in bytes (default 20 MiB).
    :param max_url_refreshes: how many times a refused (expired) URL, or a malformed/truncated body,
        leads to a fresh URL and a new download before failing.
    :param empty_url_timeout: seconds to wait, with backoff, for a Finished instance's CallLogUrl to
        appear.
    :param empty_url_poll_interval: first wait between lookups while the URL is empty (doubles, max 60 s).
    :param download_retries: retries of one download on 5xx, throttling and dropped connections.
    :param download_timeout: read timeout of the download, in seconds.
    :param outlets: assets to emit an event for; defaults to ``ice://call-logs/<agent_id>``.
    """

    template_fields: Sequence[str] = (
        "call",
        "agent_id",
        "channel_id",
        "correlation_id",
        "instance_id",
        "created_after",
        "destination",
        "ice_conn_id",
    )
    template_fields_renderers = {"call": "json"}
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        call: dict[str, Any] | str | None = None,
        agent_id: str | None = None,
        channel_id: str | None = None,
        correlation_id: str | None = None,
        instance_id: str | None = None,
        created_after: Any = None,
        destination: Any = None,
        destination_conn_id: str | None = None,
        ice_conn_id: str = "ice_default",
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_url_refreshes: int = 3,
        empty_url_timeout: float = 300.0,
        empty_url_poll_interval: float = 5.0,
        download_retries: int = 3,
        download_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            kwargs["outlets"] = [default_asset(agent_id)]
        super().__init__(**kwargs)
        validate_download_limits(max_bytes, max_url_refreshes, download_retries, download_timeout)
        # Airflow's contract: every parameter is kept under its own name (templated ones are rendered
        # in place), so this list looks like every other operator's.
        self.call = call
        self.agent_id = agent_id
        self.channel_id = channel_id
        self.correlation_id = correlation_id
        self.instance_id = instance_id
        self.created_after = created_after
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.ice_conn_id = ice_conn_id
        self.max_bytes = max_bytes
        self.max_url_refreshes = max_url_refreshes
        self.empty_url_timeout = positive_seconds(empty_url_timeout, "empty_url_timeout", allow_zero=True)
        self.empty_url_poll_interval = positive_seconds(empty_url_poll_interval, "empty_url_poll_interval")
        self.download_retries = download_retries
        self.download_timeout = download_timeout

    def target(self) -> InstanceTarget:
        """Return the instance to fetch, from ``call`` or the explicit identifiers (explicit ones win)."""
        call = self.call or {}
        if isinstance(call, str):
            import json

            try:
                call = json.loads(call)
            except ValueError:
                raise IceValidationError(
                    "call", "must be the dict returned by the generate operator or the sensor"
                ) from None
        if not isinstance(call, dict):
            raise IceValidationError(
                "call", f"must be a dict (operator or sensor output), got {type(call).__name__}"
            )
        created = None
        if self.created_after not in (None, ""):
            # Refuses naive values, as the sensor and the client do: "UTC or local?" is ambiguous.
            created = parse_time(self.created_after, "created_after")
        try:
            if created is None and call.get("created_at"):
                created = window_after(call["created_at"], "created_after")
        except (TypeError, ValueError):
            raise IceValidationError(
                "created_after", "must be an ISO-8601 time or a datetime (also call['created_at'])"
            ) from None
        extra = {"window_start": created} if created is not None else {}
        return InstanceTarget(
            agent_id=self.agent_id or call.get("agent_id") or "",
            correlation_id=self.correlation_id or call.get("correlation_id"),
            channel_id=self.channel_id or call.get("channel_id"),
            instance_id=self.instance_id or call.get("instance_id"),
            **extra,
        )

    def final_path(self, target: InstanceTarget, channel_id: str | None = None) -> storage.Target:
        """Where the call log goes (see ``destination``); ``channel_id`` is the found instance's."""
        key = channel_id or target.channel_id or target.instance_id or target.correlation_id or "call"
        file_name = _SAFE.sub("_", key) + ".json"
        if self.destination in (None, ""):
            base = storage.data_dir() / "call_logs" / _SAFE.sub("_", target.agent_id)
            return base / file_name
        text = self.destination if not isinstance(self.destination, str) else self.destination.strip()
        resolved = storage.resolve(text, self.destination_conn_id)
        if (isinstance(text, str) and text.endswith("/")) or resolved.is_dir():
            return resolved / file_name
        return resolved

    @fail_without_retry
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_ice.api.download import CallLogDownloader

        target = self.target()
        with CallLogDownloader(
            **self.hook.download_options(),
            max_bytes=self.max_bytes,
            max_retries=self.download_retries,
            timeout=self.download_timeout,
        ) as downloader:
            instance, result, call_log, uri = self._fetch(downloader, target)
        output = {
            "uri": uri,
            "bytes": result.bytes,
            "sha256": result.sha256,
            "agent_id": target.agent_id,
            "instance_id": target.instance_id or instance.instance_id or call_log.instance_id,
            "channel_id": instance.channel_id or call_log.channel_id or target.channel_id,
            "correlation_id": target.correlation_id,
            "session_id": instance.session_id or call_log.session_id,
            "turns": len(call_log.turns),
            "duration_ms": call_log.duration_ms,
        }
        self.log.info(
            "Call log of agent %s channel %s written to %s (%d bytes, %d turns, sha256 %s)",
            output["agent_id"],
            output["channel_id"],
            uri,
            result.bytes,
            output["turns"],
            result.sha256,
        )
        self._annotate_asset_events(context, output)
        return output

    def _fetch(
        self, downloader: CallLogDownloader, target: InstanceTarget
    ) -> tuple[AIAgentInstance, DownloadResult, CallLog, str]:
        last_problem, body_invalid = "", False
        for _refresh in range(self.max_url_refreshes + 1):
            instance = self._finished_instance_with_url(target)
            final = self.final_path(target, instance.channel_id)
            assert instance.call_log_url is not None
            url = instance.call_log_url.get_secret_value()
            self._mask(url)
            with storage.spool_for(final) as spool:
                try:
                    result = downloader.download(url, spool)
                    call_log = self._validate(spool.name, result)
                except (CallLogDownloadError, CallLogFormatError) as err:
                    failure = call_log_failure(err)
                    if failure == "refused":
                        raise IceCallLogInvalidError(f"call log of {target.describe()}: {err}") from None
                    if failure == "failed":
                        raise IceCallLogError(f"call log of {target.describe()}: {err}") from None
                    # A damaged body (it does not decode, or a truncated transfer the server declared
                    # complete) is downloaded again; a refused URL is replaced by a fresh one.
                    last_problem, body_invalid = str(err), failure == "damaged"
                    self.log.warning(_RETRY_NOTES[failure], err)
                    continue
                uri = storage.publish_file(spool, final)
            return instance, result, call_log, uri
        message = (
            f"call log of {target.describe()} still failing after {self.max_url_refreshes + 1} "
            f"fresh URLs: {last_problem}"
        )
        raise IceCallLogInvalidError(message) if body_invalid else IceCallLogError(message)

    @staticmethod
    def _validate(spool_name: str, result: DownloadResult) -> CallLog:
        from airflow_provider_ice.api.call_log import parse_call_log

        # The spool file is parsed, never rewritten: the published bytes are exactly what was served.
        with open(spool_name, "rb") as handle:
            raw = handle.read()
        if hashlib.sha256(raw).hexdigest() != result.sha256:
            raise CallLogFormatError("call log changed on local disk while it was validated")
        return parse_call_log(raw)

    def _finished_instance_with_url(self, target: InstanceTarget) -> AIAgentInstance:
        """Return the Finished instance with a non-empty CallLogUrl, waiting for the URL with backoff."""
        deadline = time.monotonic() + self.empty_url_timeout
        delay = self.empty_url_poll_interval
        while True:
            observation = poll_instance(self.hook, target)
            instance = observation.instance
            if observation.outcome is Outcome.NOT_FOUND or instance is None:
                raise IceCallLogNotReadyError(f"no instance found for {target.describe()}")
            if observation.outcome is not Outcome.FINISHED:
                raise IceCallLogNotReadyError(
                    f"instance of {target.describe()} is {observation.status}, not Finished; "
                    "wait for it first (IceAIAgentInstanceSensor)"
                )
            if instance.call_log_url is not None:
                return instance
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IceCallLogNotReadyError(
                    f"instance of {target.describe()} is Finished but its CallLogUrl stayed empty for "
                    f"{self.empty_url_timeout:.0f}s (empty_url_timeout)"
                )
            self.log.info("CallLogUrl not available yet; looking again in %.1fs", min(delay, remaining))
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 60.0)

    @staticmethod
    def _mask(url: str) -> None:
        try:
            from airflow.providers.common.compat.sdk import mask_secret

            mask_secret(url)
        except Exception:  # masking is best effort outside a task runner (plain unit tests)
            log.debug("mask_secret unavailable", exc_info=True)

    def _annotate_asset_events(self, context: Context, output: dict[str, Any]) -> None:
        events = context.get("outlet_events") if hasattr(context, "get") else None
        if events is None:
            return
        extra = {k: output[k] for k in ("uri", "bytes", "sha256", "agent_id", "channel_id", "correlation_id")}
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                try:
                    events[outlet].extra.update(extra)
                except Exception:  # annotating is a bonus; the event itself is emitted by Airflow
                    self.log.debug("Could not annotate the asset event", exc_info=True)


__all__ = [
    "IceCallLogError",
    "IceCallLogInvalidError",
    "IceCallLogNotReadyError",
    "IceFetchCallLogOperator",
    "default_asset",
]
