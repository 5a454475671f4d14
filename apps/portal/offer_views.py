"""The tracked link in an offer's direct message (``/o/<token>/``): it records the click on the offer and takes
the visitor to the plans, carrying the offer to checkout so a subscription that follows is credited to it."""

from __future__ import annotations

import uuid

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from apps.billing.selectors import conversion_attempt_get_by_token
from apps.billing.services.conversion import LINK_PREVIEW_AGENTS, conversion_attempt_mark_clicked
from apps.portal.billing_views import OFFER_SESSION_KEY


def _is_link_preview(request: HttpRequest) -> bool:
    # Telegram, Discord and X fetch a link to preview it as soon as the message arrives, and a HEAD is never
    # someone following the link: neither is a click.
    agent = request.headers.get("User-Agent", "").lower()
    return request.method == "HEAD" or any(bot in agent for bot in LINK_PREVIEW_AGENTS)


@require_safe
@never_cache
def offer_click(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    if _is_link_preview(request):
        attempt = conversion_attempt_get_by_token(token=str(token))
    else:
        attempt = conversion_attempt_mark_clicked(token=str(token))
    if attempt is None:
        raise Http404("No such offer.")
    request.session[OFFER_SESSION_KEY] = str(attempt.token)
    return HttpResponseRedirect(f"{reverse('portal:plans')}?{urlencode({'offer': str(attempt.token)})}")
