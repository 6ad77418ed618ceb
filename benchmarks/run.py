"""``make bench``: run every benchmark side by side and write benchmarks/results/latest.{md,json}.

Usage::

    python -m benchmarks.run                 # full sizes (well under 15 minutes on 2 cores)
    python -m benchmarks.run --smoke         # tiny sizes, to check the benchmarks still work
    python -m benchmarks.run --only signed_calls,parse_cost --out /tmp/bench
    python -m benchmarks.run --only campaign --campaign-recipients 1000 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from benchmarks import backfill, campaign, parse_cost, scheduler_cpu, signed_calls, waiting
from benchmarks.common import emulator_process
from benchmarks.report import render_markdown

RESULTS = Path(__file__).resolve().parent / "results"
#: Hand-written analysis of the targets a full run does not meet (profiles, causes), kept with the code.
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"

BENCHMARKS = (
    "emulator_ceiling",
    "signed_calls",
    "waiting",
    "backfill",
    "campaign",
    "scheduler_cpu",
    "parse_cost",
)


def _emulator_ceiling(smoke: bool) -> dict[str, Any]:
    try:
        from benchmarks import emulator_ceiling
    except ImportError as missing:
        return {"skipped": f"benchmarks/emulator_ceiling.py is not available ({missing})"}
    if smoke:
        return dict(emulator_ceiling.measure_emulator_ceiling(concurrency=8, duration=1.0, seeded=200))
    return dict(emulator_ceiling.measure_emulator_ceiling(concurrency=32, duration=5.0, seeded=10_000))


def _emulator_args(name: str, smoke: bool) -> tuple[str, ...]:
    """Extra emulator flags of one benchmark."""
    if name == "signed_calls":
        return signed_calls.EMULATOR_ARGS
    if name == "campaign":
        return campaign.emulator_args(smoke)
    return ()


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): checks that they run")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--campaign-recipients",
        type=int,
        default=None,
        metavar="N",
        help="campaign row only: N recipients instead of the size's own (the quota and limits stay)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="directory for latest.md and latest.json")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="re-render latest.md from latest.json in --out (e.g. after editing benchmarks/analysis.md)",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        out = Path(args.out)
        report = json.loads((out / "latest.json").read_text())
        if ANALYSIS.exists() and not report["smoke"]:
            report["notes"] = ANALYSIS.read_text()
        (out / "latest.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        (out / "latest.md").write_text(render_markdown(report))
        return 0
    selected = BENCHMARKS if not args.only else tuple(b.strip() for b in args.only.split(",") if b.strip())
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")

    if args.campaign_recipients is not None and args.campaign_recipients < 1:
        parser.error("--campaign-recipients: must be at least 1")
    campaign_size = campaign.sized(args.smoke, args.campaign_recipients)
    report: dict[str, Any] = {
        "smoke": args.smoke,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "results": {},
        "durations_s": {},
    }
    with_emulator: dict[str, Callable[[Any], dict[str, Any]]] = {
        "signed_calls": lambda em: signed_calls.run(em, smoke=args.smoke),
        "waiting": lambda em: waiting.run(em, smoke=args.smoke),
        "backfill": lambda em: backfill.run(em, smoke=args.smoke),
        "campaign": lambda em: campaign.run(em, smoke=args.smoke, size=campaign_size),
    }
    started = time.monotonic()
    for name in selected:
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        if name == "emulator_ceiling":
            result = _emulator_ceiling(args.smoke)
        elif name == "parse_cost":
            result = parse_cost.run(smoke=args.smoke)
        elif name == "scheduler_cpu":  # a whole deployment of its own, emulator included
            result = scheduler_cpu.run(smoke=args.smoke)
        else:
            # A fresh emulator process per benchmark: no state or warm caches carried over.
            with emulator_process(*_emulator_args(name, args.smoke)) as emulator:
                result = with_emulator[name](emulator)
        report["results"][name] = result
        report["durations_s"][name] = round(time.monotonic() - t0, 1)
        print(f"[bench] {name} done in {report['durations_s'][name]} s", file=sys.stderr, flush=True)
    report["total_s"] = round(time.monotonic() - started, 1)
    if ANALYSIS.exists() and not args.smoke:
        report["notes"] = ANALYSIS.read_text()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / "latest.md").write_text(render_markdown(report))
    print(
        f"[bench] wrote {out / 'latest.md'} and {out / 'latest.json'} in {report['total_s']} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
