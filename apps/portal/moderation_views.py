"""The member's appeals: the account page lists the moderation actions taken against them, each with an
"appeal" button while it can be appealed; this view opens the appeal (the moderation services decide)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from apps.accounts.models import User
from apps.community.models import CommunityUser
from apps.moderation.models import AppealSource
from apps.moderation.services.appeals import AppealRefused, appeal_open


@require_POST
@login_required
def appeal_create(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login_required guarantees a real user
    community_user = CommunityUser.objects.filter(portal_user=user).first()
    action_id = request.POST.get("action_id", "")
    if community_user is None or not action_id.isdigit():
        messages.error(request, "There is no such moderation action.")
        return redirect("portal:account")
    try:
        appeal_open(
            action_id=int(action_id),
            community_user=community_user,
            message=request.POST.get("message", ""),
            source=AppealSource.PORTAL,
        )
    except AppealRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(
            request, "Your appeal is with the moderators. We will message you with their decision."
        )
    return redirect("portal:account")
