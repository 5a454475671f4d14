"""Live events for the operator dashboard, sent over the channel layer.

Broadcasting is best effort: a dashboard outage (Redis down, layer full) is logged and swallowed, because it
must never break the agent run or request that reported the event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

logger = logging.getLogger(__name__)

DASHBOARD_GROUP = "dashboard"
# The channel-layer message type; consumers handle it in a method named ``live_event``.
LIVE_EVENT_TYPE = "live.event"
# A stalled layer must not hold up the sender for long.
BROADCAST_TIMEOUT = 2.0


def build_message(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message for one event, with the payload made JSON-safe (datetimes as ISO 8601)."""
    # The round trip turns datetimes, decimals and UUIDs into the strings the websocket client will see,
    # and leaves a payload every layer can serialise.
    safe_payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))
    return {
        "type": LIVE_EVENT_TYPE,
        "event": event,
        "payload": safe_payload,
        "sent_at": timezone.now().isoformat(),
    }


async def abroadcast(group: str, event: str, payload: dict[str, Any]) -> None:
    """Send ``event`` to every consumer in ``group``; never raises."""
    try:
        layer = get_channel_layer()
        if layer is None:
            logger.warning("live event %s not sent: no channel layer is configured", event)
            return
        message = build_message(event, payload)
        await asyncio.wait_for(layer.group_send(group, message), BROADCAST_TIMEOUT)
    except Exception:
        logger.exception("live event %s to group %s could not be sent", event, group)


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """daphne's event loop when this process serves with daphne (``daphne`` or ``runserver``) and the caller
    is on another thread; None otherwise."""
    daphne_server = sys.modules.get("daphne.server")
    loop = getattr(daphne_server, "twisted_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop) or not loop.is_running():
        return None
    try:
        on_loop = asyncio.get_running_loop() is loop
    except RuntimeError:
        on_loop = False
    # Waiting on the loop from its own thread would never return.
    return None if on_loop else loop


def broadcast(group: str, event: str, payload: dict[str, Any]) -> None:
    """Send ``event`` to every consumer in ``group`` from synchronous code; never raises.

    With the in-memory channel layer (the embedded default) the sockets live on daphne's loop, and an event
    put there from another thread (the in-process agents) sits unseen until the loop next wakes; so the send
    is made on that loop instead.
    """
    try:
        loop = _server_loop()
        if loop is not None and isinstance(get_channel_layer(), InMemoryChannelLayer):
            asyncio.run_coroutine_threadsafe(abroadcast(group, event, payload), loop).result(
                BROADCAST_TIMEOUT + 1
            )
        else:
            async_to_sync(abroadcast)(group, event, payload)
    except Exception:
        # async_to_sync itself refuses to run inside an event loop thread.
        logger.exception("live event %s to group %s could not be sent", event, group)
