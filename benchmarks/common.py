"""Shared benchmark plumbing: the emulator in its own process, client workers in their own processes.

Every figure is measured side by side in one run on one machine. The emulator runs in a separate
process (a server in the client's process would hide the client's cost), and every measured client
runs in a fresh process too, so that its CPU time and peak RSS are its own.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
ACCESS_KEY_ID = "LTAIbenchmark0000000000"
ACCESS_KEY_SECRET = "benchmark-access-key-secret"
RESULT_MARK = "BENCH-RESULT "


@dataclass
class Emulator:
    """An emulator process and how to reach it."""

    process: subprocess.Popen[str]
    url: str

    def control(self, path: str, body: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/_emulator/{path}", data=data, method="GET" if body is None else "POST"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def request_counts(self, agent_id: str = "-") -> dict[str, int]:
        # The state of an agent nobody uses: the counts without thousands of instances.
        return dict(self.control(f"state?agent_id={agent_id}")["request_counts"])

    def conn_json(self, **extra: Any) -> str:
        """The Airflow connection (JSON) of this emulator, with ``extra`` added to its extras."""
        return json.dumps(
            {
                "conn_type": "alibaba_ice",
                "login": ACCESS_KEY_ID,
                "password": ACCESS_KEY_SECRET,
                "extra": {"endpoint": self.url, **extra},
            }
        )

    @property
    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@contextmanager
def emulator_process(*args: str) -> Iterator[Emulator]:
    """Start ``python -m airflow_provider_ice.emulator --port 0`` and read its URL from stdout."""
    command = [
        sys.executable,
        "-m",
        "airflow_provider_ice.emulator",
        "--port",
        "0",
        "--access-key-id",
        ACCESS_KEY_ID,
        "--access-key-secret",
        ACCESS_KEY_SECRET,
        *args,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            raise RuntimeError(f"the emulator did not start ({' '.join(command)})")
        yield Emulator(process, url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


class Meter:
    """This process's CPU seconds and wall time over a block."""

    def cpu(self) -> float:
        # User + system time of every thread of this process, at ns resolution (psutil's
        # cpu_times counts 10 ms ticks: too coarse for a smoke run of 30 calls).
        return time.process_time()

    def __enter__(self) -> Meter:
        self.cpu0, self.wall0 = self.cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s = self.cpu() - self.cpu0
        self.wall_s = time.perf_counter() - self.wall0


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit_result(result: dict[str, Any]) -> None:
    """A worker's answer: one marked JSON line on stdout."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def run_worker(
    module: str, spec: dict[str, Any], *, env: dict[str, str] | None = None, timeout: float = 900
) -> Any:
    """Run ``python -m <module> --worker '<json spec>'`` in a fresh process; return its result."""
    full_env = {**os.environ, **(env or {})}
    completed = subprocess.run(
        [sys.executable, "-m", module, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise RuntimeError(
        f"worker {module} {spec} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
    )


def worker_main(handler: Any) -> None:
    """``if __name__ == "__main__"`` body of a benchmark module: ``--worker SPEC`` runs ``handler``."""
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        emit_result(handler(json.loads(sys.argv[2])))
    else:
        raise SystemExit(f"usage: python -m {sys.argv[0]} --worker SPEC (run benchmarks via benchmarks.run)")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def profile_top(func: Any, *args: Any, limit: int = 12) -> str:
    """cProfile (process CPU time) of ``func(*args)``: the top entries by own time, as text."""
    import cProfile
    import io
    import pstats

    # CPU time, not wall time: on a shared 2-core machine a wall-clock profile charges the time a
    # syscall waits for a core (socket send while the emulator runs) to the syscall.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        func(*args)
    finally:
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(limit)
    return out.getvalue()
