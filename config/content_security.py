"""Content-Security-Policy on every HTML page Beacon serves (the admin, the API docs).

The admin shows operator-written HTML (template previews, in a sandboxed iframe) and will show
more; a CSP makes an injection there unable to run script or send data elsewhere. Scripts
and styles must come from Beacon itself ('self': the admin's static files and the self-hosted
Swagger UI, which is served with its init script as a separate file); inline <script> is
refused. Inline style attributes are allowed (the admin and server-drawn SVG charts use them).
JSON answers carry no policy: a browser does not render them.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and HEADER not in response and response.get("Content-Type", "").startswith("text/html"):
            response[HEADER] = policy
        return response
