"""The errors an ICE task fails with: Airflow exceptions, so retries and ``soft_fail`` apply.

The hierarchy::

    AirflowException
    +-- IceAgentCallError                   a call could not be placed, found or waited for
    |   +-- IceAgentInstanceNotFoundError   (also AirflowFailException: no retry)
    |   +-- IceAgentWaitTimeout             the instance did not finish in time
    |   +-- IceTriggerEventError            a trigger event was missing or malformed
    |   +-- IceCampaignInputError           bad recipients or campaign settings (also AirflowFailException)
    +-- IceCallLogError                     a call log could not be fetched (retried)
        +-- IceCallLogNotReadyError         not Finished, or no CallLogUrl in time
    AirflowFailException
    +-- IceCallLogInvalidError              the call log is not valid (no retry)

The client's own errors (``IceError`` and below) are in :mod:`airflow_provider_ice.api.errors`.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_ice.api.waiting import Step


class IceAgentCallError(AirflowException):
    """The agent call could not be placed, found or waited for."""


class IceAgentInstanceNotFoundError(IceAgentCallError, AirflowFailException):
    """No instance matched within ``not_found_timeout``.

    Fails without retries: a retry of a call operator could not find the instance either and would
    place a second call; for a sensor, ``soft_fail`` applies.
    """


class IceAgentWaitTimeout(IceAgentCallError):
    """The instance did not finish within the operator's ``timeout``."""


class IceTriggerEventError(IceAgentCallError):
    """A trigger event was missing or malformed (e.g. triggerer and worker run different versions)."""


class IceCampaignInputError(IceAgentCallError, AirflowFailException):
    """The recipients or the campaign's settings are wrong: fails before any call, without retry."""


class IceCallLogError(AirflowException):
    """The call log could not be fetched (the task may be retried)."""


class IceCallLogNotReadyError(IceCallLogError):
    """The instance is not Finished, or its CallLogUrl stayed empty for ``empty_url_timeout``."""


class IceCallLogInvalidError(AirflowFailException):
    """The call log is not a valid call-log JSON document (malformed, truncated, or too large)."""


def wait_failure(step: Step) -> IceAgentCallError:
    """Return the exception for a FAIL step: a typed "not found", or the polling error."""
    return IceAgentInstanceNotFoundError(step.message) if step.not_found else IceAgentCallError(step.message)
