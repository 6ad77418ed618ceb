"""Benchmark 4: DAG parse cost, the import time each public module adds over ``import airflow.sdk``.

The scheduler parses DAG files constantly, so what a DAG file imports must stay cheap. In each of
``runs`` fresh interpreters: import ``airflow.sdk`` (timed), then the module (timed separately);
the figure is the median of the module's own time across interpreters. Each module is imported in a
child forked right after ``import airflow.sdk``, so modules do not share each other's imports.

Both clocks are recorded: wall time (``perf_counter``) and the CPU time of the importing process
(``process_time``). The target is judged on CPU time, what a parse costs the dag-processor: on a
shared machine the wall time also counts the time the import waited for a core (the same module
measured 39 ms in one run and 111 ms in another), and that says more about the machine's load than
about the module. Both are in the report.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import REPO

#: Public modules besides the provider info's hooks, operators, sensors and triggers: the package,
#: the extra links and the campaign logic (what a DAG file or a custom operator may import).
EXTRA_PUBLIC_MODULES = (
    "airflow_provider_ice",
    "airflow_provider_ice.links",
    "airflow_provider_ice.campaign",
    "airflow_provider_ice.campaign.ledger",
    "airflow_provider_ice.campaign.plan",
    "airflow_provider_ice.campaign.recipients",
    "airflow_provider_ice.campaign.results",
)


def public_modules() -> tuple[str, ...]:
    """What a DAG file may import: every module the provider info lists, and the extras above."""
    from airflow_provider_ice import get_provider_info

    info = get_provider_info()
    listed = [
        module
        for kind in ("hooks", "operators", "sensors", "triggers")
        for entry in info.get(kind, ())
        for module in entry["python-modules"]
    ]
    return tuple(dict.fromkeys([*EXTRA_PUBLIC_MODULES[:1], *listed, *EXTRA_PUBLIC_MODULES[1:]]))


TARGET_MS = 50.0

# One fresh interpreter per run: import airflow.sdk, then fork once per module so that every module
# is measured on top of exactly ``airflow.sdk`` (and nothing another module already imported).
_PROBE = """
import importlib, json, os, sys, time
t0 = time.perf_counter()
import airflow.sdk
sdk_ms = (time.perf_counter() - t0) * 1000
HEAVY = ("httpx", "aiohttp", "httpx_aiohttp", "pydantic", "tenacity", "alibabacloud_ice20201109", "pandas",
         "jinja2", "croniter", "pendulum", "pyarrow", "airflow_provider_ice.api.models")
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        before = set(sys.modules)
        t1, c1 = time.perf_counter(), time.process_time()
        importlib.import_module(module)
        added, cpu = (time.perf_counter() - t1) * 1000, (time.process_time() - c1) * 1000
        heavy = sorted(m for m in HEAVY if m in sys.modules and m not in before)
        os.write(write, json.dumps([module, added, cpu, heavy]).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    module, added, cpu, heavy = json.loads(b"".join(chunks))
    row = {"module": module, "sdk_ms": sdk_ms, "added_ms": added, "added_cpu_ms": cpu, "heavy": heavy}
    print(json.dumps(row))
"""


def _probe(modules: tuple[str, ...]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run(*, smoke: bool) -> dict[str, Any]:
    runs = 1 if smoke else 5
    modules = public_modules()
    modules = modules[:2] if smoke else modules
    samples = [_probe(modules) for _ in range(runs)]
    rows = []
    for index, module in enumerate(modules):
        mine = [run_[index] for run_ in samples]
        cpu = statistics.median(s["added_cpu_ms"] for s in mine)
        rows.append(
            {
                "module": module,
                "airflow_sdk_ms": statistics.median(s["sdk_ms"] for s in mine),
                "added_ms": statistics.median(s["added_ms"] for s in mine),
                "added_cpu_ms": cpu,
                "heavy_imports_added": ",".join(mine[-1]["heavy"]),
                "meets_target": cpu <= TARGET_MS,
            }
        )
    return {"runs": runs, "target_ms": TARGET_MS, "rows": rows}
