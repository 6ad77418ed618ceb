"""Benchmark 4: DAG parse cost, the import time each public module adds over ``import airflow.sdk``.

The scheduler parses DAG files constantly, so what a DAG file imports must stay cheap. In each of
``runs`` fresh interpreters: import ``airflow.sdk`` (timed), then the module (timed separately);
the figure is the median of the module's own time across interpreters. Each module is imported in a
child forked right after ``import airflow.sdk``, so modules do not share each other's imports.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.common import REPO

#: What a DAG file imports: the provider's public modules (provider info lists them).
PUBLIC_MODULES = (
    "airflow_provider_ice",
    "airflow_provider_ice.hooks.ice",
    "airflow_provider_ice.operators.agent_call",
    "airflow_provider_ice.operators.call_log",
    "airflow_provider_ice.operators.analytics",
    "airflow_provider_ice.sensors.agent_instance",
    "airflow_provider_ice.triggers.agent_instance",
    "airflow_provider_ice.links",
)
TARGET_MS = 50.0

# One fresh interpreter per run: import airflow.sdk, then fork once per module so that every module
# is measured on top of exactly ``airflow.sdk`` (and nothing another module already imported).
_PROBE = """
import importlib, json, os, sys, time
t0 = time.perf_counter()
import airflow.sdk
sdk_ms = (time.perf_counter() - t0) * 1000
HEAVY = ("httpx", "aiohttp", "httpx_aiohttp", "pydantic", "tenacity", "alibabacloud_ice20201109", "pandas")
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        before = set(sys.modules)
        t1 = time.perf_counter()
        importlib.import_module(module)
        added = (time.perf_counter() - t1) * 1000
        heavy = sorted(m for m in HEAVY if m in sys.modules and m not in before)
        os.write(write, json.dumps([module, added, heavy]).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    module, added, heavy = json.loads(b"".join(chunks))
    print(json.dumps({"module": module, "sdk_ms": sdk_ms, "added_ms": added, "heavy": heavy}))
"""


def _probe(modules: tuple[str, ...]) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run(*, smoke: bool) -> dict[str, Any]:
    runs = 1 if smoke else 5
    modules = PUBLIC_MODULES[:2] if smoke else PUBLIC_MODULES
    samples = [_probe(modules) for _ in range(runs)]
    rows = []
    for index, module in enumerate(modules):
        mine = [run_[index] for run_ in samples]
        added = statistics.median(s["added_ms"] for s in mine)
        rows.append(
            {
                "module": module,
                "airflow_sdk_ms": statistics.median(s["sdk_ms"] for s in mine),
                "added_ms": added,
                "heavy_imports_added": ",".join(mine[-1]["heavy"]),
                "meets_target": added <= TARGET_MS,
            }
        )
    return {"runs": runs, "target_ms": TARGET_MS, "rows": rows}
