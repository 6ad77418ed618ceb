"""The campaign part of ``make demo``: a recipients file, one ``ice_outbound_campaign`` run, its report.

Imported by :mod:`example_dags.demo` after Airflow is configured; not a DAG file.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

RECIPIENTS = 300
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Singapore")
#: Demo pacing: the emulator's calls last seconds, so redials come seconds after a no-show.
SETTINGS = {
    "ICE_CAMPAIGN_WINDOW": "always",
    "ICE_CAMPAIGN_REDIAL_AFTER": "2",
    "ICE_CAMPAIGN_MAX_ACTIVE": "100",
    "ICE_CAMPAIGN_CPS": "50",
}


def prepare(data: Path) -> Path:
    """Write the recipients CSV (two of them with problems the campaign reports) and point the DAG at it."""
    path = data / "campaign" / "recipients.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "appointment", "tz"])
        for n in range(RECIPIENTS):
            day = f"2026-12-{1 + n % 28:02d} 10:00"
            writer.writerow([f"C{n:05d}", f"Customer {n}", day, ZONES[n % len(ZONES)]])
        writer.writerow(["C00007", "Customer 7 again", "2026-12-08 10:00", "Asia/Shanghai"])  # duplicate key
        writer.writerow(["C99999", "Somebody", "2026-12-09 10:00", "Mars/Olympus"])  # unknown time zone
    os.environ.update({**SETTINGS, "ICE_CAMPAIGN_RECIPIENTS": str(path)})
    return path


def run() -> str:
    """Run ``ice_outbound_campaign`` once; return the run's state."""
    import ice_outbound_campaign

    print(f"running ice_outbound_campaign: {RECIPIENTS + 2} recipients from a CSV file, one task instance")
    started = time.monotonic()
    state = str(ice_outbound_campaign.dag.test().state)
    print(f"ice_outbound_campaign finished in {time.monotonic() - started:.0f} s")
    return state


def report(data: Path, emulator_state: dict[str, Any], run_state: str) -> None:
    """Print the campaign's summary, checked against the emulator's own instances."""
    print("\n=== ice_outbound_campaign ===")
    print(f"run state: {run_state}")
    from airflow_provider_ice.storage import committed_files, read_manifest

    manifests = sorted((data / "campaigns").rglob("_manifest.json"))
    if not manifests:
        print("no campaign results were committed")
        return
    files = committed_files(manifests[-1].parent)  # the reader contract: the manifest first
    summary = json.loads(files["summary.json"].read_text())
    rows = [json.loads(line) for line in files["results.jsonl"].read_text().splitlines()]
    print(
        f"recipients: {summary['recipients']} ({summary['rejected']} rejected), "
        f"calls placed: {summary['calls_placed']}, reached: {summary['reached']}, "
        f"not reached after all attempts: {summary['not_reached']}"
    )
    print(f"attempts by number: {summary['attempts_by_number']}")
    print(f"attempts by outcome: {summary['attempts_by_outcome']}")
    for row in rows:
        if row["outcome"] == "rejected":
            print(f"  rejected #{row['position']} {row['key']}: {row['error']}")
    calls: Counter[str] = Counter()
    correlation_ids = set()
    for instance in emulator_state["instances"]:
        user_data = json.loads(instance.get("UserData") or "{}")
        if "greeting" in user_data:  # the campaign's calls (the DAG's UserData template)
            calls[user_data["customer"]] += 1
            correlation_ids.add(user_data["AirflowCorrelationId"])
    print(
        f"emulator: {len(calls)} customers called, {sum(calls.values())} calls, "
        f"{len(correlation_ids)} distinct correlation ids, "
        f"most calls to one customer: {max(calls.values(), default=0)} (max_attempts 3)"
    )
    version = (read_manifest(manifests[-1].parent) or {}).get("version")
    print(f"results: {manifests[-1].parent} (committed version {version})")
