"""``airflow-ice-emulator`` and ``python -m airflow_provider_ice.emulator``: run it in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from airflow_provider_ice.emulator.config import ACTIONS, EmulatorConfig, FaultConfig, QuotaConfig
from airflow_provider_ice.emulator.server import IceEmulator

_DAY = 86400.0


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def _history(text: str) -> tuple[str, int, float]:
    agent_id, _, rest = text.partition(":")
    count, _, days = rest.partition(":")
    try:
        parsed = (agent_id, int(count), float(days or 7))
    except ValueError:
        parsed = ("", -1, 0.0)
    if not parsed[0] or parsed[1] < 0 or parsed[2] <= 0:
        raise argparse.ArgumentTypeError(
            f"expected AGENT_ID:COUNT[:DAYS] (e.g. agent-1:5000:30), got {text!r}"
        )
    return parsed


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _action_rate(text: str) -> tuple[str, float]:
    action, _, rate = text.partition("=")
    if action not in ACTIONS:
        raise argparse.ArgumentTypeError(
            f"expected ACTION=QPS with ACTION one of {', '.join(ACTIONS)}, got {text!r}"
        )
    return action, _positive(rate)


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser of ``airflow-ice-emulator``."""
    parser = argparse.ArgumentParser(
        prog="airflow-ice-emulator",
        description="Run a local Alibaba Cloud ICE AI-agent service (real V3 signatures, simulated calls).",
    )
    net = parser.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="interface to bind (default %(default)s)")
    net.add_argument(
        "--port", type=int, default=8765, help="TCP port, 0 for a free one (default %(default)s)"
    )
    net.add_argument("--access-key-id", default=EmulatorConfig.access_key_id)
    net.add_argument("--access-key-secret", default="emulator-access-key-secret")
    net.add_argument("--security-token", default=None, help="require this STS token on every request")
    net.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of ids, faults and call-log content (default: ids unique per process, the rest fixed)",
    )

    life = parser.add_argument_group("simulated calls")
    life.add_argument("--user-join-delay", type=_seconds, default=2.0, help="seconds until the user joins")
    life.add_argument("--call-duration", type=_seconds, default=10.0, help="seconds a conversation lasts")
    life.add_argument("--no-show-rate", type=_rate, default=0.0, help="share of users who never join")
    life.add_argument("--idle-rate", type=_rate, default=0.0, help="share of users who join and stay silent")
    life.add_argument("--user-online-timeout", type=_seconds, default=60.0, help="default UserOnlineTimeout")
    life.add_argument("--max-idle-time", type=_seconds, default=600.0, help="default MaxIdleTime")
    life.add_argument("--calllog-url-ttl", type=_seconds, default=3600.0, help="CallLogUrl lifetime (s)")
    life.add_argument(
        "--seed-history",
        type=_history,
        action="append",
        default=[],
        metavar="AGENT_ID:COUNT[:DAYS]",
        help="create COUNT finished instances of AGENT_ID over the last DAYS days (repeatable)",
    )

    faults = parser.add_argument_group("faults (change at run time with POST /_emulator/faults)")
    faults.add_argument("--throttle-rate", type=_rate, default=0.0, help="share answered Throttling.User")
    faults.add_argument("--throttle-status", type=int, choices=(400, 429), default=400)
    faults.add_argument("--retry-after-ms", type=int, default=1000, help="x-acs-retry-after of throttling")
    faults.add_argument("--error-rate", type=_rate, default=0.0, help="share answered 500/503")
    faults.add_argument("--drop-rate", type=_rate, default=0.0, help="share whose connection is dropped")
    faults.add_argument(
        "--drop-before-execute", action="store_true", help="drop before the action runs (default: after)"
    )
    faults.add_argument("--latency", type=_seconds, default=0.0, help="seconds added to every answer")
    faults.add_argument("--slow-create-rate", type=_rate, default=0.0, help="share of creates answered late")
    faults.add_argument("--slow-create-delay", type=_seconds, default=15.0, help="delay of a slow create (s)")
    faults.add_argument(
        "--calllog-expire-first",
        action="store_true",
        help="CallLogUrls of an instance are expired until one download of it was refused as expired",
    )
    faults.add_argument(
        "--calllog-error-rate", type=_rate, default=0.0, help="share of call logs answered 503"
    )
    faults.add_argument(
        "--calllog-truncate-rate", type=_rate, default=0.0, help="share of call logs truncated"
    )
    faults.add_argument(
        "--listing-lag", type=_seconds, default=0.0, help="seconds before a new instance is listed"
    )
    faults.add_argument(
        "--fault-actions",
        default=None,
        help=f"comma-separated actions the API faults target ({', '.join(ACTIONS)})",
    )
    quotas = parser.add_argument_group(
        "quotas (off by default; change at run time with POST /_emulator/quotas)"
    )
    quotas.add_argument("--qps", type=_positive, default=None, help="account requests/s per action")
    quotas.add_argument(
        "--action-qps",
        type=_action_rate,
        action="append",
        default=[],
        metavar="ACTION=QPS",
        help="requests/s for one action, overriding --qps (repeatable)",
    )
    quotas.add_argument(
        "--agent-concurrency", type=int, default=None, help="calls one agent may have at once"
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="answer requests without an Authorization header unchecked (benchmark floors only)",
    )
    return parser


def _fields_from_args(cls: type[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Return the options of ``args`` named like a field of the dataclass ``cls`` (flags use field names)."""
    given = vars(args)
    return {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Return the emulator configuration the parsed command line asks for."""
    fault_actions = None
    if args.fault_actions:
        fault_actions = frozenset(a.strip() for a in args.fault_actions.split(",") if a.strip())
    faults = FaultConfig(
        **{
            **_fields_from_args(FaultConfig, args),
            "drop_after_execute": not args.drop_before_execute,
            "actions": fault_actions,
        }
    )
    quotas = QuotaConfig(**{**_fields_from_args(QuotaConfig, args), "action_qps": dict(args.action_qps)})
    return EmulatorConfig(**{**_fields_from_args(EmulatorConfig, args), "faults": faults, "quotas": quotas})


def _announce(emulator: IceEmulator, histories: Sequence[tuple[str, int, float]]) -> None:
    now = time.time()
    for agent_id, count, days in histories:
        emulator.seed_history(agent_id, count, now - days * _DAY, now - 60)
        print(f"seeded {count} finished instances of {agent_id} over the last {days:g} days")
    print(f"ICE emulator listening on {emulator.url} (AccessKey ID {emulator.access_key_id})")
    print("Point Airflow at it with:")
    print(f"export AIRFLOW_CONN_ICE_DEFAULT={shlex.quote(emulator.airflow_conn_json())}")
    print("Press Ctrl-C to stop.", flush=True)


async def _serve(emulator: IceEmulator, histories: Sequence[tuple[str, int, float]]) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        # SIGTERM (docker stop, kill) stops as cleanly as Ctrl-C.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await emulator.serve_forever(on_ready=lambda em: _announce(em, histories))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``airflow-ice-emulator`` console script."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"airflow-ice-emulator: error: {err}", file=sys.stderr)
        return 2
    emulator = IceEmulator(config)
    try:
        asyncio.run(_serve(emulator, args.seed_history))
    except KeyboardInterrupt:
        pass
    except OSError as err:
        print(f"airflow-ice-emulator: cannot listen on {config.host}:{config.port}: {err}", file=sys.stderr)
        return 1
    print("ICE emulator stopped.", flush=True)
    return 0
