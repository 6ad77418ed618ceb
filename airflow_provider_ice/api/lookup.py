"""Find an agent instance in ListAIAgentInstance by correlation id and/or ChannelId.

ListAIAgentInstance carries no InstanceId, so an instance is recognised by what it echoes: the
correlation id inside ``UserData`` (see :mod:`.correlation`) and ``RuntimeConfig.ChannelId``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .correlation import correlation_id_of
from .models import AIAgentInstance

if TYPE_CHECKING:
    from .client import AsyncIceClient, IceClient


def instance_matches(
    instance: AIAgentInstance, *, correlation_id: str | None = None, channel_id: str | None = None
) -> bool:
    """True when every identifier given matches; at least one identifier is required."""
    if not correlation_id and not channel_id:
        raise ValueError("instance_matches: give correlation_id, channel_id or both")
    if correlation_id and correlation_id_of(instance.user_data) != correlation_id:
        return False
    return not (channel_id and instance.channel_id != channel_id)


def find_instance(
    client: IceClient,
    agent_id: str,
    *,
    correlation_id: str | None = None,
    channel_id: str | None = None,
    start_time: datetime | str | None = None,
    end_time: datetime | str | None = None,
) -> AIAgentInstance | None:
    """The first instance of ``agent_id`` created in the window that matches, or None."""
    for instance in client.list_ai_agent_instances(agent_id, start_time=start_time, end_time=end_time):
        if instance_matches(instance, correlation_id=correlation_id, channel_id=channel_id):
            return instance
    return None


async def afind_instance(
    client: AsyncIceClient,
    agent_id: str,
    *,
    correlation_id: str | None = None,
    channel_id: str | None = None,
    start_time: datetime | str | None = None,
    end_time: datetime | str | None = None,
) -> AIAgentInstance | None:
    """Async twin of :func:`find_instance`."""
    async for instance in client.list_ai_agent_instances(agent_id, start_time=start_time, end_time=end_time):
        if instance_matches(instance, correlation_id=correlation_id, channel_id=channel_id):
            return instance
    return None
