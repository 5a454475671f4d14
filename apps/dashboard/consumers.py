"""The operator dashboard's websocket: live events pushed to staff browsers."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.core.live import DASHBOARD_GROUP

# 4000-4999 are free for applications; 4403 reads as HTTP's Forbidden.
CLOSE_FORBIDDEN = 4403


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """Read-only: staff receive events; anything the browser sends is ignored."""

    joined = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Joined here rather than through ``groups``, which would add refused sockets too.
        await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)
            self.joined = False

    async def live_event(self, message: dict[str, Any]) -> None:
        await self.send_json(
            {"event": message["event"], "payload": message["payload"], "sent_at": message["sent_at"]}
        )
