"""Apache Airflow provider for Alibaba Cloud ICE (Intelligent Media Services) AI agents.

Importing this package is cheap: the Airflow adapters and the HTTP client are imported only
when a DAG file or the providers manager asks for them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

PACKAGE_NAME = "airflow-provider-ice"
CONN_TYPE = "alibaba_ice"


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow's providers manager (no hook import needed)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Alibaba Cloud ICE",
        "description": "Alibaba Cloud ICE AI agent calls, call logs and analytics.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Alibaba Cloud ICE",
                "external-doc-url": "https://www.alibabacloud.com/help/en/ims/",
                "tags": ["alibaba"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Alibaba Cloud ICE",
                "python-modules": ["airflow_provider_ice.hooks.ice"],
            }
        ],
        "operators": [
            {
                "integration-name": "Alibaba Cloud ICE",
                "python-modules": [
                    "airflow_provider_ice.operators.agent_call",
                    "airflow_provider_ice.operators.call_log",
                    "airflow_provider_ice.operators.analytics",
                    "airflow_provider_ice.operators.campaign",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Alibaba Cloud ICE",
                "python-modules": ["airflow_provider_ice.sensors.agent_instance"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Alibaba Cloud ICE",
                "python-modules": [
                    "airflow_provider_ice.triggers.agent_instance",
                    "airflow_provider_ice.triggers.campaign",
                ],
            }
        ],
        "extra-links": ["airflow_provider_ice.links.IceAIAgentInstanceLink"],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_ice.hooks.ice.IceHook",
                "hook-name": "Alibaba Cloud ICE",
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": "Region ID; the endpoint is ice.<region>.aliyuncs.com over HTTPS.",
                        # The form shows no placeholder for extra fields; "examples" become its
                        # suggestions ("Start typing to see options").
                        "schema": {
                            "type": ["string", "null"],
                            "default": "cn-shanghai",
                            "examples": ["cn-shanghai", "cn-beijing", "cn-hangzhou", "ap-southeast-1"],
                        },
                    },
                    "endpoint": {
                        "label": "Endpoint",
                        "description": "Optional. A host, or a full URL (plain http:// only when "
                        "written so); default ice.<region>.aliyuncs.com.",
                        "schema": {
                            "type": ["string", "null"],
                            "examples": ["ice.cn-shanghai.aliyuncs.com", "http://127.0.0.1:8765"],
                        },
                    },
                    "security_token": {
                        "label": "STS security token",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "timeout": {
                        "label": "Read timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 5},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "default": 3},
                    },
                    "verify": {
                        "label": "Verify TLS",
                        "description": "Check the server's certificate (off logs a warning).",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "ca_bundle": {
                        "label": "CA bundle path",
                        "description": "Optional. A PEM file of CA certificates to verify TLS with, "
                        "instead of the system's.",
                        "schema": {
                            "type": ["string", "null"],
                            "examples": ["/etc/ssl/certs/ca-certificates.crt"],
                        },
                    },
                    "rate_limit": {
                        "label": "Rate limit (requests/s)",
                        "description": "Requests per second for every action, shared by all clients of "
                        "this AccessKey in a process; slowed down on throttling. Empty: unlimited.",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    },
                    "rate_limits": {
                        "label": "Per-action rate limits",
                        "description": "JSON object of action -> requests per second (null: unlimited), "
                        'e.g. {"GenerateAIAgentCall": 5, "ListAIAgentInstance": 20}.',
                        "schema": {"type": ["object", "string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "AccessKey ID", "password": "AccessKey secret"},
                    # Airflow's form applies placeholders to the standard fields only.
                    "placeholders": {"login": "LTAI..."},
                },
            }
        ],
    }
