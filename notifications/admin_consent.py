"""The suppression list in the operator's admin: operators see, add, edit and remove entries;
the support group views them only (its permissions, migration 0005).

Addresses are masked in the list; searching takes a whole address (it is matched by its hash,
so an erased entry is found too). An entry an operator adds is stored as consent.py stores any
other (normalised, hashed).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from foundation.masking import address_mask
from notifications.consent import address_hash, address_normalize
from notifications.models import Channel, Suppression, SuppressionSource


class SuppressionAdminForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ("channel", "address", "scope", "note")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        channel, address = cleaned.get("channel"), (cleaned.get("address") or "").strip()
        if not address:
            self.add_error("address", "Enter the address to suppress.")
        elif channel == Channel.EMAIL:
            try:
                forms.EmailField().clean(address)
            except forms.ValidationError as exc:
                self.add_error("address", exc)
        elif channel == Channel.SMS and not (address.startswith("+") and address[1:].isdigit() and 8 <= len(address) <= 16):
            self.add_error("address", "Enter a phone number in E.164, e.g. +447911123456.")
        if channel and address and not self.errors:
            digest = address_hash(channel=channel, address=address)
            taken = Suppression.objects.filter(channel=channel, address_hash=digest, scope=cleaned.get("scope"))
            if taken.exclude(pk=self.instance.pk).exists():
                self.add_error("address", "This address is already suppressed with this scope.")
        return cleaned


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionAdminForm
    list_display = ("masked_address", "channel", "scope", "source", "created_at")
    list_filter = ("channel", "scope", "source")
    search_fields = ("address",)  # replaced by an exact match on the hash below
    search_help_text = "A whole email address or phone number (E.164)."
    readonly_fields = ("source", "address_hash", "created_at")

    @admin.display(description="address")
    def masked_address(self, obj: Suppression) -> str:
        return address_mask(obj.address) if obj.address else "(erased)"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        hashes = [address_hash(channel=channel, address=term) for channel in Channel.values]
        return queryset.filter(address_hash__in=hashes), False

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        obj.address = address_normalize(channel=obj.channel, address=obj.address)
        obj.address_hash = address_hash(channel=obj.channel, address=obj.address)
        if not change:
            obj.source = SuppressionSource.OPERATOR
        obj.save()
