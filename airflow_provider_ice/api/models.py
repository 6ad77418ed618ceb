"""Pydantic v2 models of the ICE AI-agent requests and responses.

Responses are tolerant: every field is optional, unknown fields are kept (``model_extra``), and
``Status`` keeps values this provider has never seen. Tokens are :class:`~pydantic.SecretStr`, so
they never print, log or serialise unless asked for explicitly.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_pascal


class InstanceStatus(str, Enum):
    """``Created`` → ``Executing`` → ``Finished``; any other value is kept as an unknown member."""

    CREATED = "Created"
    EXECUTING = "Executing"
    FINISHED = "Finished"

    @classmethod
    def _missing_(cls, value: object) -> InstanceStatus:
        member = str.__new__(cls, str(value))
        member._name_ = "UNKNOWN"
        member._value_ = str(value)
        return member

    @property
    def is_known(self) -> bool:
        return self.value in _KNOWN_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self.value == "Finished"

    def __str__(self) -> str:
        return str(self.value)


_KNOWN_STATUSES = frozenset(s.value for s in InstanceStatus)


def wire_name(attribute: str) -> str:
    """Return the ICE name of a snake_case attribute: PascalCase, ``AI`` upper-case (``AIAgentUserId``).

    Every model's aliases follow from it; a field whose wire name does not (``agent_id`` is
    ``AIAgentId``) gives its alias itself.
    """
    name = to_pascal(attribute)
    return "AI" + name[2:] if name.startswith("Ai") else name


class IceModel(BaseModel):
    """Base: snake_case attributes, their :func:`wire_name` as aliases, unknown fields kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=wire_name)

    def to_wire(self) -> dict[str, Any]:
        """Return the PascalCase JSON object, secrets included, as the service sends or expects it."""
        return _reveal(self.model_dump(by_alias=True, exclude_none=True, mode="python"))


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


class AIAgentConfig(IceModel):
    """``AgentConfig``: the commonly used top-level fields typed, every other one kept as given."""

    asr_config: dict[str, Any] | None = None
    tts_config: dict[str, Any] | None = None
    llm_config: dict[str, Any] | None = None
    interrupt_config: dict[str, Any] | None = None
    turn_detection_config: dict[str, Any] | None = None
    greeting: str | None = None
    volume: int | None = Field(default=None, ge=0, le=400)
    enable_intelligent_segment: bool | None = None
    enable_push_to_talk: bool | None = None
    graceful_shutdown: bool | None = None
    max_idle_time: int | None = Field(default=None, ge=0)
    user_online_timeout: int | None = Field(default=None, ge=0)
    user_offline_timeout: int | None = Field(default=None, ge=0)


class ScenarioRuntime(IceModel):
    """A deprecated per-scenario copy of the channel (``VoiceChat``...); its ``AuthToken`` is secret too."""

    channel_id: str | None = None
    agent_user_id: str | None = None
    auth_token: SecretStr | None = None


class RuntimeConfig(ScenarioRuntime):
    """``RuntimeConfig``: the ARTC channel the agent joined, and its per-scenario copies.

    Every ``AuthToken`` is a credential.
    """

    voice_chat: ScenarioRuntime | None = None
    vision_chat: ScenarioRuntime | None = None
    avatar_chat_3d: ScenarioRuntime | None = None

    @field_validator("voice_chat", "vision_chat", "avatar_chat_3d", mode="before")
    @classmethod
    def _only_objects(cls, value: Any) -> Any:
        return value if isinstance(value, (dict, ScenarioRuntime)) else None

    def resolved(self) -> RuntimeConfig:
        """Top-level fields first, then the deprecated per-scenario sub-objects."""
        if self.channel_id and self.agent_user_id:
            return self
        for sub in (self.voice_chat, self.vision_chat, self.avatar_chat_3d):
            if sub is not None and sub.channel_id:
                return RuntimeConfig(
                    ChannelId=self.channel_id or sub.channel_id,
                    AgentUserId=self.agent_user_id or sub.agent_user_id,
                    AuthToken=self.auth_token or sub.auth_token,
                )
        return self


class CallInfo(IceModel):
    """``CallInfo`` of a PSTN (outbound) instance."""

    # A declaration, one line per field of the documented answer: nothing to share but the form.
    status: str | None = None
    call_start_time: str | None = None
    call_end_time: str | None = None
    call_duration: int | None = None
    hangup_role: int | None = None
    caller_number: str | None = None
    callee_number: str | None = None


class AIAgentInstance(IceModel):
    """One instance, as ListAIAgentInstance or DescribeAIAgentInstance returns it.

    ``CallLogUrl`` is a bearer URL: it is kept as a secret so that it never prints by accident.
    """

    # A declaration, one line per field of the documented answer: nothing to share but the form.
    status: InstanceStatus | None = None
    call_log_url: SecretStr | None = None
    runtime_config: RuntimeConfig = Field(default_factory=RuntimeConfig)
    agent_config: dict[str, Any] | None = None
    template_config: dict[str, Any] | None = None
    user_data: str | None = None
    # Describe only:
    instance_id: str | None = None
    session_id: str | None = None
    gmt_create: datetime | None = None
    gmt_modified: datetime | None = None
    call_info: CallInfo | None = None

    @field_validator("call_log_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @field_validator("runtime_config", mode="before")
    @classmethod
    def _null_runtime_config(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def channel_id(self) -> str | None:
        return self.runtime_config.resolved().channel_id

    @property
    def has_call_log(self) -> bool:
        return self.call_log_url is not None


class GenerateAIAgentCallResponse(IceModel):
    """The answer of GenerateAIAgentCall: the instance, its channel and the ARTC Token (a secret)."""

    # A declaration, one line per field of the documented answer: nothing to share but the form.
    request_id: str | None = None
    instance_id: str
    channel_id: str | None = None
    ai_agent_user_id: str | None = None
    avatar_user_id: str | None = None
    user_id: str | None = None
    token: SecretStr | None = None


class StartAIAgentOutboundCallResponse(IceModel):
    """The answer of StartAIAgentOutboundCall: the instance placing the phone call."""

    request_id: str | None = None
    instance_id: str


class ListAIAgentInstanceResponse(IceModel):
    """One page of ListAIAgentInstance."""

    request_id: str | None = None
    instances: list[AIAgentInstance] = Field(default_factory=list)

    @field_validator("instances", mode="before")
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return [] if value is None else value


class DescribeAIAgentInstanceResponse(IceModel):
    """The answer of DescribeAIAgentInstance: one instance."""

    request_id: str | None = None
    instance: AIAgentInstance = Field(default_factory=AIAgentInstance)


class StopAIAgentInstanceResponse(IceModel):
    """The answer of StopAIAgentInstance."""

    request_id: str | None = None
