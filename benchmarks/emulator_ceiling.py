"""Benchmark: the emulator's ceiling, signed ListAIAgentInstance requests per second.

The emulator runs in its own process (``python -m airflow_provider_ice.emulator``) with seeded
history; this process is the load generator: ``concurrency`` aiohttp workers on one event loop send
V3-signed List requests (page of 10, a one-day window) for ``duration`` seconds. Requests are signed
before the clock starts (each with its own nonce), so the client's signing cost does not cap the
figure. The emulator's CPU share over the window says which side was the limit: close to 100 % of
one core means the emulator itself is saturated.

Run: ``python -m benchmarks.emulator_ceiling [--concurrency 32] [--duration 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_ice.api.signing import Credentials, SignedRequest, sign_request
from benchmarks.common import ACCESS_KEY_ID, ACCESS_KEY_SECRET, emulator_process, percentile

AGENT = "bench-ceiling-agent"
# The emulator answers a bit faster than this; more pre-signed requests are made on demand.
_PRESIGN_RATE = 6000


def _sign(host: str, count: int) -> list[SignedRequest]:
    credentials = Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
    now = time.time()
    params = {
        "AIAgentId": AGENT,
        "PageSize": 10,
        "StartTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86400)),
        "EndTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }
    return [
        sign_request(credentials, host=host, action="ListAIAgentInstance", params=params)
        for _ in range(count)
    ]


async def _aiohttp_load(
    url: str, requests: list[SignedRequest], concurrency: int, deadline: float
) -> Outcome:
    """Load with aiohttp's client (what the provider's async transport uses)."""
    import aiohttp

    host = urlsplit(url).netloc
    outcome = Outcome()

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            request = requests.pop() if requests else _sign(host, 1)[0]
            started = time.perf_counter()
            async with session.post(
                f"{url}{request.target}", headers=request.headers, data=request.body
            ) as resp:
                await resp.read()
            outcome.record(resp.status, time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return outcome


async def _raw_load(url: str, requests: list[SignedRequest], concurrency: int, deadline: float) -> Outcome:
    """Load with pre-encoded HTTP/1.1 keep-alive requests on raw sockets: the cheapest possible client,
    so that on a small machine the emulator, not the load generator, is the limit."""
    parts = urlsplit(url)
    host = parts.netloc
    outcome = Outcome()

    def encode(request: SignedRequest) -> bytes:
        lines = [f"POST {request.target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in request.headers.items()]
        lines.append(f"content-length: {len(request.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + request.body

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < deadline:
                payload = encode(requests.pop() if requests else _sign(host, 1)[0])
                started = time.perf_counter()
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                outcome.record(status, time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcome


class Outcome:
    """Statuses and latencies of the requests answered inside the window."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}

    def record(self, status: int, latency: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency)


def measure_emulator_ceiling(
    concurrency: int = 32, duration: float = 5.0, seeded: int = 10_000, client: str = "raw"
) -> dict[str, Any]:
    """Signed List requests/s the emulator sustains, with latency percentiles and its CPU use.

    ``requests_per_emulator_cpu_s`` (answers per CPU-second the emulator spent) is the ceiling of one
    core when the load generator, sharing the machine, cannot saturate the emulator.

    :param concurrency: simultaneous client connections.
    :param duration: seconds of load.
    :param seeded: finished instances seeded for the agent over the last day (List has real work).
    :param client: ``"raw"`` (pre-encoded keep-alive requests, cheapest) or ``"aiohttp"``.
    """
    load = {"raw": _raw_load, "aiohttp": _aiohttp_load}[client]
    with emulator_process("--seed-history", f"{AGENT}:{seeded}:1") as emulator:
        requests = _sign(urlsplit(emulator.url).netloc, int(duration * _PRESIGN_RATE))
        cpu_before, started = emulator.cpu_seconds, time.perf_counter()
        outcome = asyncio.run(load(emulator.url, requests, concurrency, started + duration))
        wall = time.perf_counter() - started
        emulator_cpu = emulator.cpu_seconds - cpu_before
    latencies_ms = [x * 1000 for x in outcome.latencies]
    ok = outcome.statuses.get(200, 0)
    return {
        "benchmark": "emulator_ceiling",
        "client": client,
        "concurrency": concurrency,
        "duration_s": round(wall, 2),
        "seeded_instances": seeded,
        "requests": len(latencies_ms),
        "statuses": {str(k): v for k, v in sorted(outcome.statuses.items())},
        "requests_per_s": round(ok / wall, 1),
        "requests_per_emulator_cpu_s": round(ok / emulator_cpu, 1) if emulator_cpu else None,
        "latency_ms_p50": round(percentile(latencies_ms, 50) or 0.0, 2),
        "latency_ms_p99": round(percentile(latencies_ms, 99) or 0.0, 2),
        "emulator_cpu_share": round(emulator_cpu / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--seeded", type=int, default=10_000)
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    args = parser.parse_args()
    result = measure_emulator_ceiling(args.concurrency, args.duration, args.seeded, args.client)
    print(json.dumps(result, indent=2))
    print(
        f"emulator ceiling: {result['requests_per_s']:.0f} signed ListAIAgentInstance requests/s "
        f"({args.concurrency} {args.client} connections, p50 {result['latency_ms_p50']} ms, "
        f"p99 {result['latency_ms_p99']} ms, emulator CPU {result['emulator_cpu_share'] * 100:.0f}% "
        f"of one core; {result['requests_per_emulator_cpu_s']} requests per emulator CPU-second)"
    )


if __name__ == "__main__":
    main()
