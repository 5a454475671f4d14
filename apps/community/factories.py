"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.community.models import CommunityUser, InteractionKind, PlatformIdentity, UserInteraction
from apps.core.models import Platform


class CommunityUserFactory(DjangoModelFactory[CommunityUser]):
    class Meta:
        model = CommunityUser

    display_name = factory.Faker("name")
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyAttribute(lambda o: o.first_seen_at)


class PlatformIdentityFactory(DjangoModelFactory[PlatformIdentity]):
    class Meta:
        model = PlatformIdentity

    community_user = factory.SubFactory(CommunityUserFactory)
    platform = Platform.X
    external_id = factory.Sequence(lambda n: str(1_400_000_000 + n))
    username = factory.Sequence(lambda n: f"trader_{n}")
    display_name = factory.SelfAttribute("community_user.display_name")


class UserInteractionFactory(DjangoModelFactory[UserInteraction]):
    class Meta:
        model = UserInteraction

    identity = factory.SubFactory(PlatformIdentityFactory)
    community_user = factory.SelfAttribute("identity.community_user")
    platform = factory.SelfAttribute("identity.platform")
    kind = InteractionKind.REPLY
    external_id = factory.Sequence(lambda n: f"msg-{n}")
    text = factory.Faker("sentence", nb_words=12)
    occurred_at = factory.LazyFunction(timezone.now)
