"""A local Alibaba Cloud ICE AI-agent service for demos, tests and offline DAG development.

It speaks ICE's real wire protocol (RPC ``POST /``, V3 ``ACS3-HMAC-SHA256`` signatures, the gateway's
error codes), simulates the Created → Executing → Finished lifecycle, serves signed expiring call-log
URLs, injects faults under a seed, and exposes its state under ``/_emulator/`` for tests::

    from airflow_provider_ice.emulator import IceEmulator, EmulatorConfig

    with IceEmulator(EmulatorConfig(user_join_delay=0.2, call_duration=1)) as emulator:
        os.environ["AIRFLOW_CONN_ICE_DEFAULT"] = emulator.airflow_conn_json()
        ...

Run it standalone with ``airflow-ice-emulator --port 8765``; pytest users get the ``ice_emulator``
and ``ice_connection`` fixtures from :mod:`airflow_provider_ice.emulator.pytest_plugin`.
"""

from __future__ import annotations

from airflow_provider_ice.emulator.config import ACTIONS, SCENARIO_KEY, EmulatorConfig, FaultConfig
from airflow_provider_ice.emulator.server import IceEmulator

__all__ = ["ACTIONS", "SCENARIO_KEY", "EmulatorConfig", "FaultConfig", "IceEmulator"]
