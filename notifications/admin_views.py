"""Custom pages of the operator's admin: template preview and versions, action forms, overview.

Each view takes the ModelAdmin it belongs to (for its site context, permissions and LogEntry
helpers) and calls a service from configuration.py / operations.py, or a read from overview.py.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from notifications import overview_series, svg_charts
from notifications.admin_forms import RequeueDeadForm, TestMessageForm
from notifications.configuration import template_version_restore
from notifications.email_document import email_html_document
from notifications.models import Channel, NotificationTemplate, NotificationTemplateVersion
from notifications.operations import notifications_requeue_dead, vendor_test_message_send
from notifications.overview import circuit_snapshot, overview, template_coverage
from notifications.rendering import TemplateRenderError, template_render
from notifications.template_cache import locale_chain
from notifications.template_samples import sample_payload

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

RESEND_PERMISSION = "notifications.resend_notification"
# The overview reloads itself this often (seconds); `?refresh=` may ask within the bounds.
OVERVIEW_REFRESH_SECONDS = 30
OVERVIEW_REFRESH_BOUNDS = (2, 3600)
# Locales offered in the preview besides those that have templates (show the fallbacks at work).
PREVIEW_EXTRA_LOCALES = ("en", "pt", "pt-BR")

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
                context=sample_payload(template.event_type, locale), locale=locale,
            )
            # The HTML exactly as the email carries it (a whole document in that locale).
            rendered = dataclasses.replace(
                rendered, html=email_html_document(body_html=rendered.html, subject=rendered.subject, locale=locale)
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
        sample=sample_payload(template.event_type, locale),
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
    """Ask for an address, then send a test message through exactly the one selected vendor
    (no routing, no fallback) and say what that vendor answered."""
    vendors = list(queryset[:2])
    if len(vendors) != 1:
        model_admin.message_user(request, "Select exactly one vendor to send a test message through.", messages.ERROR)
        return None
    vendor = vendors[0]
    form = TestMessageForm(request.POST if "apply" in request.POST else None, initial={"channel": vendor.channel})
    if form.is_valid():
        answer = vendor_test_message_send(vendor=vendor, to=form.cleaned_data["to"], requested_by=request.user.get_username())
        url = reverse("admin:notifications_notification_change", args=[answer.notification_id])
        model_admin.message_user(
            request,
            format_html('Test message: {} <a href="{}">Notification #{}</a>.', answer.summary(), url, answer.notification_id),
            messages.SUCCESS if answer.accepted else messages.ERROR,
        )
        return None
    snapshot = circuit_snapshot(vendor)
    context = _context(
        model_admin, request,
        title=f"Send a test {vendor.channel} message through {vendor.name}",
        form=form,
        vendor=vendor,
        circuit=snapshot,
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
    """The overview's tables and last-hour charts; the page reloads itself every
    OVERVIEW_REFRESH_SECONDS (`?refresh=N` for N seconds within bounds, `?refresh=0` to pause)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    numbers = overview()
    context = _context(
        model_admin, request, title="Beacon overview", refresh_seconds=_refresh_seconds(request),
        charts=overview_charts(vendors=[vendor for vendor, *_ in numbers["vendors"]]), **numbers,
    )
    return TemplateResponse(request, "admin/notifications/overview.html", context)


def _refresh_seconds(request: HttpRequest) -> int:
    """The reload interval asked for, clamped to OVERVIEW_REFRESH_BOUNDS; 0 pauses it."""
    asked = request.GET.get("refresh", "")
    if not asked.isascii() or not asked.isdigit():
        return OVERVIEW_REFRESH_SECONDS
    seconds = int(asked[:6])
    low, high = OVERVIEW_REFRESH_BOUNDS
    return 0 if seconds == 0 else min(max(seconds, low), high)


def overview_charts(*, vendors: list) -> list[tuple[str, SafeString]]:
    """The last hour, minute by minute, as three inline SVG charts (drawn here, no script)."""
    now = timezone.now()
    channels = sorted({vendor.channel for vendor in vendors}) or [c.value for c in Channel]
    titles = ("Checkouts per minute", "Deliveries per minute, by channel", "Vendor latency, median per minute")
    return list(zip(titles, [
        svg_charts.stacked_bars(
            overview_series.checkouts_per_minute(now=now), chart_id="chart-checkouts", title=titles[0], unit="/min",
        ),
        svg_charts.stacked_bars(
            overview_series.deliveries_per_minute(now=now, channels=channels),
            chart_id="chart-deliveries", title=titles[1], unit="/min",
        ),
        svg_charts.lines(
            overview_series.vendor_latency_per_minute(now=now, vendors=[vendor.name for vendor in vendors]),
            chart_id="chart-latency", title=titles[2], unit="ms",
        ),
    ], strict=True))
