"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from apps.accounts.models import User


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"member{n}@example.com")
    display_name = factory.Faker("name")
    password = factory.django.Password("correct-horse-battery")

    class Params:
        staff = factory.Trait(is_staff=True, is_superuser=True)
