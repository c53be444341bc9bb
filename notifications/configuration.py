"""Writes of the operator-managed configuration: templates (versioned) and vendors."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from notifications.models import NotificationTemplate, NotificationTemplateVersion, Vendor
from notifications.rendering import template_problems
from notifications.template_cache import template_cache_invalidate
from notifications.template_samples import sample_payload
from notifications.vendor_destinations import vendor_egress_errors, vendor_secrets_rebind_errors
from notifications.vendor_secrets import secrets_encrypt, secrets_stored
from notifications.vendors.registry import VENDOR_ADAPTERS, adapter_class


def template_save(
    *,
    template: NotificationTemplate,
    saved_by: str = "",
    previous_key: tuple[str, str] | None = None,
) -> NotificationTemplate:
    """Validate and save a template as a new version, with a snapshot in its history.

    Raises ValidationError (field -> reason) when a part does not parse ("Line N: ..."), or
    when rendering the event's sample data fails or goes over the render budget. The cache of
    its event and channel (and of the old pair, when `previous_key` says it moved) is
    invalidated once the save commits.
    """
    errors = template_problems(
        subject=template.subject, body_text=template.body_text, body_html=template.body_html,
        sample=sample_payload(template.event_type),
    )
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        if template.pk:
            latest = NotificationTemplate.objects.select_for_update().get(pk=template.pk)
            template.version = latest.version + 1
        template.save()
        NotificationTemplateVersion.objects.create(
            template=template,
            version=template.version,
            subject=template.subject,
            body_text=template.body_text,
            body_html=template.body_html,
            saved_by=saved_by,
        )
        if previous_key and previous_key != (template.event_type, template.channel):
            event_type, channel = previous_key
            transaction.on_commit(lambda: template_cache_invalidate(event_type=event_type, channel=channel))
    return template


def template_version_restore(*, version: NotificationTemplateVersion, saved_by: str = "") -> NotificationTemplate:
    """Make an old version current again (as a new version, so history only grows)."""
    template = version.template
    template.subject, template.body_text, template.body_html = version.subject, version.body_text, version.body_html
    return template_save(template=template, saved_by=saved_by)


def vendor_config_errors(*, adapter: str, settings: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    if adapter not in VENDOR_ADAPTERS:
        return {"adapter": f"Unknown adapter {adapter!r}."}
    return adapter_class(adapter).validate_config(settings, secrets)


def vendor_secrets_update(*, vendor: Vendor, secrets: dict[str, str]) -> None:
    """Merge new secret values into the stored ones; a blank value keeps the old one."""
    merged = {**secrets_stored(vendor.secrets_encrypted), **{k: v for k, v in secrets.items() if v}}
    vendor.secrets_encrypted = secrets_encrypt(merged)


def vendor_upsert(*, name: str, secrets: dict[str, str] | None = None, **fields: Any) -> Vendor:
    """Create or update a vendor by name, checking its adapter configuration.

    Raises ValidationError when the configuration is invalid, when the egress policy refuses
    a destination, or when the change moves the vendor's destination without re-entering its
    stored secrets (vendor_destinations.py).
    """
    vendor = Vendor.objects.filter(name=name).first() or Vendor(name=name)
    adapter_before, settings_before = vendor.adapter, dict(vendor.settings or {})
    stored_before = secrets_stored(vendor.secrets_encrypted)
    for field, value in fields.items():
        setattr(vendor, field, value)
    if vendor.pk:
        rebind = vendor_secrets_rebind_errors(
            adapter_before=adapter_before,
            settings_before=settings_before,
            adapter_after=vendor.adapter,
            settings_after=vendor.settings or {},
            stored=stored_before,
            entered={k: v for k, v in (secrets or {}).items() if v},
        )
        if rebind:
            raise ValidationError(rebind)
    if secrets is not None:
        vendor_secrets_update(vendor=vendor, secrets=secrets)
    errors = vendor_config_errors(
        adapter=vendor.adapter, settings=vendor.settings, secrets=secrets_stored(vendor.secrets_encrypted)
    ) or vendor_egress_errors(adapter=vendor.adapter, settings=vendor.settings)
    if errors:
        raise ValidationError(errors)
    vendor.full_clean(exclude=["adapter"])
    vendor.save()
    return vendor
