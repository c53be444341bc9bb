"""Event types in the operator's admin: register what systems may notify about, with the
JSON Schema of its data and the sample its templates are previewed with.

A save is refused (with the reason, on the field) when the schema is not a valid JSON Schema
or the sample does not satisfy it (EventType.clean). The change page lists the event type's
templates per channel and locale, each with its preview. The support group views only.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from notifications.admin_forms import EventTypeAdminForm
from notifications.models import EventType, NotificationTemplate


@admin.register(EventType)
class EventTypeAdmin(admin.ModelAdmin):
    form = EventTypeAdminForm
    list_display = ("name", "category", "description", "template_count", "updated_at")
    list_filter = ("category",)
    search_fields = ("name", "description")
    readonly_fields = ("templates", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "description", "category")}),
        ("Data", {"fields": ("payload_schema", "sample_payload")}),
        ("Templates", {"fields": ("templates",)}),
        ("Timestamps", {"classes": ("collapse",), "fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        # Templates and triggers refer to an event type by name: renaming one would orphan them.
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "name") if obj is not None else fields

    @admin.display(description="templates")
    def template_count(self, obj: EventType) -> int:
        return NotificationTemplate.objects.filter(event_type=obj.name, is_active=True).count()

    @admin.display(description="active templates")
    def templates(self, obj: EventType) -> str:
        if obj.pk is None:
            return "—"
        rows = NotificationTemplate.objects.filter(event_type=obj.name, is_active=True).order_by("channel", "locale")
        add = reverse("admin:notifications_notificationtemplate_add") + f"?event_type={obj.name}"
        items = format_html_join(
            "",
            '<li>{} / {} v{} — <a href="{}">edit</a> · <a href="{}">preview</a></li>',
            (
                (row.channel, row.locale, row.version,
                 reverse("admin:notifications_notificationtemplate_change", args=[row.pk]),
                 reverse("admin:notifications_notificationtemplate_preview", args=[row.pk]))
                for row in rows
            ),
        )
        return format_html('<ul>{}</ul><a href="{}">Add a template for this event type</a>', items or "none yet", add)
