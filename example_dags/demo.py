"""The main job: the example DAGs against the local ICE emulator, with real signed HTTP.

``make demo`` runs ``python -m example_dags.demo``, which

1. starts ``airflow-ice-emulator`` in its own process (its console script, on a free port),
2. seeds three past days of finished agent calls into it,
3. runs ``ice_call_log_pipeline`` once (place a call, wait in deferrable mode, fetch the call log,
   summarise the conversation), ``ice_session_analytics`` for each of the three days, and
   ``ice_outbound_campaign`` on a file of 300 recipients (one task instance; a fifth of the simulated
   people never answer, and are called again),
4. prints what happened, read back from the files written and from the emulator's own state,
5. stops the emulator.

Everything lives under ``out/demo/`` (or ``$ICE_DEMO_DIR``), recreated on each run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
AGENT_ID = "demo-agent"
DAYS = 3
CALLS_PER_DAY = 400


def _configure_airflow(out: Path, first_day: datetime) -> Path:
    """Point Airflow at a fresh home under ``out`` before anything imports it."""
    home = out / "airflow_home"
    data = out / "data"
    home.mkdir(parents=True)
    data.mkdir(parents=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("ICE_DEMO_LOG_LEVEL", "ERROR"),
            "ICE_DATA_DIR": str(data),
            "ICE_AGENT_ID": AGENT_ID,
            "ICE_AGENT_IDS": AGENT_ID,
            "ICE_POKE_INTERVAL": "1",
            "ICE_ANALYTICS_START_DATE": (first_day - timedelta(days=1)).date().isoformat(),
        }
    )
    return data


class Emulator:
    """``airflow-ice-emulator`` as a child process; its printed export line configures Airflow."""

    def __init__(self) -> None:
        command = [
            sys.executable,
            "-m",
            "airflow_provider_ice.emulator",
            "--port",
            "0",
            "--seed",
            "7",
            "--user-join-delay",
            "1",
            "--call-duration",
            "8",
            # Some people never answer (the campaign redials them); they hang up after 3 s.
            "--no-show-rate",
            "0.2",
            "--user-online-timeout",
            "3",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.conn_json = self._wait_for_export_line()
        self.url = json.loads(self.conn_json)["extra"]["endpoint"]

    def _wait_for_export_line(self) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the emulator exited before it was ready")
            if line.startswith("export AIRFLOW_CONN_ICE_DEFAULT="):
                value = line.split("=", 1)[1].strip()
                # shlex-quoted JSON: strip the single quotes the emulator prints around it.
                return value[1:-1] if value.startswith("'") else value
        raise RuntimeError("the emulator did not announce itself within 60 s")

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}", data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _run_dags(days: list[datetime]) -> tuple[str, list[str], str]:
    """Run the pipeline once, the analytics DAG for each day and the campaign; return their run states."""
    from airflow.utils.db import initdb

    initdb()
    sys.path.insert(0, str(REPO / "example_dags"))
    import ice_call_log_pipeline
    import ice_session_analytics

    print("running ice_call_log_pipeline: place a call, wait (deferrable), fetch and summarise its log")
    pipeline_run = ice_call_log_pipeline.dag.test()
    analytics_states = []
    for day in days:
        print(f"running ice_session_analytics for {day.date().isoformat()}")
        # A manual @daily run at midnight D+1 covers the data interval [D, D+1).
        run = ice_session_analytics.dag.test(logical_date=day + timedelta(days=1))
        analytics_states.append(str(run.state))
    from example_dags import demo_campaign

    return str(pipeline_run.state), analytics_states, demo_campaign.run()


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value / scale:.0f}" if scale == 1.0 else f"{value / scale:.1f}"


def _report(data: Path, emulator: Emulator, pipeline_state: str, analytics_states: list[str]) -> None:
    print("\n=== ice_call_log_pipeline ===")
    print(f"run state: {pipeline_state}")
    for path in sorted((data / "call_logs").rglob("*.json")):
        log = json.loads(path.read_text())
        turns = log.get("Turns", [])
        print(
            f"call log {path.relative_to(data.parent)}: {len(turns)} turns, "
            f"{log.get('DurationMs', 0) / 1000:.1f} s, end reason {log.get('EndReason')}"
        )
        for turn in turns[:4]:
            print(f"  {turn.get('Role', '?'):>5}: {turn.get('Text', '')[:90]}")

    print("\n=== ice_session_analytics (one partition per day) ===")
    from airflow_provider_ice.storage import committed_files

    rows = []
    for partition in sorted((data / "sessions").glob("date=*")):
        # The reader contract: the manifest first, then the files of the version it names.
        summary = json.loads(committed_files(partition)["summary.json"].read_text())
        latency = summary["distributions"]["first_response_latency_ms"]
        duration = summary["distributions"]["duration_ms"]
        rows.append(
            [
                partition.name,
                summary["sessions"],
                summary["by_status"].get("Finished", 0),
                summary["pending_count"],
                summary["totals"]["users_joined"],
                summary["with_call_log"],
                _fmt(duration["p50"], 1000),
                _fmt(latency["p50"]),
                _fmt(latency["p95"]),
            ]
        )
    print(
        _table(
            rows,
            [
                "partition",
                "sessions",
                "finished",
                "pending",
                "user joined",
                "call logs",
                "duration p50 s",
                "1st response p50 ms",
                "p95 ms",
            ],
        )
    )
    print(f"analytics run states: {', '.join(analytics_states)}")

    state = emulator.control("state")
    counts = state["request_counts"]
    print("\n=== emulator (its own state) ===")
    print(
        f"instances: {len(state['instances'])}; "
        f"call-log downloads: {sum(state['calllog_downloads'].values())}"
    )
    print("requests by action: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print("\nfiles written:")
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        print(f"  {path}")


def main() -> int:
    out = Path(os.environ.get("ICE_DEMO_DIR", REPO / "out" / "demo")).resolve()
    shutil.rmtree(out, ignore_errors=True)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in range(DAYS, 0, -1)]
    data = _configure_airflow(out, days[0])

    started = time.monotonic()
    emulator = Emulator()
    try:
        os.environ["AIRFLOW_CONN_ICE_DEFAULT"] = emulator.conn_json
        print(f"ICE emulator running at {emulator.url}")
        for day in days:
            emulator.control(
                "seed",
                {
                    "agent_id": AGENT_ID,
                    "count": CALLS_PER_DAY,
                    "start": day.isoformat(),
                    "end": (day + timedelta(days=1)).isoformat(),
                },
            )
        print(
            f"seeded {CALLS_PER_DAY} finished calls on each of "
            + ", ".join(d.date().isoformat() for d in days)
        )
        from example_dags import demo_campaign

        demo_campaign.prepare(data)
        pipeline_state, analytics_states, campaign_state = _run_dags(days)
        _report(data, emulator, pipeline_state, analytics_states)
        demo_campaign.report(data, emulator.control(f"state?agent_id={AGENT_ID}"), campaign_state)
    finally:
        emulator.stop()
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    ok = pipeline_state == campaign_state == "success" and all(s == "success" for s in analytics_states)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
