"""Operator extra link: the agent instance in the ICE (IMS) console.

Airflow 3's API server never runs operator code, so the URL is computed on the worker during
``execute`` and persisted to XCom; :meth:`IceAIAgentInstanceLink.get_link` only reads it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

#: The XCom key the console URL is stored under.
CONSOLE_URL_XCOM_KEY = "ice_instance_console_url"


def console_url(region: str, agent_id: str, instance_id: str | None = None) -> str:
    """Best-effort URL of an agent (instance) page in the IMS console.

    The console's deep-link scheme is not a documented API; this points at the agent's page in the
    right console site (mainland ``cn-*`` regions use aliyun.com, others alibabacloud.com) and
    carries the region and instance id as query parameters, which the console ignores if unknown.
    """
    site = "ims.console.aliyun.com" if region.startswith("cn-") else "ims.console.alibabacloud.com"
    query: dict[str, str] = {"regionId": region}
    if instance_id:
        query["instanceId"] = instance_id
    return f"https://{site}/ai/robot/detail/{quote(agent_id, safe='')}?{urlencode(query)}"


class IceAIAgentInstanceLink(BaseOperatorLink):
    """Link "ICE Console" to the agent instance a call operator placed (or adopted)."""

    name = "ICE Console"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.providers.common.compat.sdk import XCom

        value: Any = XCom.get_value(key=CONSOLE_URL_XCOM_KEY, ti_key=ti_key)
        return value if isinstance(value, str) else ""

    @staticmethod
    def persist(context: Context, url: str) -> None:
        """Push the URL for :meth:`get_link`; called from ``execute`` on the worker."""
        context["ti"].xcom_push(key=CONSOLE_URL_XCOM_KEY, value=url)
