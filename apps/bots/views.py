"""Inbound webhooks of the bots."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.bots.telegram import telegram_update_receive
from apps.core.jsonsafe import JsonTooDeep

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def telegram_webhook(request: HttpRequest, secret: str) -> HttpResponse:
    """Telegram's updates for the bot. Both the path and the header Telegram sets (``setWebhook``'s
    ``secret_token``) must carry ``TELEGRAM_WEBHOOK_SECRET``; then every update is answered 200 at once, so
    Telegram never redelivers one we have, and is handled after commit."""
    expected = settings.TELEGRAM_WEBHOOK_SECRET
    path_ok = constant_time_compare(secret, expected)
    header_ok = constant_time_compare(request.headers.get("X-Telegram-Bot-Api-Secret-Token", ""), expected)
    if not (expected and path_ok and header_ok):
        logger.warning("telegram webhook: refused a request without the secret")
        return HttpResponseForbidden()
    try:
        telegram_update_receive(payload=request.body)
    except JsonTooDeep as exc:
        logger.warning("telegram webhook: refused a body: %s", exc)
        return JsonResponse({"error": str(exc)}, status=400)
    return HttpResponse(status=200)
