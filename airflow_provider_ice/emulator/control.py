"""The ``/_emulator/`` control plane: state, reset, faults and seeding over HTTP (never faulted).

* ``GET  /_emulator/health``  → ``{"ok": true}``
* ``GET  /_emulator/state[?agent_id=…]`` → what :meth:`IceEmulator.state` returns
* ``POST /_emulator/reset``   → forget instances, counts, nonces; faults back to the configured ones
* ``GET  /_emulator/faults``  → current fault settings
* ``POST /_emulator/faults``  ← JSON object of settings to change (``{"throttle_rate": 0.2}``);
  ``?replace=1`` starts from no faults instead of the current settings
* ``POST /_emulator/faults/force`` ← ``{"action": …, "kind": …, "count": 1}``: the next ``count``
  calls of ``action`` meet fault ``kind`` (:meth:`IceEmulator.force_faults`) → ``{"forced": {…}}``
* ``GET  /_emulator/quotas``  → current quotas; ``POST`` ← JSON object of quota settings to change
  (``{"qps": 20, "action_qps": {"ListAIAgentInstance": 5}, "agent_concurrency": 10}``, null lifts
  one); ``?replace=1`` starts from no quotas
* ``POST /_emulator/seed``    ← ``{"agent_id": …, "count": …, "start": ISO|epoch, "end": ISO|epoch}``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from airflow_provider_ice.emulator.config import FaultConfig, QuotaConfig
from airflow_provider_ice.emulator.faults import FaultInjector
from airflow_provider_ice.emulator.quotas import QuotaEnforcer

PREFIX = "/_emulator"


class Controlled(Protocol):
    """What the control plane drives: :class:`~.server.IceEmulator` (named here without importing it)."""

    faults: FaultInjector
    quotas: QuotaEnforcer

    def state(self, agent_id: str | None = None) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def set_faults(self, faults: FaultConfig | None = None, **changes: Any) -> FaultConfig: ...

    def force_faults(self, action: str, kind: str, count: int = 1) -> list[str]: ...

    def set_quotas(self, quotas: QuotaConfig | None = None, **changes: Any) -> QuotaConfig: ...

    def seed_history(self, agent_id: str, count: int, start: float, end: float) -> list[str]: ...


def _bad_request(message: str) -> web.Response:
    return web.json_response({"Code": "InvalidParameter", "Message": message}, status=400)


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    loaded = json.loads(raw)
    if not isinstance(loaded, dict):
        raise ValueError("the body must be a JSON object")
    return loaded


def _moment(value: Any, name: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError(f"{name}: needs a time zone (e.g. the Z suffix)")
        return parsed.timestamp()
    raise ValueError(f"{name}: expected an ISO 8601 time or epoch seconds")


def add_control_routes(app: web.Application, emulator: Controlled) -> None:
    """Register the control endpoints of ``emulator`` on ``app``."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def state(request: web.Request) -> web.Response:
        return web.json_response(emulator.state(request.query.get("agent_id")))

    async def reset(request: web.Request) -> web.Response:
        emulator.reset()
        return web.json_response({"ok": True})

    def settings_routes(
        path: str, current: Callable[[], FaultConfig | QuotaConfig], change: Callable[..., Any], empty: type
    ) -> None:
        """Register ``GET path`` (the settings) and ``POST path`` (change; ``?replace=1``: from empty)."""

        async def get(request: web.Request) -> web.Response:
            return web.json_response(current().to_dict())

        async def post(request: web.Request) -> web.Response:
            try:
                changes = await _json_body(request)
                base = empty() if request.query.get("replace") in ("1", "true") else None
                config = change(base, **changes)
            except (ValueError, TypeError) as err:
                return _bad_request(str(err))
            return web.json_response(config.to_dict())

        app.router.add_get(f"{PREFIX}/{path}", get)
        app.router.add_post(f"{PREFIX}/{path}", post)

    async def force_faults(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            count = body.get("count", 1)
            emulator.force_faults(str(body["action"]), str(body["kind"]), count)
        except KeyError as missing:
            return _bad_request(f"missing field {missing.args[0]!r} (need action, kind; count optional)")
        except (ValueError, TypeError) as err:
            return _bad_request(str(err))
        return web.json_response({"forced": emulator.faults.forced()})

    async def seed(request: web.Request) -> web.Response:
        try:
            body = await _json_body(request)
            ids = emulator.seed_history(
                str(body["agent_id"]),
                int(body["count"]),
                _moment(body["start"], "start"),
                _moment(body["end"], "end"),
            )
        except KeyError as missing:
            return _bad_request(f"missing field {missing.args[0]!r} (need agent_id, count, start, end)")
        except (ValueError, TypeError) as err:
            return _bad_request(str(err))
        return web.json_response({"seeded": len(ids), "first": ids[:1], "last": ids[-1:]})

    app.router.add_get(f"{PREFIX}/health", health)
    app.router.add_get(f"{PREFIX}/state", state)
    app.router.add_post(f"{PREFIX}/reset", reset)
    settings_routes("faults", lambda: emulator.faults.config, emulator.set_faults, FaultConfig)
    app.router.add_post(f"{PREFIX}/faults/force", force_faults)
    settings_routes("quotas", lambda: emulator.quotas.config, emulator.set_quotas, QuotaConfig)
    app.router.add_post(f"{PREFIX}/seed", seed)
