"""Request-wide middleware: each request gets an id (the caller's ``X-Request-ID`` if it is sane), logged and
returned; each response gets the site's Content-Security-Policy."""

from __future__ import annotations

import functools
import re
import secrets
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.core.logging import request_id_var

_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    header = "X-Request-ID"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(self.header, "")
        request_id = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[self.header] = request_id
        return response


# Scripts only from our own origin, or inline with this response's nonce; everything else from our own origin.
# Styles may be inline: Swagger UI and ReDoc write style attributes and <style> elements from their scripts, and
# a nonce in style-src would make browsers ignore 'unsafe-inline'. Images may be data: URIs (Swagger UI's icons),
# and ReDoc runs its search in a worker made from a blob: URL. 'self' covers the dashboard's websocket to the same
# host. Nothing may frame the site.
BASE_POLICY: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "worker-src": ["'self'", "blob:"],
    "frame-src": ["'none'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Static files served from another origin (a CDN in STATIC_URL) are trusted like our own.
_STATIC_DIRECTIVES = ("script-src", "style-src", "img-src", "font-src")


def csp_update(
    **directives: list[str],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Widen the policy for one view's responses: ``@csp_update(script_src=["https://telegram.org"])``."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            response = view(request, *args, **kwargs)
            extra = getattr(response, "csp_update", {})
            for name, sources in directives.items():
                extra.setdefault(name.replace("_", "-"), []).extend(sources)
            response.csp_update = extra  # type: ignore[attr-defined]
            return response

        return wrapped

    return decorate


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


class ContentSecurityPolicyMiddleware:
    """Sets ``Content-Security-Policy`` on every response that has none, with a fresh nonce per request
    (``request.csp_nonce``, for ``<script nonce="{{ request.csp_nonce }}">``)."""

    header = "Content-Security-Policy"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = {name: list(sources) for name, sources in BASE_POLICY.items()}
        if static_origin := _origin(settings.STATIC_URL or ""):
            for name in _STATIC_DIRECTIVES:
                self.policy[name].append(static_origin)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        nonce = secrets.token_urlsafe(18)
        request.csp_nonce = nonce  # type: ignore[attr-defined]
        response = self.get_response(request)
        # Django's debug error page (DEBUG only) works with inline scripts of its own.
        if settings.DEBUG and response.status_code == 500:
            return response
        if self.header not in response:
            response[self.header] = self.render(nonce, getattr(response, "csp_update", {}))
        return response

    def render(self, nonce: str, update: dict[str, list[str]]) -> str:
        policy = {name: list(sources) for name, sources in self.policy.items()}
        policy["script-src"].append(f"'nonce-{nonce}'")
        for name, sources in update.items():
            kept = [source for source in policy.get(name, []) if source != "'none'"]
            policy[name] = kept + [source for source in sources if source not in kept]
        return "; ".join(" ".join([name, *sources]) for name, sources in policy.items())
