"""The ``alibaba_ice`` connection form for Airflow below 3.2, built from the declarative metadata.

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from the provider info and never calls
these functions. Older versions (2.11, 3.0, 3.1) ask the hook for WTForms widgets and a field
behaviour dict instead; both are derived here from the same provider-info entry, so the two forms
cannot drift apart.
"""

from __future__ import annotations

from typing import Any


def _connection_type() -> dict[str, Any]:
    from airflow_provider_ice import get_provider_info

    [entry] = get_provider_info()["connection-types"]
    return entry


def connection_form_widgets() -> dict[str, Any]:
    """Return the WTForms widgets for the extra fields (the ``conn-fields`` of the provider info)."""
    from wtforms import BooleanField, IntegerField, PasswordField, StringField

    try:  # Airflow 2's Flask AppBuilder UI styles fields with its own widgets
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    except ImportError:  # pragma: no cover - Airflow 3.0/3.1 without the FAB provider
        BS3PasswordFieldWidget = BS3TextFieldWidget = None

    widgets: dict[str, Any] = {}
    for name, field in _connection_type()["conn-fields"].items():
        schema = field["schema"]
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        kwargs: dict[str, Any] = {"description": field.get("description", "")}
        if schema.get("format") == "password":
            if BS3PasswordFieldWidget is not None:
                kwargs["widget"] = BS3PasswordFieldWidget()
            widgets[name] = PasswordField(field["label"], **kwargs)
            continue
        if BS3TextFieldWidget is not None and "boolean" not in types:
            kwargs["widget"] = BS3TextFieldWidget()
        if types == ["integer", "null"]:
            widgets[name] = IntegerField(field["label"], default=schema.get("default"), **kwargs)
        elif types == ["boolean", "null"]:
            widgets[name] = BooleanField(field["label"], default=schema.get("default"), **kwargs)
        else:  # strings, numbers, and "true/false/CA bundle path" are typed as text
            default = schema.get("default")
            kwargs["default"] = None if default is None else str(default).lower()
            widgets[name] = StringField(field["label"], **kwargs)
    return widgets


def ui_field_behaviour() -> dict[str, Any]:
    """Return the ``ui-field-behaviour`` of the provider info in the hook method's snake_case form."""
    behaviour = _connection_type()["ui-field-behaviour"]
    return {key.replace("-", "_"): value for key, value in behaviour.items()}
