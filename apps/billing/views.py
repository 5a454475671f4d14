"""Stripe's webhook endpoint: verify, store, answer; the processing happens in a task after commit."""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing.services.webhooks import StripeWebhookRejected, stripe_event_ingest
from apps.core import metrics

logger = logging.getLogger(__name__)


@csrf_exempt  # Stripe cannot send a CSRF token; the signature is what authenticates the request.
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = stripe_event_ingest(
            payload=request.body, signature_header=request.headers.get("Stripe-Signature")
        )
    except StripeWebhookRejected as exc:
        logger.warning("stripe webhook rejected: %s", exc)
        metrics.stripe_webhook_received(outcome="rejected")
        return JsonResponse({"error": "invalid Stripe webhook"}, status=400)
    return JsonResponse({"received": True, "id": event.stripe_id})
