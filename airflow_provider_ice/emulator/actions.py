"""The ICE actions: parameter validation as the service does it, and documented response shapes.

Field names follow shared/reference/ice-api.md §1. Choices where the service is undocumented:

* an unknown ``InstanceId`` (Describe, Stop) is answered HTTP 404 ``InvalidInstanceId.NotFound``
  (the gateway's ``<Param>.NotFound`` pattern, as ECS uses for instances);
* StopAIAgentInstance on a Finished instance succeeds and changes nothing (idempotent);
* ListAIAgentInstance filters on creation time, ``[StartTime, EndTime)``, newest first;
  ``PageSize=0`` returns an empty page;
* ``CallLogUrl`` is present only once the instance is Finished (unless a scenario says otherwise).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from airflow_provider_ice.emulator.call_log import CallLogSigner
from airflow_provider_ice.emulator.config import EmulatorConfig, scenario_of
from airflow_provider_ice.emulator.faults import FaultInjector
from airflow_provider_ice.emulator.identity import derive, identity_of
from airflow_provider_ice.emulator.quotas import QuotaEnforcer
from airflow_provider_ice.emulator.secrets import SecretLedger
from airflow_provider_ice.emulator.store import FINISHED, Instance, Store, iso_utc
from airflow_provider_ice.emulator.wire import ApiError, invalid_parameter, missing_parameter

Params = dict[str, str]
MAX_EXPIRE = 604800
MAX_USER_ID = 64
_OUTBOUND_STATUS = {"Created": "1", "Executing": "2", "Finished": "4"}
_HANGUP_ROLE = {"UserHangup": 1, "Stopped": 2}


def _required(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise missing_parameter(name)
    return value


def _json_object(params: Params, name: str) -> dict[str, Any] | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise invalid_parameter(name, "it must be a JSON object.")
    if not isinstance(value, dict):
        raise invalid_parameter(name, f"it must be a JSON object, not a JSON {type(value).__name__}.")
    return value


def _int(params: Params, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_parameter(name, f"it must be an integer between {low} and {high}.")
    if not low <= value <= high:
        raise invalid_parameter(name, f"it must be between {low} and {high}, got {value}.")
    return value


def _time(params: Params, name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid_parameter(name, "it must be an ISO 8601 time such as 2025-01-01T00:00:00Z.")
    if parsed.tzinfo is None:
        raise invalid_parameter(name, "it must carry a time zone (use the Z suffix for UTC).")
    return parsed.timestamp()


def _agent_configs(params: Params) -> dict[str, Any]:
    """Return AgentConfig and TemplateConfig as fields of a new instance (ChatSyncConfig is only checked)."""
    fields = {
        "agent_config": _json_object(params, "AgentConfig"),
        "template_config": _json_object(params, "TemplateConfig"),
    }
    _json_object(params, "ChatSyncConfig")
    return fields


class Actions:
    """Runs one action against the store and returns the response body (without ``RequestId``).

    :param config: the emulator configuration.
    :param store: the instances.
    :param faults: fault settings (for ``calllog_expire_first``).
    :param signer: call-log URL signer.
    :param ledger: notes every ARTC Token and AuthToken handed out, when secret recording is on.
    :param quotas: the agents' concurrent-call limit (creating calls are checked, then counted).
    """

    def __init__(
        self,
        config: EmulatorConfig,
        store: Store,
        faults: FaultInjector,
        signer: CallLogSigner,
        ledger: SecretLedger | None = None,
        quotas: QuotaEnforcer | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._faults = faults
        self._signer = signer
        self._ledger = ledger or SecretLedger(enabled=False)
        self._quotas = quotas or QuotaEnforcer(config.quotas)
        self.handlers: dict[str, Callable[[Params, str], dict[str, Any]]] = {
            "GenerateAIAgentCall": self.generate_ai_agent_call,
            "ListAIAgentInstance": self.list_ai_agent_instance,
            "DescribeAIAgentInstance": self.describe_ai_agent_instance,
            "StopAIAgentInstance": self.stop_ai_agent_instance,
            "StartAIAgentInstance": self.start_ai_agent_instance,
            "StartAIAgentOutboundCall": self.start_ai_agent_outbound_call,
        }

    # -- creating actions ---------------------------------------------------------------------
    def generate_ai_agent_call(self, params: Params, base_url: str) -> dict[str, Any]:
        agent_id = _required(params, "AIAgentId")
        expire = _int(params, "Expire", 3600, 0, MAX_EXPIRE)
        user_id = params.get("UserId") or None
        if user_id is not None and len(user_id) > MAX_USER_ID:
            raise invalid_parameter(
                "UserId", f"it must be at most {MAX_USER_ID} characters, got {len(user_id)}."
            )
        fields = _agent_configs(params)
        instance = self._create(
            "GenerateAIAgentCall", agent_id, params, user_id=user_id, expire=expire, **fields
        )
        ident = identity_of(self._config.seed, instance)
        body: dict[str, Any] = {
            "InstanceId": instance.instance_id,
            "ChannelId": ident.channel_id,
            "AIAgentUserId": ident.agent_user_id,
            "UserId": ident.user_id,
            "Token": self._rtc_token(instance, ident.channel_id, ident.user_id),
        }
        if fields["agent_config"] and fields["agent_config"].get("AvatarConfig"):
            body["AvatarUserId"] = "avatar-" + derive(self._config.seed, instance.instance_id, "avatar", 6)
        return body

    def start_ai_agent_instance(self, params: Params, base_url: str) -> dict[str, Any]:
        agent_id = _required(params, "AIAgentId")
        _required(params, "RuntimeConfig")
        runtime = _json_object(params, "RuntimeConfig") or {}
        for key in ("ChannelId", "AgentUserId", "AuthToken"):
            if not isinstance(runtime.get(key), str) or not runtime[key]:
                raise invalid_parameter(f"RuntimeConfig.{key}", "it must be a non-empty string.")
        runtime_fields = {k: runtime[k] for k in ("ChannelId", "AgentUserId", "AuthToken")}
        fields = _agent_configs(params)
        instance = self._create(
            "StartAIAgentInstance", agent_id, params, kind="runtime", runtime=runtime_fields, **fields
        )
        return {"InstanceId": instance.instance_id}

    def start_ai_agent_outbound_call(self, params: Params, base_url: str) -> dict[str, Any]:
        agent_id = _required(params, "AIAgentId")
        numbers = {name: _required(params, name) for name in ("CalledNumber", "CallerNumber")}
        for name, number in numbers.items():
            if not number.lstrip("+").isdigit():
                raise invalid_parameter(name, "it must be a phone number made of digits.")
        config = _json_object(params, "Config")
        instance = self._create(
            "StartAIAgentOutboundCall",
            agent_id,
            params,
            kind="outbound",
            agent_config=config,
            called_number=numbers["CalledNumber"],
            caller_number=numbers["CallerNumber"],
        )
        return {"InstanceId": instance.instance_id}

    # -- reading and stopping -----------------------------------------------------------------
    def list_ai_agent_instance(self, params: Params, base_url: str) -> dict[str, Any]:
        agent_id = _required(params, "AIAgentId")
        page_size = _int(params, "PageSize", 10, 0, 100)
        page_number = _int(params, "PageNumber", 1, 1, 100)
        start, end = _time(params, "StartTime"), _time(params, "EndTime")
        now = self._store.now()
        lag = self._faults.config.listing_lag
        if lag > 0:
            # Instances younger than the lag are not listed yet: the window ends before them
            # (one created exactly ``lag`` seconds ago is listed).
            cutoff = math.nextafter(now - lag, math.inf)
            if self._store.count(agent_id, cutoff if start is None else max(start, cutoff), end):
                self._faults.count("listing_lag", "ListAIAgentInstance")
            end = cutoff if end is None else min(end, cutoff)
        page = self._store.page(agent_id, start, end, page_size, page_number)
        return {"Instances": [self._view(instance, now, base_url) for instance in page]}

    def describe_ai_agent_instance(self, params: Params, base_url: str) -> dict[str, Any]:
        instance = self._instance(params)
        now = self._store.now()
        view = self._view(instance, now, base_url)
        view["GmtCreate"] = iso_utc(instance.created_at)
        view["GmtModified"] = iso_utc(instance.modified_at(now))
        if instance.session_id:
            view["SessionId"] = instance.session_id
        if instance.kind == "outbound":
            view["CallInfo"] = self._call_info(instance, now)
        return {"Instance": view}

    def stop_ai_agent_instance(self, params: Params, base_url: str) -> dict[str, Any]:
        self._store.stop(self._instance(params))
        return {}

    # -- helpers ------------------------------------------------------------------------------
    def _create(self, action: str, agent_id: str, params: Params, **fields: Any) -> Instance:
        """Check the agent's quota, create the instance (with the common SessionId/UserData) and track it."""
        self._quotas.check_agent(action, agent_id, self._store.now())
        instance = self._store.create(
            agent_id, session_id=params.get("SessionId") or None, user_data=params.get("UserData"), **fields
        )
        self._quotas.track(instance)
        return instance

    def _instance(self, params: Params) -> Instance:
        instance_id = _required(params, "InstanceId")
        instance = self._store.get(instance_id)
        if instance is None:
            raise ApiError(404, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.")
        return instance

    def _view(self, instance: Instance, now: float, base_url: str) -> dict[str, Any]:
        """Return the fields List and Describe share (List returns no InstanceId)."""
        status = instance.status(now)
        ident = identity_of(self._config.seed, instance)
        self._ledger.record(ident.auth_token, "AuthToken")
        channel = {
            "ChannelId": ident.channel_id,
            "AgentUserId": ident.agent_user_id,
            "AuthToken": ident.auth_token,
        }
        view: dict[str, Any] = {
            "Status": status,
            # The deprecated per-scenario copy is still documented: clients must treat it alike.
            "RuntimeConfig": {**channel, "VoiceChat": dict(channel)},
            "UserData": instance.user_data if instance.user_data is not None else "",
        }
        if instance.agent_config is not None:
            view["AgentConfig"] = instance.agent_config
        if instance.template_config is not None:
            view["TemplateConfig"] = instance.template_config
        if status == FINISHED or scenario_of(instance.user_data).get("EarlyCallLogUrl") is True:
            view["CallLogUrl"] = self._call_log_url(instance, now, base_url)
        return view

    def _call_log_url(self, instance: Instance, now: float, base_url: str) -> str:
        # Under calllog_expire_first, whoever lists the instance first (a sensor's poll, say), the
        # first download attempt meets an expired URL: they stay expired until one is refused.
        if (
            self._faults.config.calllog_expire_first
            and self._store.expired_refusals[instance.instance_id] == 0
        ):
            expires = int(now) - 1
        else:
            expires = int(now + self._config.calllog_url_ttl)
        return self._signer.url(base_url, instance.instance_id, expires)

    def _call_info(self, instance: Instance, now: float) -> dict[str, Any]:
        status = instance.status(now)
        info: dict[str, Any] = {
            "Status": _OUTBOUND_STATUS[status],
            "CallerNumber": instance.caller_number,
            "CalleeNumber": instance.called_number,
        }
        if instance.join_at is not None and now >= instance.join_at and instance.user_joined():
            info["CallStartTime"] = iso_utc(instance.join_at)
            if status == FINISHED:
                info["CallEndTime"] = iso_utc(instance.finished_at)
                info["CallDuration"] = round(instance.finished_at - instance.join_at)
        if status == FINISHED:
            info["HangupRole"] = _HANGUP_ROLE.get(instance.final_reason(), 0)
        return info

    def _rtc_token(self, instance: Instance, channel_id: str, user_id: str) -> str:
        """Return an ARTC-style join token: base64 JSON with an HMAC-like digest (not a real credential)."""
        core = derive(self._config.seed, instance.instance_id, "rtc-token", 32)
        payload = {
            "appid": "ice-emulator",
            "channelid": channel_id,
            "userid": user_id,
            "timestamp": int(instance.created_at) + instance.expire,
            "token": core,
        }
        token = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode("ascii")
        if self._ledger.enabled:
            self._ledger.record(token, "ARTC Token")
            self._ledger.record(core, "ARTC Token core")
        return token
