"""Run ICE triggers the way a triggerer does, in asyncio debug mode; print every slow loop step.

Run in a fresh interpreter (``python -m tests.integration._loop_probe N``) so that nothing of the
provider is imported yet: the triggerer imports a trigger's module, and the trigger then imports
whatever it needs, inside its event loop, so a cold import is exactly what would block it. The
connection comes from ``AIRFLOW_CONN_ICE_DEFAULT``; N triggers (coalesced) plus one polling on its
own wait for the instances whose correlation ids are in ``ICE_PROBE_CORRELATION_IDS``.

Writes ``{"slow": [[seconds, step], ...], "events": [...]}`` to the file ``ICE_PROBE_REPORT``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time

# What a triggerer process has loaded before it meets its first trigger.
import airflow.jobs.triggerer_job_runner  # noqa: F401
from airflow._shared.module_loading import import_string

SLOW_SECONDS = 0.05
CLASSPATH = "airflow_provider_ice.triggers.agent_instance.IceAIAgentInstanceTrigger"


class _SlowSteps(logging.Handler):
    """Collects asyncio's debug-mode "Executing <step> took N seconds" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.slow: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Executing %s took %.3f seconds":
            step, seconds = record.args  # type: ignore[misc]
            self.slow.append((float(seconds), str(step)[:300]))


async def _run(correlation_ids: list[str], agent_id: str) -> list[dict[str, object]]:
    trigger_class = import_string(CLASSPATH)  # as the triggerer does, inside the loop
    window_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    triggers = [
        trigger_class(
            ice_conn_id="ice_default",
            agent_id=agent_id,
            correlation_id=correlation_id,
            window_start=window_start,
            poll_interval=0.2,
            end_time=time.time() + 60,
            coalesce=index > 0,  # the first polls on its own, the others share the coalesced poller
        )
        for index, correlation_id in enumerate(correlation_ids)
    ]

    async def first_event(trigger: object) -> dict[str, object]:
        async for event in trigger.run():  # type: ignore[attr-defined]
            return dict(event.payload)
        return {}

    return await asyncio.gather(*(first_event(trigger) for trigger in triggers))


def main() -> int:
    handler = _SlowSteps()
    logging.getLogger("asyncio").addHandler(handler)
    correlation_ids = os.environ["ICE_PROBE_CORRELATION_IDS"].split(",")
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_SECONDS
    try:
        events = loop.run_until_complete(_run(correlation_ids, os.environ["ICE_PROBE_AGENT_ID"]))
        pending = asyncio.all_tasks(loop)  # the shared poller winds down once its last waiter left
        loop.run_until_complete(
            asyncio.wait_for(asyncio.gather(*pending), 10) if pending else asyncio.sleep(0)
        )
    finally:
        loop.close()
    with open(os.environ["ICE_PROBE_REPORT"], "w", encoding="utf-8") as report:
        json.dump({"slow": handler.slow, "events": events}, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
