"""Who may read the OpenAPI schema (/api/schema/) and the docs (/api/docs/): API_DOCS_ACCESS.

- "authenticated" (default): an API client (its key, as for every other route) or a staff
  member signed in to the admin (so the docs open in a browser);
- "public": anyone (the schema names routes and fields, no data);
- "off": nobody (404).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from checkout.models import ApiClient

API_DOCS_ACCESS_CHOICES = ("authenticated", "public", "off")


class ApiDocsAccess(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        access = settings.API_DOCS_ACCESS
        if access == "public":
            return True
        if access == "off":
            raise NotFound("No such API route.")
        user = request.user
        return isinstance(user, ApiClient) or bool(user and user.is_active and user.is_staff)
