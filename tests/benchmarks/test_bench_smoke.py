"""CI keeps the benchmarks working: run each one at smoke size and check the report is well formed.

Not a timed test: no figure is asserted against a target, only that every benchmark ran end to
end (real emulator process, real clients) and produced the rows and ratios the report needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_every_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    results = report["results"]
    assert set(results) == {
        "emulator_ceiling",
        "signed_calls",
        "waiting",
        "backfill",
        "campaign",
        "scheduler_cpu",
        "parse_cost",
    }
    # A real deployment (PostgreSQL, scheduler, api-server): full runs only, and the report says so.
    assert "PostgreSQL" in results["scheduler_cpu"]["skipped"]

    assert results["emulator_ceiling"]["requests_per_s"] > 0

    signed = results["signed_calls"]
    clients = {(row["action"], row["client"]) for row in signed["rows"]}
    assert len(clients) == 16
    assert all(row["calls_per_s"] > 0 and row["cpu_us_per_call"] >= 0 for row in signed["rows"])
    assert set(signed["ratios"]) == {"ListAIAgentInstance", "DescribeAIAgentInstance"}

    waits = results["waiting"]["rows"]
    assert {row["mode"] for row in waits} == {"naive", "coalesced", "coalesced, quota 2/s"}
    for coalesced in (row for row in waits if row["mode"].startswith("coalesced")):
        # Correctness is not a timing figure: every wait ends with exactly one success event, and
        # under the account quota (the client limited to it) nothing is throttled.
        assert coalesced["lost"] == 0
        assert coalesced["duplicated"] == 0
        assert coalesced["wrong_instance"] == 0
        assert coalesced["event_statuses"] == {"success": coalesced["waits"]}
        assert coalesced["list_requests_per_interval"] > 0
        assert coalesced["throttled"] == 0

    campaign = results["campaign"]
    if "skipped" in campaign:
        assert "operator is not available" in campaign["skipped"]
    else:
        assert campaign["state"] == "success"
        assert campaign["called_once"] == campaign["recipients"]
        assert campaign["called_twice_or_more"] == 0
        assert campaign["throttled"] == 0

    backfill = results["backfill"]
    assert {row["client"] for row in backfill["rows"]} == {"ours", "baseline (SDK + requests)"}
    assert all(row["sessions_per_s"] > 0 for row in backfill["rows"])
    assert "cpu_per_session_vs_baseline" in backfill["ratios"]

    parse = results["parse_cost"]["rows"]
    assert parse
    assert all(row["added_ms"] >= 0 and row["added_cpu_ms"] >= 0 for row in parse)

    markdown = (tmp_path / "latest.md").read_text()
    headings = (
        "## Targets",
        "## 1. Signed calls",
        "## 2. Waiting",
        "## 3. Backfill",
        "## 4. Outbound campaign",
    )
    for heading in (*headings, "## 5. DAG parse"):
        assert heading in markdown
    assert "What each ratio means for a user" in markdown
