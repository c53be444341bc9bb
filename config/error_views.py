"""Error pages: under `/api/` they are JSON in the API's error shape, elsewhere Django's own."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: an API client asking for an unknown route gets JSON, not an HTML page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "not_found", "message": "No such API route."}}, status=404)
    return page_not_found(request, exception)
