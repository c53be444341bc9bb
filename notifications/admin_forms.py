"""Forms of the operator's admin: vendors (write-only secrets), templates, action forms."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from notifications.configuration import vendor_config_errors
from notifications.models import Channel, EventType, NotificationTemplate, Vendor
from notifications.rendering import template_problems
from notifications.template_samples import sample_payload
from notifications.vendor_destinations import vendor_egress_errors, vendor_secrets_rebind_errors
from notifications.vendor_secrets import secret_names, secrets_stored
from notifications.vendors.registry import VENDOR_ADAPTERS, adapter_choices, adapter_class

SECRET_FIELD_PREFIX = "secret__"


def secret_catalogue() -> dict[str, list[str]]:
    """Secret name -> labels of the adapters that use it (a secret field per name, for every adapter)."""
    catalogue: dict[str, list[str]] = {}
    for key in VENDOR_ADAPTERS:
        cls = adapter_class(key)
        for name in cls.secret_fields:
            catalogue.setdefault(name, []).append(cls.label)
    return catalogue


class VendorAdminForm(forms.ModelForm):
    """Vendor form whose secrets are write-only.

    Each secret is a password input that is never filled in (`render_value=False`); its help
    text only says "set" or "not set". A blank input keeps the stored value. The values typed
    are merged into `secrets_encrypted` by `vendor_secrets_update` in the admin's save_model.
    """

    adapter = forms.ChoiceField(choices=())
    settings = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "class": "vLargeTextField"}),
        help_text="Non-secret settings as a JSON object.",
    )

    class Meta:
        model = Vendor
        fields = (
            "name", "channel", "adapter", "priority", "enabled", "settings", "timeout_seconds",
            "breaker_window_size", "breaker_minimum_calls", "breaker_failure_rate", "breaker_slow_call_seconds",
            "breaker_slow_call_rate", "breaker_open_seconds", "breaker_half_open_trials",
            "rate_limit_per_second", "rate_limit_burst",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["adapter"].choices = adapter_choices()
        self.fields["settings"].help_text = self._settings_help()
        stored = set(secret_names(self.instance.secrets_encrypted)) if self.instance.pk else set()
        for name, used_by in secret_catalogue().items():
            status = "set" if name in stored else "not set"
            self.fields[SECRET_FIELD_PREFIX + name] = forms.CharField(
                label=f"Secret: {name}",
                required=False,
                strip=False,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                help_text=f"Currently {status}. Used by {', '.join(used_by)}. Leave blank to keep the current value.",
            )

    def _settings_help(self) -> str:
        keys = [self.instance.adapter] if self.instance.pk and self.instance.adapter in VENDOR_ADAPTERS else list(VENDOR_ADAPTERS)
        parts = []
        for key in keys:
            cls = adapter_class(key)
            items = format_html_join("", "<li><code>{}</code>: {}</li>", cls.settings_fields.items())
            parts.append(format_html("<strong>{}</strong><ul>{}</ul>", cls.label, items))
        return format_html("Non-secret settings as a JSON object.{}", format_html_join("", "{}", ((p,) for p in parts)))

    @property
    def secret_values(self) -> dict[str, str]:
        """The secrets typed in this submission (blank ones left out: they keep the old value)."""
        return {
            name[len(SECRET_FIELD_PREFIX) :]: value
            for name, value in self.cleaned_data.items()
            if name.startswith(SECRET_FIELD_PREFIX) and value
        }

    def clean_settings(self) -> dict[str, Any]:
        value = self.cleaned_data.get("settings")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Settings must be a JSON object, e.g. {\"host\": \"smtp.example.com\"}.")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        adapter = cleaned.get("adapter")
        if not adapter or "settings" in self.errors:
            return cleaned
        cls = adapter_class(adapter)
        if "channel" in cleaned and cleaned["channel"] != cls.channel:
            self.add_error("adapter", f"{cls.label} sends {cls.channel}, not {cleaned['channel']}.")
        stored = secrets_stored(self.instance.secrets_encrypted) if self.instance.pk else {}
        secrets = {**stored, **self.secret_values}
        for key, message in vendor_config_errors(adapter=adapter, settings=cleaned.get("settings") or {}, secrets=secrets).items():
            if key == "adapter":
                self.add_error("adapter", message)
            elif key in cls.secret_fields:
                self.add_error(SECRET_FIELD_PREFIX + key, f"{key}: {message}")
            else:
                self.add_error("settings", f"{key}: {message}")
        for key, message in vendor_egress_errors(adapter=adapter, settings=cleaned.get("settings") or {}).items():
            self.add_error("settings", f"{key}: {message}")
        if self.instance.pk:
            rebind = vendor_secrets_rebind_errors(
                adapter_before=self.instance.adapter,
                settings_before=self.instance.settings or {},
                adapter_after=adapter,
                settings_after=cleaned.get("settings") or {},
                stored=stored,
                entered=self.secret_values,
            )
            for name, message in rebind.items():
                self.add_error(SECRET_FIELD_PREFIX + name, message)
        return cleaned


class NotificationTemplateAdminForm(forms.ModelForm):
    """Template form: the event type must be registered, and each part must parse (errors name
    the line) and render that event type's sample data within the render budget
    (rendering.template_problems)."""

    class Meta:
        model = NotificationTemplate
        fields = ("event_type", "channel", "locale", "is_active", "subject", "body_text", "body_html")
        widgets = {
            "body_text": forms.Textarea(attrs={"rows": 10, "cols": 90, "class": "vLargeTextField"}),
            "body_html": forms.Textarea(attrs={"rows": 10, "cols": 90, "class": "vLargeTextField"}),
        }

    def clean_event_type(self) -> str:
        name = self.cleaned_data.get("event_type") or ""
        if not EventType.objects.filter(name=name).exists():
            raise forms.ValidationError(f"No event type is called '{name}': register it under Event types first.")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "event_type" in self.errors:
            return cleaned
        errors = template_problems(
            subject=cleaned.get("subject") or "",
            body_text=cleaned.get("body_text") or "",
            body_html=cleaned.get("body_html") or "",
            sample=sample_payload(cleaned.get("event_type") or ""),
        )
        for field, message in errors.items():
            self.add_error(field, message)
        return cleaned


class EventTypeAdminForm(forms.ModelForm):
    """Event type form: the schema must be a valid JSON Schema and the sample must satisfy it
    (EventType.clean, notifications/event_types.py)."""

    class Meta:
        model = EventType
        fields = ("name", "description", "category", "payload_schema", "sample_payload")
        widgets = {
            "payload_schema": forms.Textarea(attrs={"rows": 14, "cols": 90, "class": "vLargeTextField"}),
            "sample_payload": forms.Textarea(attrs={"rows": 14, "cols": 90, "class": "vLargeTextField"}),
        }


class TestMessageForm(forms.Form):
    channel = forms.ChoiceField(choices=Channel.choices, widget=forms.HiddenInput)
    to = forms.CharField(
        label="Send to", max_length=254, help_text="An email address, or a phone number in E.164 (+447911123456)."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        to, channel = cleaned.get("to", ""), cleaned.get("channel")
        if channel == Channel.EMAIL:
            forms.EmailField().clean(to)
        elif channel == Channel.SMS and not (to.startswith("+") and to[1:].isdigit() and 8 <= len(to) <= 16):
            self.add_error("to", "Enter a phone number in E.164, e.g. +447911123456.")
        return cleaned


class RequeueDeadForm(forms.Form):
    since = forms.DateTimeField(
        label="Dead notifications created since",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        initial=lambda: timezone.localtime() - timedelta(hours=24),
        help_text="Server time (UTC). Every dead notification created since then is queued again.",
    )
