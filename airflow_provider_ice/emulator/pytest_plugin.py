"""pytest fixtures that run the local ICE emulator (registered through the ``pytest11`` entry point).

* ``ice_emulator``: a started :class:`~airflow_provider_ice.emulator.IceEmulator` on a free port with
  short timings (the user joins after 0.2 s, the call lasts 1 s), stopped after the test. Configure
  it with the ``ice_emulator`` marker, whose keyword arguments are :class:`EmulatorConfig` fields or
  fault settings, or by indirect parametrization with a dict of the same::

      @pytest.mark.ice_emulator(call_duration=3, throttle_rate=0.2, seed=7)
      def test_my_dag(ice_connection): ...

* ``ice_emulator_factory``: ``factory(**settings) -> IceEmulator``, for several emulators per test;
  all are stopped afterwards.
* ``ice_connection``: ``ice_emulator`` plus ``AIRFLOW_CONN_ICE_DEFAULT`` pointing at it, so
  ``IceHook()`` (conn id ``ice_default``) talks to the emulator; returns the emulator.

Nothing here imports Airflow (pytest loads plugins before any conftest sets ``AIRFLOW_HOME``), and
the emulator itself is imported only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_ice.emulator.server import IceEmulator

#: Timings that keep a whole call lifecycle inside a unit test.
FAST_SETTINGS: dict[str, Any] = {
    "user_join_delay": 0.2,
    "call_duration": 1.0,
    "user_online_timeout": 2.0,
    "max_idle_time": 5.0,
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``ice_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "ice_emulator(**settings): settings of the ice_emulator fixture (EmulatorConfig fields and "
        "FaultConfig settings, e.g. call_duration=3, throttle_rate=0.2, seed=7)",
    )


@pytest.fixture
def ice_emulator_factory() -> Iterator[Callable[..., IceEmulator]]:
    """Start emulators with ``factory(**settings)``; every one is stopped after the test."""
    from airflow_provider_ice.emulator.config import EmulatorConfig
    from airflow_provider_ice.emulator.server import IceEmulator

    started: list[IceEmulator] = []

    def factory(**settings: Any) -> IceEmulator:
        emulator = IceEmulator(EmulatorConfig.from_mapping({**FAST_SETTINGS, **settings})).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in started:
        emulator.stop()


@pytest.fixture
def ice_emulator(
    request: pytest.FixtureRequest, ice_emulator_factory: Callable[..., IceEmulator]
) -> IceEmulator:
    """Return a running emulator, configured by the ``ice_emulator`` marker or indirect parametrization."""
    settings: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("ice_emulator"))):
        settings.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        settings.update(param)
    return ice_emulator_factory(**settings)


@pytest.fixture
def ice_connection(ice_emulator: IceEmulator, monkeypatch: pytest.MonkeyPatch) -> IceEmulator:
    """``ice_emulator`` with ``AIRFLOW_CONN_ICE_DEFAULT`` set to it for the duration of the test."""
    monkeypatch.setenv("AIRFLOW_CONN_ICE_DEFAULT", ice_emulator.airflow_conn_json())
    return ice_emulator
