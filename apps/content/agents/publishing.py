"""Publishing: approved drafts whose plan is due go out, each at most once per platform.

At most once, even when a run is retried, two runs race, or a worker dies mid-call:

- Before the platform is called the draft moves approved → publishing by a conditional UPDATE; whoever does not
  move it does not call. The post carries the draft's idempotency key, which the publishers use (Discord's
  nonce, X and Telegram resuming a half-sent thread, the outbox's dedup).
- After the platform accepted the post, a failure to record that (the database hiccups) never leads to sending
  again: recording is retried, then the platform's answer is kept on the draft, still in publishing, and the
  next run records it without calling the platform.
- A draft found in publishing longer than the lease (a worker died mid-call, the outcome is unknown) is not
  sent again blindly. It is marked failed with a note to check the platform, unless its publisher can confirm
  what happened: the outbox twin records each key once, so asking it again is safe; a publisher with a
  ``confirm(post)`` method is asked that.

A transient error puts the draft back to approved for a later run (and counts the attempt); a rate limit or
an open circuit does too, without counting, and nothing more goes to that platform in this run; a permanent
error fails the draft. Retries need no Celery retry, on the embedded default or with a broker alike: the draft
waits in the database, the agent's schedule (every five minutes) comes back for it, and a draft whose last
attempt failed transiently sits out a backoff first (``PUBLISH_RETRY_BACKOFF``: about 2, 4, 8, 16 minutes,
jittered), so a pipeline run or a "run now" straight after a failure does not hammer a platform that is down.
The platforms' own quotas are kept by the publishers; the daily caps and quiet hours are kept here.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.content import limits, selectors, services
from apps.content.models import ContentDraft, ContentFormat, DraftStatus
from apps.core import metrics
from apps.core.models import Platform
from apps.core.resilience import CircuitOpenError, PermanentError, RateLimited, RetryPolicy, TransientError
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.base import PublishProgress
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import OutboundPost, Publisher, PublishResult

# The wait before a draft whose publishing failed transiently is tried again, by its attempts so far.
PUBLISH_RETRY_BACKOFF = RetryPolicy(base_delay=120, max_delay=1800)


def retry_not_before(draft: ContentDraft) -> dt.datetime | None:
    """When a draft that failed transiently may be tried again; None when it did not fail. The jitter is seeded
    by the draft and attempt, so every run computes the same time."""
    if draft.publish_attempts < 1 or not draft.last_error:
        return None
    # Jitter, not a secret.
    rng = random.Random(f"{draft.idempotency_key}:{draft.publish_attempts}")  # noqa: S311
    return draft.updated_at + dt.timedelta(seconds=PUBLISH_RETRY_BACKOFF.delay(draft.publish_attempts, rng))


def outbound_post(draft: ContentDraft) -> OutboundPost:
    """The draft as the publisher takes it. A Discord embed's text travels in the embed alone."""
    image = None
    image_name = "chart.png"
    if draft.image is not None and draft.image.file:
        try:
            with draft.image.file.open("rb") as handle:
                image = handle.read()
            image_name = os.path.basename(draft.image.file.name or "") or image_name
        except OSError:
            # The post is still worth sending without its chart.
            image = None
    parts = tuple(draft.parts) if draft.format == ContentFormat.X_THREAD and draft.parts else ()
    if draft.format == ContentFormat.DISCORD_EMBED and draft.embed:
        text = ""
    else:
        text = parts[0] if parts else draft.body
    return OutboundPost(
        platform=draft.platform,
        text=text,
        idempotency_key=str(draft.idempotency_key),
        parts=parts,
        image=image,
        image_name=image_name,
        embed=dict(draft.embed) if draft.embed else None,
    )


@register
class PublishingAgent(BaseAgent):
    name = "publishing"
    phase = 1
    description = (
        "Publishes approved drafts whose plan is due, each at most once per platform (claimed before the "
        "call, idempotency key on the post); retries transient failures on later runs, keeps daily caps."
    )
    depends_on = ("content_creation",)
    services = ("x", "telegram", "discord")
    service_policy = "any"
    default_schedule = "*/5 * * * *"
    default_parameters: ClassVar[dict[str, Any]] = {
        "platforms": ["x", "telegram", "discord"],
        # Longer than any publishing call can take (retries and platform waits included): a draft in
        # publishing for longer was left there by a worker that died.
        "lease_minutes": 10.0,
        # Transient failures before a draft is given up on.
        "max_attempts": 5,
        # A post that shows a chart waits this long past its time for the chart, then goes without it.
        "image_wait_minutes": 30.0,
        # Posts per platform and UTC day; a platform left out takes CONTENT_DAILY_CAPS.
        "daily_caps": {},
        # UTC hours with no posts ("0-6", "none"); empty takes CONTENT_QUIET_HOURS.
        "quiet_hours": "",
        "batch_size": 50,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        problems = []
        if unknown := set(params["platforms"]) - set(Platform.values):
            problems.append(f"platforms: unknown {sorted(unknown)}")
        if params["lease_minutes"] <= 0 or params["max_attempts"] < 1:
            problems.append("lease_minutes must be above 0 and max_attempts 1 or more")
        try:
            limits.parse_quiet_hours(params["quiet_hours"])
        except ValueError as exc:
            problems.append(f"quiet_hours: {exc}")
        if problems:
            raise ValidationError(problems)
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        run = _Run(ctx, params)
        run.settle()
        run.publish_due()
        counters = run.result.counters
        run.result.summary = f"{counters['published']} published, {counters['retry_later']} to retry, {counters['failed']} failed"
        if run.stopped:
            run.result.summary += f"; stopped for {', '.join(sorted(run.stopped))}"
        return run.result


class _Run:
    def __init__(self, ctx: AgentContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.params = params
        self.now = ctx.now
        self.platforms: list[str] = list(params["platforms"])
        self.result = AgentResult()
        self.result.counters.update(dict.fromkeys(("published", "retry_later", "failed"), 0))
        self.publishers: dict[str, Publisher] = {}
        # Platforms not to call again in this run (rate limited, down, misconfigured), with the reason.
        self.stopped: dict[str, str] = {}

    def publisher(self, platform: str) -> Publisher | None:
        if platform not in self.publishers:
            try:
                self.publishers[platform] = get_publisher(platform)
            except ImproperlyConfigured as exc:
                self.stop(platform, f"misconfigured: {exc}")
                return None
        return self.publishers[platform]

    def stop(self, platform: str, reason: str) -> None:
        self.stopped.setdefault(platform, reason)
        self.result.incr(f"stopped.{platform}")
        self.ctx.logger.warning("publishing to %s stopped for this run: %s", platform, reason)

    # --- drafts left in publishing --------------------------------------------------------------------------

    def settle(self) -> None:
        lease = dt.timedelta(minutes=self.params["lease_minutes"])
        for draft in selectors.content_draft_list_unsettled(
            platforms=self.platforms, lease_expired_before=self.now - lease
        ):
            note = draft.checks.get(services.PUBLISHED_NOTE_KEY)
            if isinstance(note, dict) and note.get("external_id"):
                result = PublishResult(
                    external_id=str(note["external_id"]),
                    url=str(note.get("url", "")),
                    part_ids=tuple(str(i) for i in note.get("part_ids", [])),
                )
                self.record(draft, result, retrying=True)
                continue
            confirmed = self.confirm(draft)
            if confirmed is not None:
                self.result.incr("confirmed_after_lease")
                self.record(draft, confirmed)
                continue
            sent = PublishProgress(draft.platform, str(draft.idempotency_key)).sent()
            known = f" Parts known to have gone out: {', '.join(sent)}." if sent else ""
            failed = services.content_draft_fail(
                draft_id=draft.pk,
                from_statuses=[DraftStatus.PUBLISHING],
                error=(
                    f"outcome unknown, check the platform: publishing to {draft.platform} started at "
                    f"{draft.updated_at:%Y-%m-%d %H:%M:%S} UTC and did not finish within the "
                    f"{self.params['lease_minutes']:g}-minute lease (its worker was lost). It was not sent "
                    f"again, so that nothing goes out twice; look for it on {draft.platform} and post it by "
                    f"hand only if it is not there.{known}"
                ),
            )
            if failed:
                self.result.incr("failed")
                self.result.incr("outcome_unknown")
                metrics.publish_outcome(platform=draft.platform, outcome="outcome_unknown")

    def confirm(self, draft: ContentDraft) -> PublishResult | None:
        """What happened to a post whose publishing call never came back, when its publisher can tell."""
        publisher = self.publisher(draft.platform)
        if publisher is None:
            return None
        post = outbound_post(draft)
        ask = getattr(publisher, "confirm", None)
        try:
            if callable(ask):
                answer = ask(post)
                return answer if isinstance(answer, PublishResult) else None
            if isinstance(publisher, OutboxPublisher):
                # The twin records a key once: this returns the recorded post, or records it now, once.
                return publisher.publish(post)
        except (TransientError, PermanentError) as exc:
            self.ctx.logger.warning("could not confirm draft #%s on %s: %s", draft.pk, draft.platform, exc)
        return None

    # --- due drafts -----------------------------------------------------------------------------------------

    def publish_due(self) -> None:
        quiet = limits.quiet_hours(self.params["quiet_hours"])
        if self.now.astimezone(dt.UTC).hour in quiet:
            self.result.incr("quiet_hours")
            return
        caps = limits.daily_caps(self.params["daily_caps"])
        day_start = dt.datetime.combine(self.now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        # The day's own posts only: a replayed day must not count the posts of the days after it.
        today = selectors.published_content_count_since(
            since=day_start, until=day_start + dt.timedelta(days=1)
        )
        image_wait = dt.timedelta(minutes=self.params["image_wait_minutes"])
        for draft in selectors.content_draft_list_publishable(
            now=self.now, platforms=self.platforms, limit=self.params["batch_size"]
        ):
            platform = draft.platform
            if platform in self.stopped:
                continue
            cap = caps.get(platform)
            if cap is not None and today.get(platform, 0) >= cap:
                self.result.incr(f"capped.{platform}")
                continue
            insight = draft.plan.insight
            if (
                draft.plan.repurposed_from_id is None
                and insight is not None
                and insight.expires_at is not None
                and insight.expires_at <= self.now
            ):
                if services.content_draft_fail(
                    draft_id=draft.pk,
                    from_statuses=[DraftStatus.APPROVED],
                    error="the insight expired before its post went out; not published",
                ):
                    self.result.incr("failed")
                    self.result.incr("expired")
                continue
            if (
                draft.format in limits.IMAGE_FORMATS
                and draft.image_id is None
                and self.now - draft.plan.scheduled_for < image_wait
            ):
                self.result.incr("waiting_for_chart")
                continue
            # The release stamped updated_at with the clock, so the clock (not the run's ``now``) says whether
            # the backoff is over.
            not_before = retry_not_before(draft)
            if not_before is not None and timezone.now() < not_before:
                self.result.incr("backing_off")
                continue
            if self.publish(draft):
                today[platform] = today.get(platform, 0) + 1

    def publish(self, draft: ContentDraft) -> bool:
        publisher = self.publisher(draft.platform)
        if publisher is None:
            return False
        post = outbound_post(draft)
        if not services.content_draft_claim_for_publishing(draft_id=draft.pk):
            self.result.incr("claimed_elsewhere")
            return False
        attempts = draft.publish_attempts + 1
        try:
            result = publisher.publish(post)
        except (RateLimited, CircuitOpenError) as exc:
            # The platform was not (or could not be) asked: not the draft's attempt.
            services.content_draft_release(draft_id=draft.pk, error=_describe(exc), count_attempt=False)
            self.result.incr("retry_later")
            metrics.publish_outcome(platform=draft.platform, outcome="retry_later")
            self.stop(draft.platform, _describe(exc))
            return False
        except TransientError as exc:
            if attempts >= self.params["max_attempts"]:
                services.content_draft_fail(
                    draft_id=draft.pk,
                    from_statuses=[DraftStatus.PUBLISHING],
                    error=f"gave up after {attempts} attempts: {_describe(exc)}",
                )
                self.result.incr("failed")
                metrics.publish_outcome(platform=draft.platform, outcome="failed")
            else:
                services.content_draft_release(draft_id=draft.pk, error=_describe(exc))
                self.result.incr("retry_later")
                metrics.publish_outcome(platform=draft.platform, outcome="retry_later")
            # The publisher already retried; the platform is down for now.
            self.stop(draft.platform, _describe(exc))
            return False
        except PermanentError as exc:
            services.content_draft_fail(
                draft_id=draft.pk, from_statuses=[DraftStatus.PUBLISHING], error=_describe(exc)
            )
            self.result.incr("failed")
            metrics.publish_outcome(platform=draft.platform, outcome="failed")
            return False
        except Exception as exc:
            # Not an answer from the platform: the call may or may not have reached it.
            self.ctx.logger.exception("publishing draft #%s to %s broke", draft.pk, draft.platform)
            services.content_draft_fail(
                draft_id=draft.pk,
                from_statuses=[DraftStatus.PUBLISHING],
                error=(
                    f"outcome unknown, check the platform: the publishing call broke with {_describe(exc)}; "
                    "it was not sent again, so that nothing goes out twice"
                ),
            )
            self.result.incr("failed")
            self.result.incr("outcome_unknown")
            metrics.publish_outcome(platform=draft.platform, outcome="outcome_unknown")
            return False
        return self.record(draft, result)

    def record(self, draft: ContentDraft, result: PublishResult, *, retrying: bool = False) -> bool:
        """Record what the platform accepted. Whatever goes wrong here, the platform is not called again."""
        error: Exception | None = None
        for _ in range(2):
            try:
                published = services.content_draft_record_published(
                    draft_id=draft.pk, result=result, now=self.now
                )
            except Exception as exc:  # the post is out: no failure here may lead to sending it again
                error = exc
                continue
            if published is None:
                self.result.incr("settled_elsewhere")
                return False
            self.result.incr("published")
            self.result.incr(f"published.{draft.platform}")
            metrics.publish_outcome(platform=draft.platform, outcome="published")
            return True
        self.ctx.logger.error(
            "draft #%s went out on %s as %s but could not be recorded: %r",
            draft.pk,
            draft.platform,
            result.external_id,
            error,
        )
        self.result.incr("unrecorded")
        where = f"{result.external_id} {result.url}".strip()
        if retrying:
            # Kept failing across runs: hand it to the operator, who knows now that it is out.
            services.content_draft_fail(
                draft_id=draft.pk,
                from_statuses=[DraftStatus.PUBLISHING],
                error=f"published on {draft.platform} as {where}, but recording it keeps failing: {error!r}",
            )
            self.result.incr("failed")
            return False
        try:
            services.content_draft_note_unrecorded(draft_id=draft.pk, result=result, error=repr(error))
        except Exception:
            # The lease sweep will find the draft still in publishing and say the outcome is unknown.
            self.ctx.logger.exception("could not even note on draft #%s that it went out", draft.pk)
        return False


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
