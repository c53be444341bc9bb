"""Custom pages of the operator's admin: template preview and versions, action forms, overview.

Each view takes the ModelAdmin it belongs to (for its site context, permissions and LogEntry
helpers) and calls a service from configuration.py / operations.py, or a read from overview.py.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from notifications.admin_forms import RequeueDeadForm, TestMessageForm
from notifications.configuration import template_version_restore
from notifications.models import NotificationTemplate, NotificationTemplateVersion
from notifications.operations import notifications_requeue_dead, test_message_send
from notifications.overview import overview, template_coverage
from notifications.rendering import TemplateRenderError, template_render
from notifications.template_cache import locale_chain
from notifications.template_samples import sample_payload

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

RESEND_PERMISSION = "notifications.resend_notification"
# Locales offered in the preview besides those that have templates (show the fallbacks at work).
PREVIEW_EXTRA_LOCALES = ("en", "pt", "pt-BR")

_EMAIL = re.compile(r"^(.)[^@]*@(.+)$")


def recipient_mask(address: str) -> str:
    """`+447911123321` -> `+4479•••••321`, `john@example.com` -> `j•••@example.com`."""
    match = _EMAIL.match(address)
    if match:
        return f"{match.group(1)}•••@{match.group(2)}"
    if address.startswith("+") and address[1:].isdigit():
        digits = address[1:]
        keep_head, keep_tail = min(4, max(0, len(digits) - 6)), 3 if len(digits) > 6 else 1
        hidden = len(digits) - keep_head - keep_tail
        return f"+{digits[:keep_head]}{'•' * hidden}{digits[len(digits) - keep_tail:]}"
    return address[:1] + "•••" if address else ""


def _context(model_admin: ModelAdmin, request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {**model_admin.admin_site.each_context(request), "opts": model_admin.model._meta, **extra}


def template_preview_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """Render the template (or, for another locale, the active template that locale resolves to)."""
    template = get_object_or_404(NotificationTemplate, pk=object_id)
    if not model_admin.has_view_permission(request, template):
        raise PermissionDenied
    locale = request.GET.get("locale") or template.locale
    siblings = {
        t.locale: t
        for t in NotificationTemplate.objects.filter(event_type=template.event_type, channel=template.channel, is_active=True)
    }
    shown = template if locale == template.locale else next((siblings[c] for c in locale_chain(locale) if c in siblings), None)
    rendered, error = None, ""
    if shown is not None:
        try:
            rendered = template_render(
                subject=shown.subject, body_text=shown.body_text, body_html=shown.body_html,
                context=sample_payload(template.event_type),
            )
        except TemplateRenderError as exc:
            error = str(exc)
    context = _context(
        model_admin, request,
        title=f"Preview: {template}",
        original=template,
        locale=locale,
        locales=sorted(set(siblings) | set(PREVIEW_EXTRA_LOCALES) | {template.locale}),
        shown=shown,
        falls_back=shown is not None and shown.locale != locale,
        rendered=rendered,
        error=error,
        sample=sample_payload(template.event_type),
    )
    return TemplateResponse(request, "admin/notifications/notificationtemplate/preview.html", context)


def template_versions_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    template = get_object_or_404(NotificationTemplate, pk=object_id)
    if not model_admin.has_view_permission(request, template):
        raise PermissionDenied
    context = _context(
        model_admin, request,
        title=f"Versions of {template}",
        original=template,
        versions=template.versions.all(),
        can_restore=model_admin.has_change_permission(request, template),
    )
    return TemplateResponse(request, "admin/notifications/notificationtemplate/versions.html", context)


def template_restore_view(model_admin: ModelAdmin, request: HttpRequest, object_id: str, version_id: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    version = get_object_or_404(NotificationTemplateVersion, pk=version_id, template_id=object_id)
    if not model_admin.has_change_permission(request, version.template):
        raise PermissionDenied
    try:
        template = template_version_restore(version=version, saved_by=request.user.get_username())
    except ValidationError as exc:  # the old version does not render within today's budget
        reasons = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
        messages.error(request, f"Version {version.version} cannot be restored: {reasons}")
        return HttpResponseRedirect(reverse("admin:notifications_notificationtemplate_versions", args=[object_id]))
    model_admin.log_change(request, template, f"Restored version {version.version} as version {template.version}.")
    messages.success(request, f"Version {version.version} restored as version {template.version}.")
    return HttpResponseRedirect(reverse("admin:notifications_notificationtemplate_change", args=[template.pk]))


def template_coverage_context() -> dict[str, Any]:
    return {"coverage": template_coverage()}


def vendor_test_message_action(model_admin: ModelAdmin, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
    """Ask for an address, then queue a test message through the channel's normal routing."""
    channels = sorted(set(queryset.values_list("channel", flat=True)))
    if len(channels) != 1:
        model_admin.message_user(request, "Select vendors of one channel to send a test message.", messages.ERROR)
        return None
    form = TestMessageForm(request.POST if "apply" in request.POST else None, initial={"channel": channels[0]})
    if form.is_valid():
        notification = test_message_send(
            channel=form.cleaned_data["channel"], to=form.cleaned_data["to"], requested_by=request.user.get_username()
        )
        url = reverse("admin:notifications_notification_change", args=[notification.pk])
        model_admin.message_user(
            request, format_html('Test message queued: <a href="{}">notification #{}</a>.', url, notification.pk), messages.SUCCESS
        )
        return None
    context = _context(
        model_admin, request,
        title=f"Send a test {channels[0]} message",
        form=form,
        vendors=list(queryset),
        action="send_test_message",
        action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
    )
    return TemplateResponse(request, "admin/notifications/vendor/test_message.html", context)


def requeue_dead_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    """Intermediate form: a datetime; then every dead notification created since is queued again."""
    if not request.user.has_perm(RESEND_PERMISSION):
        raise PermissionDenied
    form = RequeueDeadForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        count = notifications_requeue_dead(since=form.cleaned_data["since"], requested_by=request.user.get_username())
        model_admin.message_user(request, f"Queued {count} dead notification(s) again.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:notifications_notification_changelist"))
    context = _context(model_admin, request, title="Requeue dead notifications", form=form)
    return TemplateResponse(request, "admin/notifications/notification/requeue_dead.html", context)


def overview_view(model_admin: ModelAdmin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context = _context(model_admin, request, title="Beacon overview", **overview())
    return TemplateResponse(request, "admin/notifications/overview.html", context)
