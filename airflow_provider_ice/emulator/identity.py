"""What an emulated instance is called: its channel names, user ids and tokens, derived from its id.

Nothing of it is stored per instance (10,000+ instances stay cheap): every name is given at creation
(StartAIAgentInstance's RuntimeConfig, GenerateAIAgentCall's UserId) or derived from the seed and the
InstanceId, so the answers, the call log and the control plane always agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol


class Named(Protocol):
    """What an instance carries that its names follow from (:class:`~.store.Instance` has it)."""

    instance_id: str
    agent_id: str
    user_id: str | None
    session_id: str | None
    user_data: str | None
    runtime: dict[str, Any] | None


def derive(seed: int | None, instance_id: str, purpose: str, size: int = 16) -> str:
    """Return a stable pseudo-random hex string for one instance (ids, tokens) without storing it."""
    return hashlib.blake2b(f"{seed}:{instance_id}:{purpose}".encode(), digest_size=size).hexdigest()


@dataclass(frozen=True)
class Identity:
    """The channel names of one instance, derived from its id (nothing extra stored per instance)."""

    channel_id: str
    agent_user_id: str
    user_id: str
    auth_token: str


def identity_of(seed: int | None, instance: Named) -> Identity:
    """Return the channel names of ``instance``: given at creation, else derived from its id."""
    runtime = instance.runtime or {}
    iid = instance.instance_id
    return Identity(
        channel_id=str(runtime.get("ChannelId") or derive(seed, iid, "channel")),
        agent_user_id=str(runtime.get("AgentUserId") or "agent-" + derive(seed, iid, "agent", 6)),
        user_id=instance.user_id or "user-" + derive(seed, iid, "user", 6),
        auth_token=str(runtime.get("AuthToken") or derive(seed, iid, "auth-token", 24)),
    )


def wire_names(seed: int | None, instance: Named) -> dict[str, Any]:
    """Return the names ``instance`` goes by, as its call log and the control plane show them (no token)."""
    ident = identity_of(seed, instance)
    return {
        "InstanceId": instance.instance_id,
        "AIAgentId": instance.agent_id,
        "ChannelId": ident.channel_id,
        "AIAgentUserId": ident.agent_user_id,
        "UserId": ident.user_id,
        "UserData": instance.user_data,
        "SessionId": instance.session_id,
    }
