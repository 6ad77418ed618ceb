"""The ``alibaba_ice`` connection: from its fields (or the environment) to client settings.

Pure: no Airflow calls, so every rule is tested without a metadata database.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_ice.api.errors import IceValidationError
from airflow_provider_ice.api.validation import bounded_number

if TYPE_CHECKING:
    from airflow_provider_ice.api.ratelimit import RateLimits
    from airflow_provider_ice.api.signing import Credentials

DEFAULT_REGION = "cn-shanghai"
ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class IceConnectionSettings:
    """Everything a client needs, resolved from a Connection (and the environment)."""

    credentials: Credentials
    region: str
    endpoint: str
    timeout: float
    connect_timeout: float
    max_retries: int
    verify: bool | str
    rate_limits: RateLimits | None = None

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "max_retries": self.max_retries,
            "verify": self.verify,
            "rate_limits": self.rate_limits,
        }


def _number(extras: Mapping[str, Any], name: str, default: float) -> float:
    value = extras.get(name)
    if value in (None, ""):
        return default
    return bounded_number(
        value, name, 3600, "connection extra must be a number of seconds between 0 and 3600 (0 excluded)"
    )


def _integer(extras: Mapping[str, Any], name: str, default: int) -> int:
    value = extras.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise IceValidationError(name, f"connection extra must be an integer 0..20, got {value!r}") from None
    if not 0 <= number <= 20:
        raise IceValidationError(name, f"connection extra must be between 0 and 20, got {number}")
    return number


def _verify(extras: Mapping[str, Any]) -> bool | str:
    """TLS verification from the ``verify`` toggle and the ``ca_bundle`` path.

    ``verify`` written before the form had a CA-bundle field may still hold a path (or "true" /
    "false" as text); it is read as before.
    """
    value = extras.get("verify")
    bundle = str(extras.get("ca_bundle") or "").strip() or None
    if value is None or value == "" or value is True:
        verify: bool | str = True
    elif value is False:
        verify = False
    elif isinstance(value, str):
        lowered = value.strip().lower()
        verify = True if lowered in _TRUE else False if lowered in _FALSE else value.strip()
    else:
        raise IceValidationError(
            "verify", f"connection extra must be true, false or a CA bundle path, got {value!r}"
        )
    if bundle is None:
        return verify
    if verify is False:
        raise IceValidationError("ca_bundle", "is set while verify is false; clear one of them")
    if isinstance(verify, str) and verify != bundle:
        raise IceValidationError(
            "ca_bundle", f"differs from the CA bundle path in verify ({verify!r}); keep one of them"
        )
    if not os.path.isfile(bundle):
        raise IceValidationError("ca_bundle", f"CA bundle {bundle!r} does not exist (give a PEM file path)")
    return bundle


def _credentials(
    conn_id: str, login: str | None, password: str | None, extras: Mapping[str, Any]
) -> Credentials:
    login, password = (login or "").strip(), (password or "").strip()
    token = str(extras.get("security_token") or "").strip() or None
    source = f"connection {conn_id!r}"
    if not login and not password:
        login = os.environ.get(ENV_ACCESS_KEY_ID, "").strip()
        password = os.environ.get(ENV_ACCESS_KEY_SECRET, "").strip()
        token = token or os.environ.get(ENV_SECURITY_TOKEN, "").strip() or None
        source = (
            f"connection {conn_id!r} (no keys) and the environment "
            f"({ENV_ACCESS_KEY_ID}/{ENV_ACCESS_KEY_SECRET})"
        )
    if not login or not password:
        missing = "AccessKey ID (login)" if not login else "AccessKey secret (password)"
        if not login and not password:
            raise IceValidationError(
                "credentials",
                f"no AccessKey found in {source}; set login (AccessKey ID) and password "
                "(AccessKey secret) on the connection, or the environment variables",
            )
        raise IceValidationError(
            "credentials", f"{source} has only half an AccessKey pair: the {missing} is missing"
        )
    from airflow_provider_ice.api.signing import Credentials  # signing is imported when used, not at parse

    return Credentials(login, password, token)


def settings_from_connection(
    conn_id: str, login: str | None, password: str | None, extras: Mapping[str, Any]
) -> IceConnectionSettings:
    """Resolve client settings from connection fields (pure: no Airflow calls, easy to test)."""
    region = str(extras.get("region") or DEFAULT_REGION).strip()
    if not _REGION_RE.match(region):
        raise IceValidationError(
            "region", f"must be an Alibaba Cloud region id such as cn-shanghai, got {region!r}"
        )
    endpoint = str(extras.get("endpoint") or "").strip() or f"https://ice.{region}.aliyuncs.com"
    from airflow_provider_ice.api.protocol import parse_endpoint
    from airflow_provider_ice.api.ratelimit import rate_limits_from_extras

    parsed = parse_endpoint(endpoint)  # rejects an unknown scheme before any request
    return IceConnectionSettings(
        credentials=_credentials(conn_id, login, password, extras),
        region=region,
        endpoint=parsed.url,
        timeout=_number(extras, "timeout", 10.0),
        connect_timeout=_number(extras, "connect_timeout", 5.0),
        max_retries=_integer(extras, "max_retries", 3),
        verify=_verify(extras),
        rate_limits=rate_limits_from_extras(extras),
    )
