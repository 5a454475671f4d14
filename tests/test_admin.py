"""The operator admin: every registered model's pages render, changelists and autocomplete cost a fixed number
of queries however many rows they show, logs are read-only, and the actions change only what they should."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialApp
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission
from django.contrib.sites.models import Site
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from rest_framework.authtoken.models import Token, TokenProxy

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.agents.factories import (
    AgentConfigFactory,
    AgentRunFactory,
    PerformanceSnapshotFactory,
    PipelineRunFactory,
)
from apps.agents.models import (
    AgentConfig,
    AgentRun,
    AgentRunStatus,
    DeferredTask,
    PerformanceSnapshot,
    PipelineRun,
)
from apps.billing.factories import (
    BillingCustomerFactory,
    ConversionAttemptFactory,
    EntitlementFactory,
    PlanFactory,
    PlanPriceFactory,
    StripeEventFactory,
    SubscriptionFactory,
)
from apps.billing.models import (
    BillingCustomer,
    CheckoutTwinSession,
    ConversionAttempt,
    Entitlement,
    OnboardingStep,
    OnboardingStepKey,
    OnboardingStepStatus,
    Plan,
    PlanPrice,
    StripeEvent,
    Subscription,
)
from apps.bots.models import InboundCursor, JoinDecision, TelegramJoinRequest, TelegramUpdate
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory, UserInteractionFactory
from apps.community.models import CommunityUser, PlatformIdentity, UserInteraction
from apps.content.factories import (
    ContentDraftFactory,
    ContentPlanFactory,
    ExclusiveContentFactory,
    MediaFactory,
    PublishedContentFactory,
)
from apps.content.models import (
    ContentDraft,
    ContentPlan,
    DraftStatus,
    ExclusiveContent,
    ExclusiveStatus,
    Media,
    PublishedContent,
)
from apps.core.models import CircuitBreakerState, Heartbeat
from apps.experiments.factories import (
    ABTestFactory,
    ABTestVariantFactory,
    AssignmentFactory,
    HypothesisFactory,
    OutcomeFactory,
)
from apps.experiments.models import ABTest, ABTestVariant, Assignment, Hypothesis, Outcome
from apps.integrations.models import AccessGrant, ModerationCall, OutboxMessage
from apps.learning.factories import AlertFactory, AlertRuleFactory, StrategyChangeFactory
from apps.learning.models import Alert, AlertRule, LearningControl, StrategyChange
from apps.learning.services import learning_control_get
from apps.market.factories import InsightFactory, MarketDataFactory, NewsArticleFactory, SentimentDataFactory
from apps.market.models import Insight, InsightStatus, MarketData, NewsArticle, SentimentData
from apps.moderation.factories import (
    AppealFactory,
    BlockedDomainFactory,
    ModerationActionFactory,
    ModerationDecisionFactory,
    ModerationRuleFactory,
    StrikeFactory,
    TrainingLabelFactory,
)
from apps.moderation.models import (
    Appeal,
    BlockedDomain,
    ClassifierTraining,
    ModerationAction,
    ModerationDecision,
    ModerationPolicy,
    ModerationRule,
    Strike,
    TrainingLabel,
)
from apps.moderation.services.enforcement import moderation_policy_get

pytestmark = pytest.mark.django_db

# A changelist page costs session, user, counts, filters, date hierarchy and the rows: a fixed budget, with
# headroom for a filter or two more, but far below one query per row.
MAX_CHANGELIST_QUERIES = 16
MAX_AUTOCOMPLETE_QUERIES = 6
FEW, MANY = 2, 8

_serial = itertools.count()


def _media() -> Media:
    # A file name rather than a generated image: the image needs Pillow, and the admin only shows the name.
    return MediaFactory(file=f"media/2025/01/chart-{next(_serial)}.png")


def _ab_test() -> ABTest:
    test = ABTestFactory()
    test.winner = ABTestVariantFactory(test=test)
    test.save(update_fields=["winner"])
    return test


def _interval() -> IntervalSchedule:
    return IntervalSchedule.objects.create(every=next(_serial) + 1, period=IntervalSchedule.MINUTES)


def _plan_with_draft() -> ContentPlan:
    plan = ContentPlanFactory(repurposed_from=PublishedContentFactory())
    ContentDraftFactory(plan=plan)
    return plan


def _plan_with_price() -> Plan:
    return PlanPriceFactory().plan


def _community_user_with_identity() -> CommunityUser:
    return PlatformIdentityFactory(
        community_user=CommunityUserFactory(portal_user=UserFactory())
    ).community_user


def _pipeline_run_with_agent_run() -> PipelineRun:
    return AgentRunFactory(pipeline_run=PipelineRunFactory()).pipeline_run


def _user_with_email() -> EmailAddress:
    user = UserFactory()
    return EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)


def _checkout_twin_session() -> CheckoutTwinSession:
    price = PlanPriceFactory()
    return CheckoutTwinSession.objects.create(
        id=f"cs_twin_{next(_serial)}",
        user=UserFactory(),
        price=price,
        success_url="http://testserver/billing/success/",
        cancel_url="http://testserver/billing/cancel/",
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )


# One row of each registered model, with its optional relations and inline children filled in, so that a
# changelist that forgot to load a relation would show it as one more query per row, and change forms carry their
# inlines.
ROW_BUILDERS: dict[type[Model], Callable[[], Model]] = {
    User: UserFactory,
    AgentConfig: AgentConfigFactory,
    PipelineRun: _pipeline_run_with_agent_run,
    AgentRun: lambda: AgentRunFactory(pipeline_run=PipelineRunFactory()),
    PerformanceSnapshot: PerformanceSnapshotFactory,
    ABTest: _ab_test,
    ABTestVariant: ABTestVariantFactory,
    Assignment: AssignmentFactory,
    Outcome: OutcomeFactory.create,
    Hypothesis: lambda: HypothesisFactory.create(
        test=ABTestFactory.create(), status=Hypothesis.Status.STARTED
    ),
    MarketData: MarketDataFactory,
    NewsArticle: NewsArticleFactory,
    SentimentData: SentimentDataFactory,
    Insight: InsightFactory,
    CommunityUser: _community_user_with_identity,
    PlatformIdentity: PlatformIdentityFactory,
    UserInteraction: lambda: UserInteractionFactory(content=PublishedContentFactory()),
    ContentPlan: _plan_with_draft,
    ContentDraft: lambda: ContentDraftFactory(
        variant=ABTestVariantFactory(),
        image=_media(),
        approved_by=UserFactory(),
        approved_at=timezone.now(),
        status=DraftStatus.APPROVED,
    ),
    PublishedContent: lambda: PublishedContentFactory(draft=ContentDraftFactory()),
    ExclusiveContent: lambda: ExclusiveContentFactory(author=UserFactory()),
    Media: _media,
    Plan: _plan_with_price,
    PlanPrice: PlanPriceFactory,
    BillingCustomer: BillingCustomerFactory,
    Subscription: SubscriptionFactory,
    StripeEvent: StripeEventFactory,
    Entitlement: lambda: EntitlementFactory(granted_by=UserFactory(), subscription=SubscriptionFactory()),
    ConversionAttempt: lambda: ConversionAttemptFactory(
        plan=PlanFactory(), variant=ABTestVariantFactory(), subscription=SubscriptionFactory()
    ),
    ModerationRule: ModerationRuleFactory,
    ModerationAction: lambda: ModerationActionFactory(
        moderator=UserFactory(), identity=PlatformIdentityFactory(), interaction=UserInteractionFactory()
    ),
    Strike: StrikeFactory,
    Appeal: lambda: AppealFactory(decided_by=UserFactory()),
    ModerationDecision: ModerationDecisionFactory,
    TrainingLabel: lambda: TrainingLabelFactory(actor=UserFactory(), decision=ModerationDecisionFactory()),
    ClassifierTraining: lambda: ClassifierTraining.objects.create(seed_examples=3050, metrics={"loss": 0.05}),
    BlockedDomain: BlockedDomainFactory,
    CircuitBreakerState: lambda: CircuitBreakerState.objects.create(
        service=f"service-{next(_serial)}", state=CircuitBreakerState.State.OPEN, opened_at=timezone.now()
    ),
    Heartbeat: lambda: Heartbeat.objects.create(
        name=f"celery@host-{next(_serial)}",
        kind=Heartbeat.Kind.WORKER,
        started_at=timezone.now(),
        last_seen=timezone.now(),
        details={"concurrency": 2},
    ),
    OutboxMessage: lambda: OutboxMessage.objects.create(
        platform="x", text="t", idempotency_key=f"k{next(_serial)}", external_id=f"outbox-x-{next(_serial)}"
    ),
    CheckoutTwinSession: _checkout_twin_session,
    OnboardingStep: lambda: OnboardingStep.objects.create(
        user=UserFactory.create(),
        step=OnboardingStepKey.WELCOME,
        status=OnboardingStepStatus.SENT,
        channel="email",
        sent_at=timezone.now(),
        detail="emailed",
    ),
    AccessGrant: lambda: AccessGrant.objects.create(
        platform="discord",
        resource="42",
        user_external_id=str(next(_serial)),
        state=AccessGrant.State.GRANTED,
    ),
    TelegramUpdate: lambda: TelegramUpdate.objects.create(
        update_id=next(_serial), payload={"update_id": 1, "message": {"text": "/start"}}
    ),
    TelegramJoinRequest: lambda: TelegramJoinRequest.objects.create(
        chat_id="-1005555555555",
        user_id=str(next(_serial)),
        requested_at=timezone.now(),
        decision=JoinDecision.DECLINED,
        reason="no linked CoinLink membership",
    ),
    DeferredTask: lambda: DeferredTask.objects.create(
        task_name="billing.process_stripe_event",
        args=[next(_serial)],
        retries=2,
        eta=timezone.now(),
        last_error="attempt 2: Stripe answered 503",
    ),
    ModerationCall: lambda: ModerationCall.objects.create(
        platform="telegram", operation=ModerationCall.Operation.BAN, user_external_id=str(next(_serial))
    ),
    ModerationPolicy: moderation_policy_get,
    StrategyChange: lambda: StrategyChangeFactory(
        status=StrategyChange.Status.REVERTED,
        before={"x": 1.0},
        after={"x": 1.2},
        applied_at=timezone.now(),
        reverted_at=timezone.now(),
        reverted_by=UserFactory(),
    ),
    LearningControl: learning_control_get,
    AlertRule: AlertRuleFactory,
    Alert: AlertFactory,
    InboundCursor: lambda: InboundCursor.objects.create(name=f"x.mentions.{next(_serial)}", value="17"),
    # Third-party models the admin shows too.
    Group: lambda: Group.objects.create(name=f"group {next(_serial)}"),
    Site: lambda: Site.objects.create(domain=f"site{next(_serial)}.example.com", name="site"),
    TokenProxy: lambda: Token.objects.create(user=UserFactory()),
    EmailAddress: _user_with_email,
    SocialAccount: lambda: SocialAccount.objects.create(
        user=UserFactory(), provider="discord", uid=str(next(_serial)), extra_data={}
    ),
    SocialApp: lambda: SocialApp.objects.create(provider="discord", name=f"Discord {next(_serial)}"),
    IntervalSchedule: _interval,
    CrontabSchedule: lambda: CrontabSchedule.objects.create(minute=str(next(_serial) % 60)),
    SolarSchedule: lambda: SolarSchedule.objects.create(
        event="sunrise", latitude=51.5 + next(_serial) / 100, longitude=-0.1
    ),
    ClockedSchedule: lambda: ClockedSchedule.objects.create(
        clocked_time=timezone.now() + dt.timedelta(minutes=next(_serial))
    ),
    PeriodicTask: lambda: PeriodicTask.objects.create(
        name=f"task {next(_serial)}", task="apps.agents.tasks.run_agent", interval=_interval()
    ),
}

REGISTERED: list[type[Model]] = sorted(admin.site._registry, key=lambda model: model._meta.label)


def _label(model: type[Model]) -> str:
    return model._meta.label


def _admin(model: type[Model]) -> ModelAdmin[Any]:
    return admin.site._registry[model]


def _url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _change_url(obj: Model) -> str:
    if isinstance(obj, Token):
        # The token admin addresses a token by its user's id.
        return _url(TokenProxy, "change", quote(obj.user_id))
    return _url(type(obj), "change", quote(obj.pk))


def _build(model: type[Model], count: int) -> None:
    for _ in range(count):
        ROW_BUILDERS[model]()


def _count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.fixture
def operator() -> User:
    return UserFactory(staff=True)


@pytest.fixture
def staff_client(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


def test_every_registered_model_has_rows_to_test_with() -> None:
    assert set(REGISTERED) == set(ROW_BUILDERS)


def test_index_lists_every_model(staff_client: Client) -> None:
    response = staff_client.get(reverse("admin:index"))

    assert response.status_code == 200
    for model in REGISTERED:
        assert _url(model, "changelist") in response.content.decode()


@pytest.mark.parametrize("model", REGISTERED, ids=_label)
def test_changelist_search_and_add_pages_render(staff_client: Client, model: type[Model]) -> None:
    ROW_BUILDERS[model]()

    assert staff_client.get(_url(model, "changelist")).status_code == 200
    # A search over every search field: a field name that does not resolve fails here.
    assert staff_client.get(_url(model, "changelist"), {"q": "x"}).status_code == 200
    add = staff_client.get(_url(model, "add"))
    assert add.status_code == (200 if _admin(model).has_add_permission(add.wsgi_request) else 403)


@pytest.mark.parametrize("model", REGISTERED, ids=_label)
def test_change_page_renders(staff_client: Client, model: type[Model]) -> None:
    obj = ROW_BUILDERS[model]()

    response = staff_client.get(_change_url(obj))

    assert response.status_code == 200


# One row by design (the admin refuses a second): their changelists cannot grow.
SINGLETONS = {ModerationPolicy, LearningControl}


@pytest.mark.parametrize("model", [m for m in REGISTERED if m not in SINGLETONS], ids=_label)
def test_changelist_queries_do_not_grow_with_rows(
    staff_client: Client, model: type[Model], django_assert_max_num_queries: Any
) -> None:
    url = _url(model, "changelist")
    _build(model, FEW)
    staff_client.get(url)  # warm the per-process caches (content types, site) so both counts start equal
    few = _count_queries(staff_client, url)

    _build(model, MANY - FEW)
    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES):
        response = staff_client.get(url)
    many = _count_queries(staff_client, url)

    assert len(response.context["cl"].result_list) >= MANY
    assert many == few


AUTOCOMPLETE_FIELDS = sorted(
    {
        (source, field_name)
        for source, model_admin in admin.site._registry.items()
        for field_name in model_admin.autocomplete_fields
    },
    key=lambda pair: (pair[0]._meta.label, pair[1]),
)


@pytest.mark.parametrize(
    ("source", "field_name"), AUTOCOMPLETE_FIELDS, ids=lambda v: v if isinstance(v, str) else _label(v)
)
def test_autocomplete_queries_do_not_grow_with_rows(
    staff_client: Client, source: type[Model], field_name: str, django_assert_max_num_queries: Any
) -> None:
    target = source._meta.get_field(field_name).related_model
    assert isinstance(target, type)
    params = {
        "app_label": source._meta.app_label,
        "model_name": source._meta.model_name,
        "field_name": field_name,
    }
    url = reverse("admin:autocomplete")
    _build(target, FEW)
    staff_client.get(url, params)  # warm the per-process caches
    with CaptureQueriesContext(connection) as few:
        staff_client.get(url, params)

    _build(target, MANY - FEW)
    with django_assert_max_num_queries(MAX_AUTOCOMPLETE_QUERIES) as many:
        response = staff_client.get(url, params)

    assert response.status_code == 200
    assert len(response.json()["results"]) >= MANY
    assert len(many) == len(few)


def _changelist_ids(client: Client, model: type[Model], **params: Any) -> set[int]:
    response = client.get(_url(model, "changelist"), params)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_filters_and_search_narrow_the_changelist(staff_client: Client) -> None:
    pending = ContentDraftFactory()
    approved = ContentDraftFactory(status=DraftStatus.APPROVED)
    assert _changelist_ids(staff_client, ContentDraft, status__exact="pending_review") == {pending.pk}
    assert _changelist_ids(staff_client, ContentDraft, status__exact="approved") == {approved.pk}

    btc = MarketDataFactory(symbol="BTC/USDT")
    eth = MarketDataFactory(symbol="ETH/USDT")
    assert _changelist_ids(staff_client, MarketData, q="ETH") == {eth.pk}
    assert _changelist_ids(staff_client, MarketData, ts__year=btc.ts.year) >= {btc.pk}

    failed = AgentRunFactory(status=AgentRunStatus.FAILED)
    AgentRunFactory()
    assert _changelist_ids(staff_client, AgentRun, status__exact="failed") == {failed.pk}

    gold = SubscriptionFactory()
    SubscriptionFactory()
    assert _changelist_ids(staff_client, Subscription, plan__id__exact=gold.plan_id) == {gold.pk}
    assert _changelist_ids(staff_client, Subscription, q=gold.user.email) == {gold.pk}

    identity = PlatformIdentityFactory(username="satoshi")
    PlatformIdentityFactory()
    assert _changelist_ids(staff_client, CommunityUser, q="satoshi") == {identity.community_user_id}


READ_ONLY = [
    AgentRun,
    ModerationDecision,
    TrainingLabel,
    ClassifierTraining,
    PipelineRun,
    StripeEvent,
    PerformanceSnapshot,
    UserInteraction,
    MarketData,
    OutboxMessage,
    CheckoutTwinSession,
    CircuitBreakerState,
    Heartbeat,
    AccessGrant,
    TelegramUpdate,
    TelegramJoinRequest,
    InboundCursor,
    OnboardingStep,
    DeferredTask,
    ModerationCall,
    StrategyChange,
    Alert,
    Outcome,
]


@pytest.mark.parametrize("model", READ_ONLY, ids=_label)
def test_logs_and_events_are_read_only(staff_client: Client, model: type[Model]) -> None:
    obj = ROW_BUILDERS[model]()
    before = model.objects.filter(pk=obj.pk).values().get()

    assert staff_client.get(_url(model, "add")).status_code == 403
    page = staff_client.get(_change_url(obj))
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert staff_client.post(_change_url(obj), {}).status_code == 403
    assert model.objects.filter(pk=obj.pk).values().get() == before


def test_read_only_detail_pretty_prints_json(staff_client: Client) -> None:
    event = StripeEventFactory(payload={"id": "evt_1", "data": {"object": {"status": "active"}}})
    run = AgentRunFactory(counters={"candles": 240})

    event_page = staff_client.get(_change_url(event)).content.decode()
    run_page = staff_client.get(_change_url(run)).content.decode()

    expected = json.dumps(event.payload, indent=2, sort_keys=True).replace('"', "&quot;")
    assert f"<pre>{expected}</pre>" in event_page
    assert "<pre>{\n  &quot;candles&quot;: 240\n}</pre>" in run_page


def test_only_a_superuser_may_delete_logs(client: Client) -> None:
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*_view_and_delete_permissions(AgentRun))
    run = AgentRunFactory()
    client.force_login(staff)

    response = client.post(_url(AgentRun, "delete", run.pk), {"post": "yes"})

    assert response.status_code == 403
    assert AgentRun.objects.filter(pk=run.pk).exists()


def _view_and_delete_permissions(model: type[Model]) -> Iterator[Permission]:
    codenames = [f"view_{model._meta.model_name}", f"delete_{model._meta.model_name}"]
    yield from Permission.objects.filter(
        content_type__app_label=model._meta.app_label, codename__in=codenames
    )


def _run_action(client: Client, model: type[Model], action: str, objs: list[Model]) -> list[str]:
    response = client.post(
        _url(model, "changelist"),
        {"action": action, "_selected_action": [obj.pk for obj in objs]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_approve_drafts_changes_only_pending_ones(staff_client: Client, operator: User) -> None:
    pending = ContentDraftFactory()
    rejected = ContentDraftFactory(status=DraftStatus.REJECTED)

    messages = _run_action(staff_client, ContentDraft, "approve", [pending, rejected])

    pending.refresh_from_db()
    rejected.refresh_from_db()
    assert (pending.status, pending.approved_by, pending.approved_at is not None) == (
        DraftStatus.APPROVED,
        operator,
        True,
    )
    assert (rejected.status, rejected.approved_by, rejected.approved_at) == (DraftStatus.REJECTED, None, None)
    assert messages == ["Approved 1 of 2 selected drafts; only drafts pending review change."]


def test_reject_drafts_changes_only_pending_ones(staff_client: Client) -> None:
    pending = ContentDraftFactory()
    published = ContentDraftFactory(status=DraftStatus.PUBLISHED)

    messages = _run_action(staff_client, ContentDraft, "reject", [pending, published])

    pending.refresh_from_db()
    published.refresh_from_db()
    assert (pending.status, published.status) == (DraftStatus.REJECTED, DraftStatus.PUBLISHED)
    assert messages == ["Rejected 1 of 2 selected drafts; only drafts pending review change."]


def test_discard_insights_changes_only_new_ones(staff_client: Client) -> None:
    new = InsightFactory()
    planned = InsightFactory(status=InsightStatus.PLANNED)

    messages = _run_action(staff_client, Insight, "discard", [new, planned])

    new.refresh_from_db()
    planned.refresh_from_db()
    assert (new.status, planned.status) == (InsightStatus.DISCARDED, InsightStatus.PLANNED)
    assert messages == ["Discarded 1 of 2 selected insights; only new insights can be discarded."]


def test_publish_and_archive_exclusive_content(staff_client: Client) -> None:
    first_published = timezone.now() - dt.timedelta(days=30)
    draft = ExclusiveContentFactory(status=ExclusiveStatus.DRAFT, published_at=None)
    archived = ExclusiveContentFactory(status=ExclusiveStatus.ARCHIVED, published_at=first_published)
    live = ExclusiveContentFactory(status=ExclusiveStatus.PUBLISHED)

    messages = _run_action(staff_client, ExclusiveContent, "publish", [draft, archived, live])

    for obj in (draft, archived, live):
        obj.refresh_from_db()
    assert [obj.status for obj in (draft, archived, live)] == [ExclusiveStatus.PUBLISHED] * 3
    assert draft.published_at is not None
    assert archived.published_at == first_published
    assert messages == ["Published 2 of 3 selected; the rest were already published."]

    messages = _run_action(staff_client, ExclusiveContent, "archive", [draft])

    draft.refresh_from_db()
    assert draft.status == ExclusiveStatus.ARCHIVED
    assert messages == ["Archived 1 of 1 selected; the rest were already archived."]


def test_pause_and_resume_ab_tests(staff_client: Client) -> None:
    running = ABTestFactory()
    draft = ABTestFactory(status=ABTest.Status.DRAFT)

    messages = _run_action(staff_client, ABTest, "pause", [running, draft])

    running.refresh_from_db()
    draft.refresh_from_db()
    assert (running.status, draft.status) == (ABTest.Status.PAUSED, ABTest.Status.DRAFT)
    assert messages == ["Paused 1 of 2 selected tests; only running tests pause."]

    messages = _run_action(staff_client, ABTest, "resume", [running, draft])

    running.refresh_from_db()
    draft.refresh_from_db()
    assert (running.status, draft.status) == (ABTest.Status.RUNNING, ABTest.Status.DRAFT)
    assert messages == ["Resumed 1 of 2 selected tests; only paused tests resume."]


def test_add_user_by_email(staff_client: Client) -> None:
    form = {"email": "New.Member@Example.com", "usable_password": "true"}
    form |= {"password1": "a-long-unusual-passphrase", "password2": "a-long-unusual-passphrase"}

    response = staff_client.post(_url(User, "add"), form)

    user = User.objects.get(email="new.member@example.com")
    assert response.status_code == 302
    assert user.check_password("a-long-unusual-passphrase")
    assert not user.is_staff


def test_add_user_refuses_an_email_taken_in_another_case(staff_client: Client) -> None:
    UserFactory(email="taken@example.com")
    form = {"email": "Taken@Example.com", "usable_password": "true"}
    form |= {"password1": "a-long-unusual-passphrase", "password2": "a-long-unusual-passphrase"}

    response = staff_client.post(_url(User, "add"), form)

    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


def test_inlines_show_on_their_parents(staff_client: Client) -> None:
    draft = ContentDraftFactory(body="Bitcoin reclaims its 200-day average")
    price = PlanPriceFactory()
    variant = ABTestVariantFactory(name="Question opener")
    identity = PlatformIdentityFactory(username="hodler42")

    pages = {
        "draft": staff_client.get(_change_url(draft.plan)).content.decode(),
        "price": staff_client.get(_change_url(price.plan)).content.decode(),
        "variant": staff_client.get(_change_url(variant.test)).content.decode(),
        "identity": staff_client.get(_change_url(identity.community_user)).content.decode(),
    }

    assert "Bitcoin reclaims its 200-day average" in pages["draft"]
    assert _change_url(draft) in pages["draft"]
    assert 'name="prices-0-amount_minor"' in pages["price"]
    assert 'value="Question opener"' in pages["variant"]
    assert 'value="hodler42"' in pages["identity"]
    assert _change_url(identity) in pages["identity"]


class _FormFields(HTMLParser):
    """What a browser would submit from the page's main form, unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.data: list[tuple[str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form" and "_form" in attr.get("id", ""):
            self._in_form = True
        if not self._in_form or ("name" not in attr and tag != "option"):
            return
        if tag == "input":
            kind = attr.get("type", "text")
            if kind in {"submit", "file", "button"} or (
                kind in {"checkbox", "radio"} and "checked" not in attr
            ):
                return
            self.data.append((attr["name"], attr.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select":
            self._select = attr["name"]
        elif tag == "option" and self._select is not None and "selected" in attr:
            self.data.append((self._select, attr.get("value", "")))
        elif tag == "textarea":
            self._textarea, self._text = attr["name"], []

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            # A browser drops the one newline that follows <textarea>.
            self.data.append((self._textarea, "".join(self._text).removeprefix("\n")))
            self._textarea = None


EDITABLE = [model for model in REGISTERED if model.__module__.startswith("apps.") and model not in READ_ONLY]


@pytest.mark.parametrize("model", EDITABLE, ids=_label)
def test_change_form_saves_unchanged(staff_client: Client, model: type[Model]) -> None:
    """Every editable admin (inlines included) accepts its own change form back as it rendered it."""
    obj = ROW_BUILDERS[model]()
    url = _change_url(obj)
    fields = _FormFields()
    fields.feed(staff_client.get(url).content.decode())
    data: dict[str, list[str]] = {}
    for name, value in fields.data:
        data.setdefault(name, []).append(value)

    response = staff_client.post(url, {**data, "_save": "Save"})

    errors = response.context and response.context.get("errors")
    assert response.status_code == 302, errors
