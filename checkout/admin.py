"""Orders in the operator's admin: read-only, with their lines and their notifications."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from checkout.models import Order, OrderLine
from foundation.masking import address_mask
from money.formatting import money_format
from notifications.admin_subjects import subject_link_register
from notifications.models import Notification


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OrderLineInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderLine
    fields = ("sku", "name", "quantity", "unit_price_shown", "line_total_shown")
    readonly_fields = fields
    extra = 0

    # Amounts as the customer read them in their email (the same formatter as the templates).
    @admin.display(description="unit price")
    def unit_price_shown(self, line: OrderLine) -> str:
        return money_format(line.unit_price, line.order.currency, line.order.customer_locale)

    @admin.display(description="line total")
    def line_total_shown(self, line: OrderLine) -> str:
        return money_format(line.line_total, line.order.currency, line.order.customer_locale)


@admin.register(Order)
class OrderAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "created_at", "status", "total_shown", "currency", "client", "customer_locale")
    list_filter = ("status", "currency", "client", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("client",)
    search_fields = ("=id", "payment_reference")
    date_hierarchy = "created_at"
    inlines = (OrderLineInline,)
    fields = (
        "id", "status", "client", "currency", "total_shown", "customer_name", "customer_email", "customer_phone",
        "customer_locale", "payment_reference", "payment_error", "created_at", "notifications",
    )
    readonly_fields = fields

    @admin.display(description="total", ordering="total")
    def total_shown(self, order: Order) -> str:
        """The total as the customer read it (their locale, the currency's minor units)."""
        return money_format(order.total, order.currency, order.customer_locale)

    @admin.display(description="notifications")
    def notifications(self, obj: Order) -> str:
        # Notifications link to orders by their trigger's subject_ref, not a foreign key.
        rows = (
            Notification.objects.filter(trigger__subject_ref=f"order:{obj.pk}")
            .select_related("vendor")
            .order_by("created_at", "id")
        )
        if not rows:
            return "none"
        body = format_html_join(
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:notifications_notification_change", args=[n.pk]), n.pk, n.event_type, n.channel,
                    address_mask(n.recipient), n.status, n.vendor.name if n.vendor else "—", n.sent_at or "—",
                )
                for n in rows
            ),
        )
        return format_html(
            '<table class="order-notifications"><thead><tr><th>id</th><th>event</th><th>channel</th><th>recipient</th>'
            "<th>status</th><th>vendor</th><th>sent at</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )


# A notification about an order links to this page (notifications' admin names no checkout URL).
subject_link_register(kind="order", url_for=lambda order_id: reverse("admin:checkout_order_change", args=[order_id]))
