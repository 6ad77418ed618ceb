"""The baseline backfill: what one would write with the official SDK in a PythonOperator.

List one day of an agent's instances with the official SDK (``alibabacloud-ice20201109``), one hour
at a time so that no window exceeds the 100-page limit, keep them in a list, then download every
call log one after the other with ``requests`` and compute the session metrics. The metrics use the
provider's own parsing and analytics functions, so that the comparison measures listing and
downloading, not a different amount of analysis.

Usage (what ``benchmarks.backfill`` runs in a fresh process)::

    python -m benchmarks.baseline_sdk_backfill --worker '{"url": ..., "agent_id": ..., "day": "2026-01-01"}'
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks.common import ACCESS_KEY_ID, ACCESS_KEY_SECRET, Meter, peak_rss_mb, worker_main


def backfill(url: str, agent_id: str, day: str) -> dict[str, Any]:
    import requests
    from alibabacloud_ice20201109 import models
    from alibabacloud_ice20201109.client import Client
    from alibabacloud_tea_openapi.models import Config

    from airflow_provider_ice.analytics.metrics import session_metrics
    from airflow_provider_ice.analytics.summary import summarise
    from airflow_provider_ice.api.call_log import parse_call_log
    from airflow_provider_ice.api.models import AIAgentInstance

    client = Client(
        Config(
            access_key_id=ACCESS_KEY_ID,
            access_key_secret=ACCESS_KEY_SECRET,
            endpoint=url.removeprefix("http://"),
            protocol="HTTP",
        )
    )
    start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    instances = []
    for hour in range(24):
        lo, hi = start + timedelta(hours=hour), start + timedelta(hours=hour + 1)
        page = 1
        while True:
            response = client.list_aiagent_instance(
                models.ListAIAgentInstanceRequest(
                    aiagent_id=agent_id,
                    start_time=lo.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    end_time=hi.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    page_size=100,
                    page_number=page,
                )
            )
            batch = response.body.instances or []
            instances.extend(batch)
            if len(batch) < 100:
                break
            page += 1
    sessions = []
    downloaded = 0
    with requests.Session() as http:
        for item in instances:
            instance = AIAgentInstance.model_validate(item.to_map())
            log = None
            if item.call_log_url:
                body = http.get(item.call_log_url, timeout=30)
                body.raise_for_status()
                downloaded += len(body.content)
                log = parse_call_log(body.content)
            sessions.append(session_metrics(instance, log, agent_id=agent_id))
    summary = summarise(
        sessions, start=start.isoformat(), end=(start + timedelta(days=1)).isoformat(), agent_ids=[agent_id]
    )
    return {"sessions": summary["sessions"], "downloaded_bytes": downloaded}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    with Meter() as meter:
        result = backfill(spec["url"], spec["agent_id"], spec["day"])
    return {**result, "cpu_s": meter.cpu_s, "wall_s": meter.wall_s, "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    worker_main(worker)
