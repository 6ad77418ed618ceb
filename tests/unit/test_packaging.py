"""The package as Airflow and users see it: provider metadata, layering, example DAG integrity."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from airflow_provider_ice import CONN_TYPE, get_provider_info
from airflow_provider_ice._compat import AIRFLOW_V_3_0_PLUS

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAG_IDS = {
    "ice_scheduled_agent_calls",
    "ice_call_log_pipeline",
    "ice_session_analytics",
    "ice_outbound_campaign",
}


def _import_attr(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_provider_entry_point_is_registered() -> None:
    found = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider")
    ]
    assert [ep.load() for ep in found] == [get_provider_info]


def test_every_module_and_class_named_in_provider_info_imports() -> None:
    info = get_provider_info()
    modules = [
        module
        for kind in ("hooks", "operators", "sensors", "triggers")
        for entry in info[kind]
        for module in entry["python-modules"]
    ]
    assert len(modules) == 8
    for module in modules:
        importlib.import_module(module)
    for link in info["extra-links"]:
        assert _import_attr(link).__name__ == "IceAIAgentInstanceLink"  # type: ignore[attr-defined]
    (conn,) = info["connection-types"]
    hook = _import_attr(conn["hook-class-name"])
    assert conn["connection-type"] == CONN_TYPE == hook.conn_type  # type: ignore[attr-defined]
    assert hook.default_conn_name == "ice_default"  # type: ignore[attr-defined]
    assert hook.conn_name_attr == "ice_conn_id"  # type: ignore[attr-defined]


def test_connection_form_is_declarative_and_marks_the_token_sensitive() -> None:
    (conn,) = get_provider_info()["connection-types"]
    fields = conn["conn-fields"]
    assert {
        "region",
        "endpoint",
        "security_token",
        "timeout",
        "connect_timeout",
        "max_retries",
        "verify",
    } <= set(fields)
    assert fields["security_token"]["schema"]["format"] == "password"
    # A toggle (a boolean field), not a text box holding "true"; the CA bundle has its own field.
    assert fields["verify"]["schema"]["type"] == ["boolean", "null"]
    assert fields["ca_bundle"]["schema"]["type"] == ["string", "null"]
    # Placeholders reach the standard fields only; extra fields show "examples" as suggestions.
    placeholders = conn["ui-field-behaviour"]["placeholders"]
    assert set(placeholders) <= {"host", "schema", "login", "password", "port", "description"}
    assert fields["endpoint"]["schema"]["examples"]
    assert fields["region"]["schema"]["examples"]
    assert all("label" in field and "schema" in field for field in fields.values())
    assert conn["ui-field-behaviour"]["relabeling"] == {
        "login": "AccessKey ID",
        "password": "AccessKey secret",
    }


def test_airflow_providers_manager_discovers_the_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-ice" in manager.providers
    hook_info = manager.hooks[CONN_TYPE]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_ice.hooks.ice.IceHook"
    assert hook_info.connection_type == CONN_TYPE


def test_the_api_layer_never_imports_airflow() -> None:
    """The client must stay cheap to import and usable without Airflow (dependencies point one way)."""
    code = (
        "import sys, json, pkgutil, importlib, airflow_provider_ice.api as api;"
        "names = [m.name for m in pkgutil.iter_modules(api.__path__, api.__name__ + '.')];"
        "[importlib.import_module(name) for name in names];"
        "import airflow_provider_ice.analytics.collect, airflow_provider_ice.analytics.summary;"
        "import airflow_provider_ice.campaign.recipients, airflow_provider_ice.campaign.plan;"
        "import airflow_provider_ice.campaign.ledger, airflow_provider_ice.campaign.results;"
        "print(json.dumps([names, sorted(m for m in sys.modules if m.split('.')[0] == 'airflow')]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    api_modules, airflow_modules = json.loads(result.stdout)
    assert airflow_modules == []
    # Every module of the layer was imported, the waiting rules among them.
    assert {"airflow_provider_ice.api.client", "airflow_provider_ice.api.waiting"} <= set(api_modules)


#: What a DAG file must not pay for at each parse: imported only where a task uses it.
NOT_AT_PARSE = (
    "croniter",
    "aiohttp",
    "airflow.providers.common.compat.connection",
    "airflow_provider_ice.api.models",
    "airflow_provider_ice.api.client",
    "airflow_provider_ice.api.signing",
    "airflow_provider_ice.api.download",
    "airflow_provider_ice.api.call_log",
)


def test_public_modules_import_no_heavy_module_over_airflow() -> None:
    """Every module a DAG file may import (benchmarks/parse_cost.py's list) leaves these out."""
    # What a DAG file imports anyway: the task SDK on Airflow 3, the DAG model on Airflow 2.
    baseline = "airflow.sdk" if AIRFLOW_V_3_0_PLUS else "airflow.models.dag"
    code = (
        f"import sys, json, importlib, {baseline};"
        "from benchmarks.parse_cost import public_modules;"
        "before = set(sys.modules); modules = public_modules();"
        "[importlib.import_module(name) for name in modules];"
        "print(json.dumps([modules, sorted(set(sys.modules) - before)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    modules, added = json.loads(result.stdout.splitlines()[-1])
    assert "airflow_provider_ice.operators.campaign" in modules
    assert set(modules) <= set(added) | {"airflow_provider_ice"}  # imported here, not by the baseline
    assert sorted(set(NOT_AT_PARSE) & set(added)) == []


def test_example_dags_parse_without_errors(airflow_db: str) -> None:
    from tests.airflow_compat import DagBag

    bag = DagBag(dag_folder=str(REPO / "example_dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(EXAMPLE_DAG_IDS))
def test_example_dags_have_tags_and_no_cycles(dag_id: str, airflow_db: str) -> None:
    from tests.airflow_compat import DagBag

    dag = DagBag(dag_folder=str(REPO / "example_dags")).get_dag(dag_id)
    assert dag is not None
    assert "ice" in dag.tags
    dag.validate()
    assert dag.task_dict
