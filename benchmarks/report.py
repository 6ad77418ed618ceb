"""Render the benchmark report (dict written to latest.json) as Markdown, with each target's verdict."""

from __future__ import annotations

from typing import Any

from benchmarks import scheduler_cpu


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return [*lines, ""]


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**NOT met**")


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    results = report["results"]

    def add(name: str, measured: Any, limit: str, ok: bool | None) -> None:
        out.append({"target": name, "measured": measured, "limit": limit, "met": ok})

    signed = results.get("signed_calls")
    if signed:
        for action, r in signed["ratios"].items():
            add(
                f"{action}: async client CPU/call vs SDK (best concurrency)",
                f"{r['async_cpu_vs_sdk_best']:.2f}x",
                "<= 0.40x",
                r["async_cpu_vs_sdk_best"] <= 0.4,
            )
            add(
                f"{action}: sync client CPU/call vs SDK",
                f"{r['sync_cpu_vs_sdk']:.2f}x",
                "<= 1.00x",
                r["sync_cpu_vs_sdk"] <= 1.0,
            )
            add(
                f"{action}: signing + parsing over the bare httpx loop (sync)",
                f"{r['sync_overhead_vs_bare']:+.0%}",
                "<= +25%",
                r["sync_overhead_vs_bare"] <= 0.25,
            )
            add(
                f"{action}: signing + parsing over the bare aiohttp loop (async, concurrency 8)",
                f"{r['async8_overhead_vs_bare']:+.0%}",
                "<= +25%",
                r["async8_overhead_vs_bare"] <= 0.25,
            )
    waits = results.get("waiting")
    if waits:
        for row in waits["rows"]:
            if row["mode"] != "coalesced" or row is not max(
                (r for r in waits["rows"] if r["mode"] == "coalesced"), key=lambda r: r["waits"]
            ):
                continue
            n = row["waits"]
            add(
                f"{n} waits: ListAIAgentInstance requests per poll interval",
                f"{row['list_requests_per_interval']:.1f}",
                f"<= {row['target_requests_per_interval']}",
                row["list_requests_per_interval"] <= row["target_requests_per_interval"],
            )
            p95 = row["p95_latency_s"]
            add(
                f"{n} waits: p95 detection latency",
                f"{_f(p95, 2)} s",
                f"<= {1.5 * row['poll_interval_s']:.1f} s (1.5 x interval)",
                p95 is not None and p95 <= 1.5 * row["poll_interval_s"],
            )
            add(
                f"{n} waits: peak RSS", f"{row['peak_rss_mb']:.0f} MB", "<= 300 MB", row["peak_rss_mb"] <= 300
            )
            add(
                f"{n} waits: events lost / duplicated",
                f"{row['lost']} / {row['duplicated']}",
                "0 / 0",
                row["lost"] == 0 and row["duplicated"] == 0 and row["wrong_instance"] == 0,
            )
        for row in waits["rows"]:
            if row.get("account_quota_per_s") is None:
                continue
            n, quota = row["waits"], row["account_quota_per_s"]
            add(
                f"{n} waits, ListAIAgentInstance quota {quota:g}/s: throttled responses",
                str(row["throttled"]),
                "0",
                row["throttled"] == 0,
            )
            p95 = row["p95_latency_s"]
            add(
                f"{n} waits, ListAIAgentInstance quota {quota:g}/s: p95 detection latency",
                f"{_f(p95, 2)} s",
                f"<= {row['latency_bound_s']:.2f} s (1.5 x max(interval, pages / quota))",
                p95 is not None and p95 <= row["latency_bound_s"] and row["lost"] == 0,
            )
    back = results.get("backfill")
    if back:
        r = back["ratios"]
        sizes = sorted({row["instances"] for row in back["rows"]})
        big = sizes[-1]
        add(
            f"backfill {big}: speed-up vs baseline with 30 ms latency",
            f"{r[f'speedup_with_latency_{big}']:.1f}x",
            ">= 10x",
            r[f"speedup_with_latency_{big}"] >= 10,
        )
        add(
            f"backfill {big}: client CPU per session vs baseline",
            f"{r['cpu_per_session_vs_baseline']:.2f}x",
            "<= 0.50x",
            r["cpu_per_session_vs_baseline"] <= 0.5,
        )
        add(
            f"backfill: peak RSS growth {sizes[0]} -> {big}",
            f"{r['rss_growth_ours']:.2f}x",
            "< 2x",
            r["rss_growth_ours"] < 2,
        )
    camp = results.get("campaign")
    if camp and "skipped" not in camp:
        n = camp["recipients"]
        add(
            f"campaign of {n}: every recipient called exactly once (emulator state)",
            f"{camp['called_once']} once, {camp['called_twice_or_more']} twice+, {camp['not_called']} never",
            f"{n} once",
            camp["called_once"] == n and camp["called_twice_or_more"] == 0,
        )
        add(
            f"campaign of {n}: throttled responses",
            f"{camp['throttled_share']:.2%} ({camp['throttled']} of {camp['requests']})",
            "<= 1%",
            camp["throttled_share"] <= 0.01,
        )
        add(
            f"campaign of {n}: wall time vs the minimum the quota and call durations allow",
            f"{camp['wall_vs_minimum']:.2f}x ({camp['wall_s']:.0f} s vs {camp['minimum_wall_s']:.0f} s)",
            "<= 1.15x",
            camp["wall_vs_minimum"] <= 1.15,
        )
        add(
            f"campaign of {n}: peak RSS",
            f"{camp['peak_rss_mb']:.0f} MB",
            "<= 300 MB",
            camp["peak_rss_mb"] <= 300,
        )
    elif camp:
        add("campaign: every target", camp["skipped"], "-", None)
    if results.get("scheduler_cpu"):
        for row in scheduler_cpu.targets(results["scheduler_cpu"]):
            add(*row)
    parse = results.get("parse_cost")
    if parse:
        worst = max(parse["rows"], key=lambda row: row["added_cpu_ms"])
        add(
            "DAG parse cost: worst public module over `import airflow.sdk` (CPU time)",
            f"{worst['added_cpu_ms']:.0f} ms ({worst['module']}; wall {worst['added_ms']:.0f} ms)",
            f"<= {parse['target_ms']:.0f} ms",
            worst["added_cpu_ms"] <= parse["target_ms"],
        )
    return out


MEANING = """\
## What each ratio means for a user

- **Async client CPU per call vs the SDK**: the triggerer and the analytics backfill spend this much
  CPU per API call compared with wrapping the official SDK; below 1.0 means more waits or downloads
  per triggerer core.
- **Sync client vs the SDK** and **overhead over the bare loop**: what a worker task pays for
  GenerateAIAgentCall / a poke. Signing and parsing cost little next to the HTTP library itself, so
  a worker slot is not the bottleneck.
- **Requests per poll interval (coalesced)**: with coalesced polling (the default in deferrable
  mode), a triggerer waiting on 10,000 calls of one agent sends about one ListAIAgentInstance page
  per 100 waiting calls per interval, instead of one request (or more, when the call is not on the
  first page) per waiting task. This is what keeps a campaign under the service's rate limits.
- **Detection latency**: how long after a call finishes its task resumes: within one poll interval
  plus one sweep.
- **Peak RSS of the waiting process**: memory one triggerer needs for that many deferred tasks.
- **Backfill speed-up with 30 ms latency**: how much faster a day of sessions is collected than with
  a sequential SDK script when the service is across the internet; CPU per session is what it costs
  the worker; RSS growth shows memory stays bounded as the day grows.
- **Airflow CPU per call, campaign vs mapped tasks**: what a deployment (scheduler, workers, task processes,
  api-server, triggerer) spends per call placed; 0.03x means thirty times more calls on the same cores.
- **DAG parse cost**: what importing the provider adds to every parse of a DAG file by the scheduler.
"""


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# Benchmark results", ""]
    m = report["machine"]
    lines += [
        f"Run {report['started']}{' (SMOKE sizes: not representative)' if report['smoke'] else ''}; "
        f"Python {m['python']} on {m['platform']}, {m['cpus']} CPUs, {m['memory_gb']} GB RAM, load average "
        f"at start {m['load_average_at_start']}. Total {report.get('total_s', 'n/a')} s. "
        "Reproduce with `make bench` (full) or `make bench BENCH_ARGS=--smoke`.",
        "",
        "The emulator runs in its own process and every client in a fresh process of its own. On a shared "
        "2-core machine absolute figures drift: read the ratios, measured side by side in the same run.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ["target", "measured", "limit", "verdict"],
        [[t["target"], t["measured"], t["limit"], _verdict(t["met"])] for t in targets(report)],
    )
    results = report["results"]
    ceiling = results.get("emulator_ceiling")
    if ceiling:
        lines += ["## Emulator ceiling", ""]
        if "skipped" in ceiling:
            lines += [ceiling["skipped"], ""]
        else:
            flat = [[k, v] for k, v in ceiling.items() if not isinstance(v, (dict, list))]
            lines += _table(["figure", "value"], flat) if flat else []
    signed = results.get("signed_calls")
    if signed:
        size = f"{signed['n']} calls each, ListAIAgentInstance PageSize {signed['page_size']}"
        title = f"## 1. Signed calls ({size})"
        lines += [title, ""]
        lines += _table(
            ["action", "client", "calls/s", "client CPU µs/call"],
            [[r["action"], r["label"], r["calls_per_s"], r["cpu_us_per_call"]] for r in signed["rows"]],
        )
        if signed.get("profile"):
            lines += [
                "Profile of our async client (c=8, ListAIAgentInstance, CPU time), top entries by own time:",
                "",
                "```",
                signed["profile"].strip(),
                "```",
                "",
            ]
    waits = results.get("waiting")
    if waits:
        lines += ["## 2. Waiting at scale (real IceAIAgentInstanceTrigger coroutines in one process)", ""]
        header = "waits|mode|List requests / interval|sweeps / interval|requests / sweep|sweep period s|CPU s"
        header += "|peak RSS MB|p50 latency s|p95 latency s|lost|duplicated|throttled|interval s|time cap s"
        # Row fields in header order; ":n" formats a float with n digits.
        spec = "waits mode list_requests_per_interval sweeps_per_interval:2 requests_per_sweep:1"
        spec += " sweep_period_s:2 cpu_s peak_rss_mb p50_latency_s:2 p95_latency_s:2 lost duplicated"
        spec += " throttled poll_interval_s time_cap_s"
        parts = [f.partition(":") for f in spec.split()]
        fields = [(name, int(digits) if digits else None) for name, _, digits in parts]
        rows = [[r.get(k, "n/a") if d is None else _f(r.get(k), d) for k, d in fields] for r in waits["rows"]]
        lines += _table(header.split("|"), rows)
        lines += [
            "Calls finish in random order, evenly over the spread; naive polling is run with the same "
            "time cap as coalesced polling, and what it did not detect within the cap counts as lost "
            "(naive polling asks for far more requests per interval than the emulator, or the service's "
            "rate limit, can serve).",
            "",
        ]
        if waits.get("not_run"):
            lines += [waits["not_run"], ""]
    back = results.get("backfill")
    if back:
        lines += [f"## 3. Backfill one day (ours: concurrency {back['concurrency']})", ""]
        lines += _table(
            [
                "client",
                "instances",
                "added latency ms",
                "sessions/s",
                "client CPU ms/session",
                "peak RSS MB",
                "wall s",
            ],
            [
                [
                    r["client"] + (" (extrapolated)" if r["extrapolated"] else ""),
                    r["instances"],
                    r["latency_ms"],
                    r["sessions_per_s"],
                    r["cpu_ms_per_session"],
                    r["peak_rss_mb"],
                    r["wall_s"],
                ]
                for r in back["rows"]
            ],
        )
        lines += [
            "The sequential baseline with latency is measured at the small size only; its large-size row "
            "is extrapolated linearly (a sequential loop), marked as such.",
            "",
        ]
    camp = results.get("campaign")
    if camp:
        size = camp["size"]
        call_s = size["join_delay"] + size["duration"]
        lines += [
            f"## 4. Outbound campaign ({size['n']} recipients; quota {size['qps']:g} requests/s per action, "
            f"agent limit {size['agent_limit']} calls, each call {call_s:g} s)",
            "",
        ]
        if "skipped" in camp:
            lines += [f"Not measured: {camp['skipped']}.", ""]
        else:
            lines += _table(
                [
                    "state",
                    "called once / twice+ / never",
                    "requests",
                    "throttled",
                    "agent-full refusals",
                    "wall s",
                    "minimum s",
                    "first call after s",
                    "calls / s",
                    "CPU ms / call",
                    "peak RSS MB",
                ],
                [
                    [
                        camp["state"],
                        f"{camp['called_once']} / {camp['called_twice_or_more']} / {camp['not_called']}",
                        camp["requests"],
                        f"{camp['throttled']} ({camp['throttled_share']:.2%})",
                        camp["agent_full_refusals"],
                        camp["wall_s"],
                        camp["minimum_wall_s"],
                        camp.get("first_call_after_s"),
                        camp.get("calls_per_s"),
                        camp["cpu_ms_per_call"],
                        camp["peak_rss_mb"],
                    ]
                ],
            )
            lines += [
                "Requests by action: "
                + ", ".join(f"{a} {c}" for a, c in sorted(camp["request_counts"].items()))
                + ". The task runs through `dag.test()` in its own process (deferrable: the waits run "
                "through the trigger and the coalesced poller in the same process); CPU and RSS include "
                "Airflow's own machinery.",
                "",
            ]
    if results.get("scheduler_cpu"):
        lines += scheduler_cpu.section(results["scheduler_cpu"])
    parse = results.get("parse_cost")
    if parse:
        lines += [f"## 5. DAG parse cost (median of {parse['runs']} fresh interpreters)", ""]
        header = [
            "module",
            "added CPU ms",
            "added wall ms",
            "`import airflow.sdk` wall ms",
            "heavy imports added",
        ]
        fields = ("module", "added_cpu_ms", "added_ms", "airflow_sdk_ms")
        rows = [[*(r[f] for f in fields), r["heavy_imports_added"] or "-"] for r in parse["rows"]]
        lines += _table(header, rows)
    notes = report.get("notes")
    if notes:
        lines += [notes.strip(), ""]
    lines += [MEANING]
    return "\n".join(lines)
