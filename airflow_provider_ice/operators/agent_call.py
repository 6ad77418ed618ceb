"""Operators that place an ICE AI agent call, exactly once per task instance, optionally waiting for it.

:class:`IceGenerateAIAgentCallOperator` places an app (ARTC) call and
:class:`IceStartAIAgentOutboundCallOperator` a phone call. Both inherit the exactly-once placement,
adoption and waiting of :class:`~._call_base.IceAgentCallBaseOperator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api.validation import validate_flag, validate_phone_number

from ._call_base import CALL_XCOM_KEY, STATE_KEY, IceAgentCallBaseOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = [
    "CALL_XCOM_KEY",
    "STATE_KEY",
    "TOKEN_XCOM_KEY",
    "IceAgentCallBaseOperator",
    "IceGenerateAIAgentCallOperator",
    "IceStartAIAgentOutboundCallOperator",
]

#: XCom key of the ARTC Token, pushed only with ``push_token=True`` (unmasked in XCom!).
TOKEN_XCOM_KEY = "ice_artc_token"


class IceGenerateAIAgentCallOperator(IceAgentCallBaseOperator):
    """Place an app (ARTC) call with an ICE AI agent: GenerateAIAgentCall, exactly once per task.

    Returns (XCom ``return_value``) ``{"agent_id", "instance_id", "channel_id", "ai_agent_user_id",
    "user_id", "avatar_user_id", "session_id", "correlation_id", "created_at", "adopted"}``;
    ``created_at`` is ISO UTC, taken just before the request was sent. The ARTC Token (what the
    person's app needs to join) is a credential: it is masked in logs and never returned. With
    ``push_token=True`` it is pushed right after the call, *unmasked*, to XCom key
    ``ice_artc_token`` for a downstream task that delivers it. An adopted call has no Token.

    :param user_id: UserId of the person in the channel. (templated)
    :param expire: Token lifetime in seconds. (templated)
    :param agent_config: AgentConfig overrides (dict or AIAgentConfig). (templated)
    :param chat_sync_config: ChatSyncConfig. (templated)
    :param push_token: Push the ARTC Token unmasked to XCom (``ice_artc_token``). Default False.

    See :class:`IceAgentCallBaseOperator` for the other parameters.
    """

    template_fields: Sequence[str] = (
        *IceAgentCallBaseOperator.template_fields,
        "user_id",
        "expire",
        "agent_config",
        "chat_sync_config",
    )
    template_fields_renderers = {"user_data": "json", "agent_config": "json", "chat_sync_config": "json"}

    def __init__(
        self,
        *,
        user_id: str | None = None,
        expire: int | str | None = None,
        agent_config: Any = None,
        chat_sync_config: dict[str, Any] | None = None,
        push_token: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id
        self.expire = expire
        self.agent_config = agent_config
        self.chat_sync_config = chat_sync_config
        self.push_token = validate_flag(push_token, "push_token")  # "False" would push the Token

    def validate_request(self) -> None:
        from airflow_provider_ice.api.validation import validate_expire, validate_user_id

        if isinstance(self.expire, str) and self.expire.strip().isdigit():
            self.expire = int(self.expire)  # a rendered template is a string
        if self.expire is not None:
            validate_expire(self.expire, "expire")
        if self.user_id is not None:
            validate_user_id(self.user_id, "user_id")

    def send(self, context: Context, user_data: Any) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import mask_secret

        response = self.hook.generate_ai_agent_call(
            self.agent_id,
            user_id=self.user_id,
            user_data=user_data,
            session_id=self.session_id,
            expire=self.expire,  # type: ignore[arg-type]  # validated as int above
            agent_config=self.agent_config,
            chat_sync_config=self.chat_sync_config,
        )
        if response.token is not None:
            token = response.token.get_secret_value()
            mask_secret(token)
            if self.push_token:
                context["ti"].xcom_push(key=TOKEN_XCOM_KEY, value=token)
        return {
            "instance_id": response.instance_id,
            "channel_id": response.channel_id,
            "ai_agent_user_id": response.ai_agent_user_id,
            "user_id": response.user_id or self.user_id,
            "avatar_user_id": response.avatar_user_id,
        }


class IceStartAIAgentOutboundCallOperator(IceAgentCallBaseOperator):
    """Phone a person with an ICE AI agent: StartAIAgentOutboundCall, exactly once per task.

    Returns the same record as :class:`IceGenerateAIAgentCallOperator` (``channel_id`` and the
    user ids are None: the API returns only the InstanceId). The numbers are validated before any
    request is sent.

    :param called_number: The number to call. (templated)
    :param caller_number: The calling number (mainland China numbers only, per ICE). (templated)
    :param config: The AIAgentOutboundCallConfig (dict). (templated)

    See :class:`IceAgentCallBaseOperator` for the other parameters.
    """

    template_fields: Sequence[str] = (
        *IceAgentCallBaseOperator.template_fields,
        "called_number",
        "caller_number",
        "config",
    )
    template_fields_renderers = {"user_data": "json", "config": "json"}

    def __init__(
        self, *, called_number: str, caller_number: str, config: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.called_number = called_number
        self.caller_number = caller_number
        self.config = config

    def validate_request(self) -> None:
        self.called_number = validate_phone_number(self.called_number, "called_number")
        self.caller_number = validate_phone_number(self.caller_number, "caller_number")

    def send(self, context: Context, user_data: Any) -> dict[str, Any]:
        response = self.hook.start_ai_agent_outbound_call(
            self.agent_id,
            called_number=self.called_number,
            caller_number=self.caller_number,
            config=self.config,
            session_id=self.session_id,
            user_data=user_data,
        )
        return {"instance_id": response.instance_id}
