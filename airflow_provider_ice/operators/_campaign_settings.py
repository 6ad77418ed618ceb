"""What the campaign's cycle and sender read of their operator, as a Protocol.

``IceAgentCallCampaignOperator`` satisfies it structurally; typing the cycle and the sender against
it instead of the operator class keeps every import pointing down (the operator imports the cycle,
never the reverse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow_provider_ice.campaign.plan import CallingWindow, RedialPolicy
    from airflow_provider_ice.hooks.ice import IceHook


class CampaignSettings(Protocol):
    """The validated settings of one campaign task (see the operator's docstring for each)."""

    agent_id: str
    ice_conn_id: str
    campaign_id: str | None
    call_type: str
    caller_number: str | None
    outbound_config: dict[str, Any] | None
    user_id_field: str | None
    recipients: Any
    recipients_format: str | None
    recipient_key: str
    user_data_template: dict[str, Any] | str | None
    phone_field: str | None
    timezone_field: str | None
    default_timezone: str
    destination_conn_id: str | None
    max_active_calls: int
    calls_per_second: float
    lookup_tolerance: float
    not_found_timeout: float
    poll_interval: float
    lookback: float
    policy: RedialPolicy
    window: CallingWindow | None

    @property
    def hook(self) -> IceHook:
        """Return the ICE hook of ``ice_conn_id``."""

    def results_partition(self, ti: Any) -> Any:
        """Return the results partition of task instance ``ti``."""

    def call_log_folder(self) -> Any:
        """Return where the call logs go, or None."""
