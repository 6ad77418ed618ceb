"""The ICE OpenAPI client: signing, models, typed errors, sync and async clients. No Airflow imports.

Names are loaded on first use, so ``import airflow_provider_ice.api`` stays cheap (httpx and
pydantic are imported only when a client, model or validator is touched).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "IceClient": "client",
    "AsyncIceClient": "client",
    "Credentials": "signing",
    "IceError": "errors",
    "IceValidationError": "errors",
    "IceApiError": "errors",
    "IceThrottlingError": "errors",
    "IceConcurrencyLimitError": "errors",
    "IceAuthError": "errors",
    "IceInvalidParameterError": "errors",
    "IceNotFoundError": "errors",
    "IceServerError": "errors",
    "IceResponseError": "errors",
    "IceTransportError": "errors",
    "IceOutcomeUnknownError": "errors",
    "IcePaginationError": "errors",
    "RateLimits": "ratelimit",
}

__all__ = [
    "AsyncIceClient",
    "Credentials",
    "IceApiError",
    "IceAuthError",
    "IceClient",
    "IceConcurrencyLimitError",
    "IceError",
    "IceInvalidParameterError",
    "IceNotFoundError",
    "IceOutcomeUnknownError",
    "IcePaginationError",
    "IceResponseError",
    "IceServerError",
    "IceThrottlingError",
    "IceTransportError",
    "IceValidationError",
    "RateLimits",
]

if TYPE_CHECKING:
    from .client import AsyncIceClient, IceClient
    from .errors import (
        IceApiError,
        IceAuthError,
        IceConcurrencyLimitError,
        IceError,
        IceInvalidParameterError,
        IceNotFoundError,
        IceOutcomeUnknownError,
        IcePaginationError,
        IceResponseError,
        IceServerError,
        IceThrottlingError,
        IceTransportError,
        IceValidationError,
    )
    from .ratelimit import RateLimits
    from .signing import Credentials


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
