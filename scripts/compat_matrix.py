"""``make compat``: the provider's suites on the latest patch of every supported Airflow.

For each minor version (default 2.11, 3.0, 3.1, 3.2, 3.3) this builds or refreshes its own
environment under ``.venv-compat/<minor>/`` with uv (``apache-airflow==<minor>.*``, so uv picks the
latest patch, plus this checkout, editable, with its test extra; a minor listed in
``CONSTRAINTS_AS_OF`` is installed under its release's dependency versions), then runs

1. the unit suite (``tests/unit``, ``tests/emulator``),
2. the ``dag.test()`` integration suite against the emulator (``tests/integration``,
   ``tests/reliability``),
3. every example DAG through ``airflow dags test`` against an emulator in its own process,

and prints one line per version. Environments are built one at a time (the machine is shared).
The exit status is non-zero when any version fails. Only the standard library is used here.

Usage: ``python scripts/compat_matrix.py [--versions 2.11,3.3] [--uv PATH] [--log-dir DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALL_VERSIONS = ("2.11", "3.0", "3.1", "3.2", "3.3")
UNIT = ("tests/unit", "tests/emulator")
INTEGRATION = ("tests/integration", "tests/reliability")
#: The suites run on each version, in order (``--legs`` picks a subset).
LEGS = ("unit", "integration", "dags")
#: (dag_id, logical date or None, run conf): every DAG in example_dags/.
EXAMPLE_DAGS: tuple[tuple[str, str | None, dict[str, object]], ...] = (
    ("ice_call_log_pipeline", None, {"poke_interval": 1}),
    ("ice_scheduled_agent_calls", None, {}),
    ("ice_session_analytics", "2026-11-03", {}),
    # Recipients written by _write_recipients (the DAG's default path); the campaign settings below.
    ("ice_outbound_campaign", None, {"agent_id": "demo-agent"}),
)
#: The campaign's recipients (one in a time zone Python does not know: a ``rejected`` row).
CAMPAIGN_RECIPIENTS = (
    ("C001", "Ada", "2026-12-01 10:00", "Europe/Berlin"),
    ("C002", "Bo", "2026-12-02 10:00", "Asia/Shanghai"),
    ("C003", "Cy", "2026-12-03 10:00", "America/New_York"),
    ("C004", "Di", "2026-12-04 10:00", "Asia/Singapore"),
    ("C005", "Ed", "2026-12-05 10:00", "Mars/Olympus"),
)
#: A brief campaign: any hour, a redial 2 s after a no-show, the emulator's pace.
CAMPAIGN_ENV = {"ICE_CAMPAIGN_WINDOW": "always", "ICE_CAMPAIGN_REDIAL_AFTER": "2", "ICE_CAMPAIGN_CPS": "20"}
#: Minor versions installed with their dependencies as of the day after their latest patch's release
#: (3.0.6, 3.1.8, 3.2.2; see :func:`_constrain`), as Airflow's own constraints file for that release
#: pins them. Their metadata leaves open packages whose later releases they never met: on Airflow
#: 3.0 the latest fastapi, starlette and cadwyn make the in-process execution API that ``dag.test()``
#: uses answer every task start 422, and universal-pathlib 0.3 makes ``ObjectStoragePath`` refuse
#: every URL; 3.1 would get SQLAlchemy 2.1, 3.2 fastapi and cadwyn majors newer than itself.
#: 2.11 and 3.3 are installed with the latest of everything (both pass so).
CONSTRAINTS_AS_OF = {"3.0": "2025-08-30", "3.1": "2026-03-12", "3.2": "2026-05-30"}
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|error|errors|xfailed|xpassed)\b")


@dataclass
class Leg:
    """One suite on one version."""

    name: str
    ok: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    def summary(self) -> str:
        if self.counts:
            shown = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n)
            return f"{self.name} {shown}"
        return f"{self.name} {self.note}".rstrip()


def _run(command: list[str], log, env: dict[str, str] | None = None, timeout: float = 3600) -> int:
    log.write(f"\n$ {' '.join(command)}\n")
    log.flush()
    try:
        return subprocess.run(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
        ).returncode
    except subprocess.TimeoutExpired:
        log.write(f"\n!! timed out after {timeout:.0f} s\n")
        return 124


def _constrain(version: str, uv: str, target: Path, log) -> int:
    """Write Airflow ``version``'s dependencies as of its release, without providers, to ``target``.

    The stand-in for the ``constraints-no-providers`` file Airflow publishes with each release (the
    documented way to install newer providers on an older Airflow): Airflow resolved with only what
    PyPI had on :data:`CONSTRAINTS_AS_OF`, minus the ``apache-airflow-providers-*`` pins.
    """
    resolved = target.with_suffix(".all.txt")
    requirement = target.with_suffix(".in")
    requirement.write_text(f"apache-airflow=={version}.*\n", encoding="utf-8")
    command = [uv, "pip", "compile", "-q", "--no-header", "--no-annotate", "--python-version"]
    command += [f"{sys.version_info.major}.{sys.version_info.minor}", str(requirement)]
    command += ["--exclude-newer", CONSTRAINTS_AS_OF[version], "-o", str(resolved)]
    if code := _run(command, log):
        return code
    pins = resolved.read_text(encoding="utf-8").splitlines()
    kept = [line for line in pins if not line.startswith("apache-airflow-providers-")]
    target.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return 0


def build(version: str, uv: str, log) -> tuple[Path | None, str]:
    """Create or refresh ``.venv-compat/<version>``; return its python and the Airflow installed."""
    env_dir = REPO / ".venv-compat" / version
    python = env_dir / "bin" / "python"
    if not python.exists() and _run([uv, "venv", "-q", "--python", sys.executable, str(env_dir)], log):
        return None, "venv failed"
    install = [uv, "pip", "install", "-q", "--python", str(python), "--upgrade-package", "apache-airflow"]
    if version in CONSTRAINTS_AS_OF:
        constraints = env_dir / "constraints-no-providers.txt"
        if _constrain(version, uv, constraints, log):
            return None, "constraints failed"
        install += ["--constraint", str(constraints)]
    if _run([*install, f"apache-airflow=={version}.*", "-e", ".[test]"], log):
        return None, "install failed"
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
        capture_output=True,
        text=True,
    )
    return python, found.stdout.strip() or "?"


def _airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def pytest_leg(name: str, python: Path, paths: tuple[str, ...], log) -> Leg:
    """Run pytest on ``paths`` in the version's environment; count from its closing line."""
    leg = Leg(name)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ice-compat-") as home:
        before = log.tell()
        code = _run([str(python), "-m", "pytest", *paths], log, _airflow_env(Path(home)))
    leg.seconds = time.monotonic() - started
    log.flush()
    with open(log.name, encoding="utf-8", errors="replace") as reader:
        reader.seek(before)
        tail = reader.read().strip().splitlines()[-1:] or [""]
    for number, kind in _COUNT.findall(tail[0]):
        leg.counts[kind.rstrip("s") if kind == "errors" else kind] = int(number)
    leg.ok = code == 0 and leg.counts.get("passed", 0) > 0
    if not leg.counts:
        leg.note = f"exit {code}"
    return leg


def _start_emulator(python: Path, env: dict[str, str], log) -> tuple[subprocess.Popen[str], str]:
    command = [str(python), "-m", "airflow_provider_ice.emulator", "--port", "0", "--seed", "7"]
    command += ["--user-join-delay", "0.5", "--call-duration", "2", "--seed-history", "demo-agent:20:3"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("export AIRFLOW_CONN_ICE_DEFAULT="):
            value = line.split("=", 1)[1].strip()
            return process, value[1:-1] if value.startswith("'") else value
    process.kill()
    raise RuntimeError("the emulator did not announce itself within 60 s")


def _write_recipients(data: Path) -> None:
    """Write the campaign's recipients CSV where ``ice_outbound_campaign`` reads it by default."""
    path = data / "campaign" / "recipients.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "appointment", "tz"])
        writer.writerows(CAMPAIGN_RECIPIENTS)


def _campaign_outcome(data: Path) -> str | None:
    """Return what is wrong with the campaign's committed summary, or None when every row is counted.

    Each recipient with a known time zone is reached (the emulator's users all join) and the one
    with an unknown zone is rejected; the run state alone would not show a campaign that skipped people.
    """
    summaries = sorted((data / "campaigns").rglob("summary.json"))
    if not summaries:
        return "no summary.json was committed"
    summary = json.loads(summaries[-1].read_text(encoding="utf-8"))
    expected = {
        "recipients": len(CAMPAIGN_RECIPIENTS),
        "reached": len(CAMPAIGN_RECIPIENTS) - 1,
        "rejected": 1,
    }
    found = {key: summary.get(key) for key in expected}
    return None if found == expected else f"summary {found}, expected {expected}"


def example_dags_leg(python: Path, log) -> Leg:
    """Every example DAG through ``airflow dags test`` against the emulator, on a fresh SQLite DB."""
    leg = Leg("example DAGs")
    started = time.monotonic()
    airflow = str(python.parent / "airflow")
    passed = 0
    with tempfile.TemporaryDirectory(prefix="ice-compat-dags-") as home:
        env = _airflow_env(Path(home))
        env.pop("AIRFLOW__CORE__UNIT_TEST_MODE")
        today = datetime.now(timezone.utc).date()
        env.update(
            {
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                "ICE_DATA_DIR": str(Path(home) / "data"),
                "ICE_POKE_INTERVAL": "1",
                "ICE_ANALYTICS_START_DATE": (today - timedelta(days=5)).isoformat(),
                **CAMPAIGN_ENV,
            }
        )
        _write_recipients(Path(env["ICE_DATA_DIR"]))
        emulator, conn = _start_emulator(python, env, log)
        try:
            env["AIRFLOW_CONN_ICE_DEFAULT"] = conn
            if _run([airflow, "db", "migrate"], log, env, timeout=600):
                leg.note = "db migrate failed"
                return leg
            # Parse the DAGs into the DB first, as a deployment's DAG processor has before any run:
            # Airflow 3.0's `dags test` does not, and fails a task whose outlet asset is unknown.
            if _run([airflow, "dags", "reserialize"], log, env, timeout=600):
                leg.note = "dags reserialize failed"
                return leg
            for dag_id, logical_date, conf in EXAMPLE_DAGS:
                day = logical_date and (today - timedelta(days=1)).isoformat()
                command = [airflow, "dags", "test", dag_id, *([day] if day else [])]
                if conf:
                    command += ["--conf", json.dumps(conf)]
                before = log.tell()
                code = _run(command, log, env, timeout=900)
                log.flush()
                with open(log.name, encoding="utf-8", errors="replace") as reader:
                    reader.seek(before)
                    output = reader.read()
                # `airflow dags test` exits 0 on a failed run in some versions: read the final state.
                wrong = None
                if dag_id == "ice_outbound_campaign" and code == 0:
                    wrong = _campaign_outcome(Path(env["ICE_DATA_DIR"]))
                if (
                    code == 0
                    and not wrong
                    and not re.search(r"state=failed|DagRunState.FAILED|Marking run .* failed", output)
                ):
                    passed += 1
                else:
                    log.write(f"\n!! {dag_id} failed (exit {code}{f'; {wrong}' if wrong else ''})\n")
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)
    leg.seconds = time.monotonic() - started
    leg.counts = {"passed": passed, "failed": len(EXAMPLE_DAGS) - passed}
    leg.ok = passed == len(EXAMPLE_DAGS)
    return leg


def _run_leg(name: str, python: Path, log) -> Leg:
    """Run the leg ``name`` (one of :data:`LEGS`) in the version's environment."""
    if name == "dags":
        return example_dags_leg(python, log)
    return pytest_leg(name, python, UNIT if name == "unit" else INTEGRATION, log)


def main(argv: list[str] | None = None) -> int:
    """Run the matrix; return non-zero when any version fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default=",".join(ALL_VERSIONS))
    parser.add_argument("--uv", default=str(REPO / ".venv" / "bin" / "uv"))
    parser.add_argument("--log-dir", default=str(REPO / ".venv-compat" / "logs"))
    parser.add_argument(
        "--legs",
        default=",".join(LEGS),
        help=f"which suites to run on each version, a comma-separated subset of {', '.join(LEGS)}",
    )
    args = parser.parse_args(argv)
    legs_wanted = [leg.strip() for leg in args.legs.split(",") if leg.strip()]
    unknown = sorted(set(legs_wanted) - set(LEGS))
    if unknown or not legs_wanted:
        parser.error(f"--legs: unknown {unknown or 'empty'}; allowed: {', '.join(LEGS)}")
    versions = [v.strip() for v in args.versions.replace(" ", ",").split(",") if v.strip()]
    log_dir = Path(args.log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    lines, failed = [], False
    for version in versions:
        started = time.monotonic()
        log_path = log_dir / f"{version}.log"
        with open(log_path, "w", encoding="utf-8") as log:
            python, installed = build(version, args.uv, log)
            if python is None:
                legs = [Leg("build", note=installed)]
            else:
                legs = [_run_leg(name, python, log) for name in legs_wanted]
        ok = all(leg.ok for leg in legs)
        failed |= not ok
        line = (
            f"airflow {installed if python else version:<7} {'PASS' if ok else 'FAIL'}  "
            + " | ".join(leg.summary() for leg in legs)
            + f" | {time.monotonic() - started:.0f} s  (log: {os.path.relpath(log_path, REPO)})"
        )
        print(line, flush=True)
        lines.append(line)
    print("\n".join(["", "compat matrix:", *lines]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
