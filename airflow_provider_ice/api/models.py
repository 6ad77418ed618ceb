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


class IceModel(BaseModel):
    """Base: PascalCase aliases, snake_case attributes, unknown fields kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

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

    asr_config: dict[str, Any] | None = Field(default=None, alias="AsrConfig")
    tts_config: dict[str, Any] | None = Field(default=None, alias="TtsConfig")
    llm_config: dict[str, Any] | None = Field(default=None, alias="LlmConfig")
    interrupt_config: dict[str, Any] | None = Field(default=None, alias="InterruptConfig")
    turn_detection_config: dict[str, Any] | None = Field(default=None, alias="TurnDetectionConfig")
    greeting: str | None = Field(default=None, alias="Greeting")
    volume: int | None = Field(default=None, alias="Volume", ge=0, le=400)
    enable_intelligent_segment: bool | None = Field(default=None, alias="EnableIntelligentSegment")
    enable_push_to_talk: bool | None = Field(default=None, alias="EnablePushToTalk")
    graceful_shutdown: bool | None = Field(default=None, alias="GracefulShutdown")
    max_idle_time: int | None = Field(default=None, alias="MaxIdleTime", ge=0)
    user_online_timeout: int | None = Field(default=None, alias="UserOnlineTimeout", ge=0)
    user_offline_timeout: int | None = Field(default=None, alias="UserOfflineTimeout", ge=0)


class ScenarioRuntime(IceModel):
    """A deprecated per-scenario copy of the channel (``VoiceChat``...); its ``AuthToken`` is secret too."""

    channel_id: str | None = Field(default=None, alias="ChannelId")
    agent_user_id: str | None = Field(default=None, alias="AgentUserId")
    auth_token: SecretStr | None = Field(default=None, alias="AuthToken")


class RuntimeConfig(ScenarioRuntime):
    """``RuntimeConfig``: the ARTC channel the agent joined, and its per-scenario copies.

    Every ``AuthToken`` is a credential.
    """

    voice_chat: ScenarioRuntime | None = Field(default=None, alias="VoiceChat")
    vision_chat: ScenarioRuntime | None = Field(default=None, alias="VisionChat")
    avatar_chat_3d: ScenarioRuntime | None = Field(default=None, alias="AvatarChat3D")

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

    status: str | None = Field(default=None, alias="Status")
    call_start_time: str | None = Field(default=None, alias="CallStartTime")
    call_end_time: str | None = Field(default=None, alias="CallEndTime")
    call_duration: int | None = Field(default=None, alias="CallDuration")
    hangup_role: int | None = Field(default=None, alias="HangupRole")
    caller_number: str | None = Field(default=None, alias="CallerNumber")
    callee_number: str | None = Field(default=None, alias="CalleeNumber")


class AIAgentInstance(IceModel):
    """One instance, as ListAIAgentInstance or DescribeAIAgentInstance returns it.

    ``CallLogUrl`` is a bearer URL: it is kept as a secret so that it never prints by accident.
    """

    status: InstanceStatus | None = Field(default=None, alias="Status")
    call_log_url: SecretStr | None = Field(default=None, alias="CallLogUrl")
    runtime_config: RuntimeConfig = Field(default_factory=RuntimeConfig, alias="RuntimeConfig")
    agent_config: dict[str, Any] | None = Field(default=None, alias="AgentConfig")
    template_config: dict[str, Any] | None = Field(default=None, alias="TemplateConfig")
    user_data: str | None = Field(default=None, alias="UserData")
    # Describe only:
    instance_id: str | None = Field(default=None, alias="InstanceId")
    session_id: str | None = Field(default=None, alias="SessionId")
    gmt_create: datetime | None = Field(default=None, alias="GmtCreate")
    gmt_modified: datetime | None = Field(default=None, alias="GmtModified")
    call_info: CallInfo | None = Field(default=None, alias="CallInfo")

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

    request_id: str | None = Field(default=None, alias="RequestId")
    instance_id: str = Field(alias="InstanceId")
    channel_id: str | None = Field(default=None, alias="ChannelId")
    ai_agent_user_id: str | None = Field(default=None, alias="AIAgentUserId")
    avatar_user_id: str | None = Field(default=None, alias="AvatarUserId")
    user_id: str | None = Field(default=None, alias="UserId")
    token: SecretStr | None = Field(default=None, alias="Token")


class StartAIAgentOutboundCallResponse(IceModel):
    """The answer of StartAIAgentOutboundCall: the instance placing the phone call."""

    request_id: str | None = Field(default=None, alias="RequestId")
    instance_id: str = Field(alias="InstanceId")


class ListAIAgentInstanceResponse(IceModel):
    """One page of ListAIAgentInstance."""

    request_id: str | None = Field(default=None, alias="RequestId")
    instances: list[AIAgentInstance] = Field(default_factory=list, alias="Instances")

    @field_validator("instances", mode="before")
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return [] if value is None else value


class DescribeAIAgentInstanceResponse(IceModel):
    """The answer of DescribeAIAgentInstance: one instance."""

    request_id: str | None = Field(default=None, alias="RequestId")
    instance: AIAgentInstance = Field(default_factory=AIAgentInstance, alias="Instance")


class StopAIAgentInstanceResponse(IceModel):
    """The answer of StopAIAgentInstance."""

    request_id: str | None = Field(default=None, alias="RequestId")
