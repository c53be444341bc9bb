"""The outbox in the operator's admin: triggers, read-only, with the dead ones easy to find.

A dead trigger (it kept failing to dispatch, see dead_triggers.py) shows why in `last_error`;
"Dispatch again" hands it back to the relay once the cause is fixed (a template, a vendor).
Payloads and addresses stay out of these pages: they hold customer data.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications.admin_views import RESEND_PERMISSION
from notifications.dead_triggers import triggers_redispatch
from notifications.models import NotificationTrigger


class TriggerStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("dead", "Dead (gave up dispatching)"), ("waiting", "Waiting to dispatch"), ("dispatched", "Dispatched")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "dead":
            return queryset.filter(dead_at__isnull=False, dispatched_at__isnull=True)
        if self.value() == "waiting":
            return queryset.filter(dead_at__isnull=True, dispatched_at__isnull=True)
        if self.value() == "dispatched":
            return queryset.filter(dispatched_at__isnull=False)
        return queryset


@admin.register(NotificationTrigger)
class NotificationTriggerAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "event_type", "locale", "state", "publish_count", "dispatch_attempts", "error")
    list_filter = (TriggerStateFilter, "event_type")
    search_fields = ("subject_ref",)
    search_help_text = "A subject such as order:<order id> (or its first characters)."
    date_hierarchy = "created_at"
    actions = ("dispatch_again",)
    fields = (
        "event_type", "locale", "subject_ref", "request_id", "created_at", "relay_after", "publish_count",
        "dispatch_attempts", "dispatched_at", "dead_at", "last_error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the outbox is written by checkouts; operators only dispatch again

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RESEND_PERMISSION)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        return (queryset.filter(subject_ref__istartswith=term), False) if term else (queryset, False)

    @admin.display(description="state")
    def state(self, obj: NotificationTrigger) -> str:
        if obj.dispatched_at is not None:
            return "dispatched"
        return "dead" if obj.dead_at is not None else "waiting"

    @admin.display(description="last error")
    def error(self, obj: NotificationTrigger) -> str:
        return obj.last_error[:120]

    @admin.action(description="Dispatch again (dead only)", permissions=["resend"])
    def dispatch_again(self, request: HttpRequest, queryset: QuerySet[NotificationTrigger]) -> None:
        dead = list(queryset.filter(dead_at__isnull=False, dispatched_at__isnull=True))
        count = triggers_redispatch(trigger_ids=[trigger.pk for trigger in dead], requested_by=request.user.get_username())
        for trigger in dead:
            self.log_change(request, trigger, "Dispatched again after it was dead.")
        self.message_user(request, f"Handed {count} dead trigger(s) to the relay again.", messages.SUCCESS if count else messages.WARNING)
