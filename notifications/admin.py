"""The operator's admin for vendors, templates and deliveries.

Writes go through the services (template_save, vendor_secrets_update, VendorCircuit.force,
notifications_resend, test_message_send); every forced circuit change, vendor edit and template
edit lands in Django's admin log (LogEntry) with who and when.
"""

from __future__ import annotations

from typing import Any

import redis
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from foundation.masking import address_mask
from notifications import admin_consent, admin_event_types, admin_triggers, admin_views  # noqa: F401 - they register their models
from notifications.admin_forms import (
    SECRET_FIELD_PREFIX,
    NotificationTemplateAdminForm,
    VendorAdminForm,
    secret_catalogue,
)
from notifications.admin_subjects import subject_link, subject_search
from notifications.configuration import template_save, vendor_secrets_update
from notifications.lifecycle import RESENDABLE
from notifications.models import (
    DeliveryAttempt,
    Notification,
    NotificationTemplate,
    NotificationTemplateVersion,
    Vendor,
)
from notifications.operations import duration_text, notifications_resend
from notifications.overview import VendorStats, circuit_label, circuit_snapshot, vendor_stats
from notifications.routing import vendor_circuit

admin.site.site_header = "Beacon operations"
admin.site.site_title = "Beacon admin"
admin.site.index_title = "Vendors, templates and deliveries"
# Beacon has no public site at `/` (it answered 404): no "View site" link.
admin.site.site_url = None


@admin.register(Vendor)
class VendorAdmin(admin.ModelAdmin):
    form = VendorAdminForm
    list_display = ("name", "channel", "adapter", "priority", "enabled", "circuit_state", "success_rate", "median_latency")
    list_display_links = ("name",)
    list_editable = ("priority",)
    list_filter = ("channel", "enabled")
    ordering = ("channel", "priority", "id")
    actions = ("send_test_message", "force_circuit_open", "force_circuit_closed", "circuit_automatic")
    readonly_fields = ("circuit_detail", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "channel", "adapter", "priority", "enabled", "timeout_seconds", "circuit_detail")}),
        ("Settings", {"fields": ("settings",)}),
        ("Secrets (write-only)", {"fields": (), "description": "Values are never shown. Leave blank to keep."}),
        ("Circuit breaker", {"classes": ("collapse",), "fields": (
            "breaker_window_size", "breaker_minimum_calls", "breaker_failure_rate", "breaker_slow_call_seconds",
            "breaker_slow_call_rate", "breaker_open_seconds", "breaker_half_open_trials")}),
        ("Rate limit", {"classes": ("collapse",), "fields": ("rate_limit_per_second", "rate_limit_burst")}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Vendor | None = None) -> Any:
        secrets = tuple(SECRET_FIELD_PREFIX + name for name in secret_catalogue())
        return tuple(
            (title, {**options, "fields": secrets}) if title == "Secrets (write-only)" else (title, options)
            for title, options in self.fieldsets
        )

    def get_form(self, request: HttpRequest, obj: Vendor | None = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["fields"] = None  # the form class declares its fields (secrets are added per instance)
        return super().get_form(request, obj, change, **kwargs)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # One grouped query for every vendor's last-hour numbers, not one per row.
        stats = vendor_stats()
        for vendor in changelist.result_list:
            vendor.stats_last_hour = stats.get(vendor.pk)
        return changelist

    def get_list_display_links(self, request: HttpRequest, list_display: Any) -> Any:
        # Support staff see the list; the edit page (with its secrets form) is for editors only.
        return super().get_list_display_links(request, list_display) if self.has_change_permission(request) else None

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="circuit")
    def circuit_state(self, obj: Vendor) -> str:
        snapshot = circuit_snapshot(obj)
        state = snapshot.state if snapshot else "unavailable"
        # A forced circuit's "by whom and when" wraps within the column, so the list stays narrow.
        return format_html(
            '<span class="circuit circuit-{}" style="display: inline-block; max-width: 14em; white-space: normal">{}</span>',
            state, circuit_label(snapshot),
        )

    @admin.display(description="success (1h)")
    def success_rate(self, obj: Vendor) -> str:
        stats: VendorStats | None = getattr(obj, "stats_last_hour", None)
        return "—" if stats is None or stats.success_rate is None else f"{stats.success_rate:.1f}% of {stats.calls}"

    @admin.display(description="median latency (1h)")
    def median_latency(self, obj: Vendor) -> str:
        stats: VendorStats | None = getattr(obj, "stats_last_hour", None)
        return "—" if stats is None or stats.median_ms is None else f"{stats.median_ms:.0f} ms"

    @admin.display(description="circuit")
    def circuit_detail(self, obj: Vendor) -> str:
        return self.circuit_state(obj) if obj.pk else "—"

    def save_model(self, request: HttpRequest, obj: Vendor, form: VendorAdminForm, change: bool) -> None:
        vendor_secrets_update(vendor=obj, secrets=form.secret_values)
        obj.save()

    @admin.action(description="Send a test message", permissions=["change"])
    def send_test_message(self, request: HttpRequest, queryset: QuerySet[Vendor]) -> HttpResponse | None:
        return admin_views.vendor_test_message_action(self, request, queryset)

    def _force(self, request: HttpRequest, queryset: QuerySet[Vendor], state: str | None, label: str) -> None:
        username = request.user.get_username()
        done = 0
        for vendor in queryset:
            try:
                vendor_circuit(vendor).force(state, by=username)
            except redis.RedisError:
                self.message_user(request, f"{vendor.name}: Redis unavailable, circuit unchanged.", messages.ERROR)
                continue
            self.log_change(request, vendor, f"Circuit {label}.")
            done += 1
        self.message_user(request, f"Circuit {label} for {done} vendor(s).", messages.SUCCESS if done else messages.WARNING)

    @admin.action(description="Open circuit (force: stop sending)", permissions=["change"])
    def force_circuit_open(self, request: HttpRequest, queryset: QuerySet[Vendor]) -> None:
        self._force(request, queryset, "open", "forced open")

    @admin.action(description="Close circuit (force: always send)", permissions=["change"])
    def force_circuit_closed(self, request: HttpRequest, queryset: QuerySet[Vendor]) -> None:
        self._force(request, queryset, "closed", "forced closed")

    @admin.action(description="Circuit automatic (clear override)", permissions=["change"])
    def circuit_automatic(self, request: HttpRequest, queryset: QuerySet[Vendor]) -> None:
        self._force(request, queryset, None, "set to automatic")


class TemplateVersionInline(admin.TabularInline):
    model = NotificationTemplateVersion
    fields = ("version", "saved_by", "saved_at", "subject")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "Version history (restore from the Versions page)"


@admin.register(NotificationTemplate)
class NotificationTemplateAdmin(admin.ModelAdmin):
    form = NotificationTemplateAdminForm
    list_display = ("event_type", "channel", "locale", "version", "active_marker", "updated_at", "preview_link")
    list_filter = ("event_type", "channel", "locale", "is_active")
    search_fields = ("event_type", "locale", "subject", "body_text")
    readonly_fields = ("version", "created_at", "updated_at")
    inlines = (TemplateVersionInline,)
    change_list_template = "admin/notifications/notificationtemplate/change_list.html"
    change_form_template = "admin/notifications/notificationtemplate/change_form.html"

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/preview/", wrap(lambda r, object_id: admin_views.template_preview_view(self, r, object_id)),
                 name="notifications_notificationtemplate_preview"),
            path("<path:object_id>/versions/", wrap(lambda r, object_id: admin_views.template_versions_view(self, r, object_id)),
                 name="notifications_notificationtemplate_versions"),
            path("<path:object_id>/versions/<int:version_id>/restore/",
                 wrap(lambda r, object_id, version_id: admin_views.template_restore_view(self, r, object_id, version_id)),
                 name="notifications_notificationtemplate_restore"),
            *super().get_urls(),
        ]

    @admin.display(description="active", ordering="is_active")
    def active_marker(self, obj: NotificationTemplate) -> str:
        if obj.is_active:
            return format_html('<strong class="template-active">● active</strong>')
        return "inactive"

    @admin.display(description="")
    def preview_link(self, obj: NotificationTemplate) -> str:
        return format_html('<a href="{}">Preview</a>', reverse("admin:notifications_notificationtemplate_preview", args=[obj.pk]))

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), **admin_views.template_coverage_context()})

    def save_model(self, request: HttpRequest, obj: NotificationTemplate, form: Any, change: bool) -> None:
        # template_save, not obj.save(): it bumps the version, snapshots history, invalidates the cache.
        previous = (form.initial.get("event_type"), form.initial.get("channel")) if change else None
        template_save(template=obj, saved_by=request.user.get_username(), previous_key=previous)


class DeliveryAttemptInline(admin.TabularInline):
    """A notification's attempts in the order they happened (first try at the top)."""

    model = DeliveryAttempt
    fields = ("started_at", "vendor", "outcome", "duration", "status_code", "vendor_code", "vendor_message_id",
              "delivery_state", "delivery_code", "receipts", "error")
    readonly_fields = fields
    ordering = ("started_at", "id")
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="duration")
    def duration(self, attempt: DeliveryAttempt) -> str:
        return duration_text(attempt.duration_ms)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("receipts")

    @admin.display(description="receipts")
    def receipts(self, attempt: DeliveryAttempt) -> str:
        """The vendor's receipts in arrival order: status, its code, when the vendor says it happened."""
        return ", ".join(
            f"{receipt.vendor_status}{f' ({receipt.vendor_code})' if receipt.vendor_code else ''}"
            f"{f' at {receipt.occurred_at:%Y-%m-%d %H:%M}' if receipt.occurred_at else ''}"
            for receipt in attempt.receipts.all()
        ) or "—"


class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "event_type", "channel", "masked_recipient", "status", "delivery_state", "vendor",
                    "attempt_count", "possible_duplicate", "order")
    list_filter = ("status", "delivery_state", "channel", "vendor", "event_type", "possible_duplicate",
                   ("created_at", admin.DateFieldListFilter))
    list_select_related = ("vendor", "trigger")
    search_fields = ("recipient",)
    search_help_text = "An order id (or its first characters) or a recipient address."
    date_hierarchy = "created_at"
    inlines = (DeliveryAttemptInline,)
    actions = ("resend", "requeue_dead_since")
    change_list_template = "admin/notifications/notification/change_list.html"
    fieldsets = (
        (None, {"fields": ("status", "vendor", "channel", "recipient", "event_type", "locale", "order", "last_error")}),
        ("Delivery", {"fields": ("attempt_count", "delivery_count", "sent_at", "next_attempt_at", "lease_until",
                                 "vendor_message_id", "possible_duplicate", "delivery_state", "delivery_state_at")}),
        ("Content", {"classes": ("collapse",), "fields": ("template_version", "rendered_subject", "rendered_text", "rendered_html")}),
        ("Identifiers", {"classes": ("collapse",), "fields": ("public_id", "request_id", "created_at", "updated_at")}),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("overview/", wrap(lambda r: admin_views.overview_view(self, r)), name="notifications_overview"),
            path("requeue-dead/", wrap(lambda r: admin_views.requeue_dead_view(self, r)), name="notifications_requeue_dead"),
            *super().get_urls(),
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # read-only: state changes only through resend

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(admin_views.RESEND_PERMISSION)

    @admin.display(description="recipient")
    def masked_recipient(self, obj: Notification) -> str:
        return address_mask(obj.recipient)

    @admin.display(description="order")
    def order(self, obj: Notification) -> str:
        return subject_link(obj.trigger.subject_ref)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(subject_search(term) | Q(recipient__iexact=term) | Q(recipient__icontains=term)), False

    @admin.action(description="Resend (failed or dead only)", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        count = notifications_resend(notification_ids=ids, requested_by=request.user.get_username())
        skipped = len(ids) - count
        note = f"; {skipped} skipped (only {'/'.join(RESENDABLE)} can be resent)" if skipped else ""
        self.message_user(request, f"Queued {count} notification(s) for resending{note}.", messages.SUCCESS if count else messages.WARNING)

    @admin.action(description="Requeue all dead since …", permissions=["resend"])
    def requeue_dead_since(self, request: HttpRequest, queryset: QuerySet[Notification]) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:notifications_requeue_dead"))


admin.site.register(Notification, NotificationAdmin)
