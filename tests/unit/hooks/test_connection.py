"""TLS settings of the ``alibaba_ice`` connection: the ``verify`` toggle and the ``ca_bundle`` path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.hooks.ice import IceHook
from tests.unit.hooks.connections import set_conn


def test_ca_bundle_field_and_the_old_verify_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    set_conn(monkeypatch, verify=True, ca_bundle=str(bundle))
    assert IceHook().settings.verify == str(bundle)
    set_conn(monkeypatch, verify=str(bundle))  # written before the form had a CA-bundle field
    assert IceHook().settings.verify == str(bundle)
    set_conn(monkeypatch, verify=str(bundle), ca_bundle=str(bundle))
    assert IceHook().settings.verify == str(bundle)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"verify": False, "ca_bundle": "{bundle}"}, "verify is false"),
        ({"verify": "false", "ca_bundle": "{bundle}"}, "verify is false"),
        ({"verify": "/other/ca.pem", "ca_bundle": "{bundle}"}, "differs"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "does not exist"),
    ],
)
def test_contradictory_or_missing_ca_bundle_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    set_conn(
        monkeypatch,
        **{
            key: str(value).format(bundle=bundle) if isinstance(value, str) else value
            for key, value in extra.items()
        },
    )
    with pytest.raises(IceValidationError, match=message) as raised:
        IceHook().get_conn()
    assert raised.value.parameter == "ca_bundle"
