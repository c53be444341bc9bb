"""Error pages: under `/api/` they are JSON in the API's error shape, elsewhere Django's own."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.defaults import page_not_found

from foundation.api_errors import api_error_response, is_api_request


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: an API client asking for an unknown route gets JSON, not an HTML page."""
    if is_api_request(request):
        return api_error_response("not_found", "No such API resource.")
    return page_not_found(request, exception)
