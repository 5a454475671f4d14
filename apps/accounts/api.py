"""The member's own account over the API: who they are, what they pay for and what they may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import User
from apps.accounts.selectors import user_get_profile
from apps.accounts.services import user_update_display_name
from apps.billing.models import Entitlement, Plan, Subscription
from apps.billing.selectors import entitlement_list_active, member_access_state, subscription_get_latest
from apps.community.models import PlatformIdentity
from apps.core.api import JSONParser

DISPLAY_NAME_MAX_LENGTH = User._meta.get_field("display_name").max_length
# The values of billing's member_access_state, "anonymous" aside: /me/ always has a member.
ACCESS_STATES = ["free", "trialing", "active", "past_due_grace", "past_due_expired", "canceled"]


@dataclass(frozen=True)
class Profile:
    """Everything ``/me/`` shows, gathered from accounts, community and billing."""

    user: User
    identities: list[PlatformIdentity]
    subscription: Subscription | None
    entitlements: list[Entitlement]
    access_state: str


def _profile_get(*, user_id: int) -> Profile:
    user = user_get_profile(user_id=user_id)
    # A reverse one-to-one that does not exist raises; the member simply has not linked a community account.
    community_user = getattr(user, "community_user", None)
    return Profile(
        user=user,
        identities=list(community_user.identities.all()) if community_user is not None else [],
        subscription=subscription_get_latest(user=user),
        entitlements=list(entitlement_list_active(user=user)),
        access_state=member_access_state(user=user),
    )


def _member_id(request: Request) -> int:
    user = request.user
    assert isinstance(user, User)  # IsAuthenticated has let only a real user through
    return user.pk


class CommunityIdentitySerializer(serializers.ModelSerializer[PlatformIdentity]):
    class Meta:
        model = PlatformIdentity
        fields = ["platform", "username"]
        read_only_fields = fields


class PlanSummarySerializer(serializers.ModelSerializer[Plan]):
    class Meta:
        model = Plan
        fields = ["slug", "name"]
        read_only_fields = fields


class MemberSubscriptionSerializer(serializers.ModelSerializer[Subscription]):
    plan = PlanSummarySerializer(read_only=True)

    class Meta:
        model = Subscription
        fields = ["plan", "status", "current_period_end", "cancel_at_period_end"]
        read_only_fields = fields


class MemberEntitlementSerializer(serializers.ModelSerializer[Entitlement]):
    class Meta:
        model = Entitlement
        fields = ["key", "source", "starts_at", "ends_at"]
        read_only_fields = fields


class MeSerializer(serializers.Serializer[Profile]):
    id = serializers.IntegerField(source="user.id", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    display_name = serializers.CharField(source="user.display_name", read_only=True)
    date_joined = serializers.DateTimeField(source="user.date_joined", read_only=True)
    community_identities = CommunityIdentitySerializer(
        source="identities",
        many=True,
        read_only=True,
        help_text="The platform accounts of the member's linked community record; empty when none is linked",
    )
    subscription = MemberSubscriptionSerializer(
        read_only=True, allow_null=True, help_text="The member's latest subscription, whatever its status"
    )
    entitlements = MemberEntitlementSerializer(many=True, read_only=True, help_text="Only those in force now")
    access_state = serializers.ChoiceField(
        choices=ACCESS_STATES,
        read_only=True,
        help_text="What the membership amounts to now, for display; access itself follows the entitlements",
    )


class StrictCharField(serializers.CharField):
    """A CharField that takes only strings: DRF's turns a JSON number or true into text, so ``{"display_name": 0}``
    would rename the member "0" although the schema says the field is a string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class MeUpdateSerializer(serializers.Serializer[dict[str, Any]]):
    """The one field a member may change here; anything else in the body is refused, not ignored."""

    display_name = StrictCharField(required=False, allow_blank=True, max_length=DISPLAY_NAME_MAX_LENGTH)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["This field cannot be changed."] for name in unknown})
        return attrs


_NOT_AUTHENTICATED = OpenApiResponse(description="No valid session or token was sent.")


@extend_schema(tags=["me"])
class MeView(APIView):
    """The authenticated member's own profile. Never public: it shows billing state."""

    permission_classes = [IsAuthenticated]
    # JSON only: one text field needs no forms, and a multipart body the parser cannot read would pass for an
    # empty, valid change.
    parser_classes = [JSONParser]
    http_method_names = ["get", "patch", "head", "options"]

    @extend_schema(summary="Get my profile", responses={200: MeSerializer, 403: _NOT_AUTHENTICATED})
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(_profile_get(user_id=_member_id(request))).data)

    @extend_schema(
        summary="Change my display name",
        request=MeUpdateSerializer,
        responses={
            200: MeSerializer,
            400: OpenApiResponse(description="The display name is too long, or another field was sent."),
            403: _NOT_AUTHENTICATED,
        },
    )
    def patch(self, request: Request) -> Response:
        changes = MeUpdateSerializer(data=request.data)
        changes.is_valid(raise_exception=True)
        if "display_name" in changes.validated_data:
            user_update_display_name(
                user_id=_member_id(request), display_name=changes.validated_data["display_name"]
            )
        return Response(MeSerializer(_profile_get(user_id=_member_id(request))).data)
