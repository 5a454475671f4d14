"""Community moderation: rules, the actions taken (warn, mute, ban, ...), strikes that escalate, and appeals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import Platform, TimeStampedModel


class ActionKind(models.TextChoices):
    WARN = "warn", "Warn"
    DELETE_MESSAGE = "delete_message", "Delete message"
    MUTE = "mute", "Mute"
    UNMUTE = "unmute", "Unmute"
    BAN = "ban", "Ban"
    UNBAN = "unban", "Unban"


class ModerationRule(TimeStampedModel):
    """One operator rule of the engine's first layer. ``pattern`` holds what the kind needs (see ``Kind``);
    ``limit`` and ``window_seconds`` hold the numbers of the limit, flood, duplicate and new-member kinds."""

    class Kind(models.TextChoices):
        KEYWORD = "keyword", "Keyword list"
        REGEX = "regex", "Regular expression"
        LINK = "link", "Links from unknown domains (pattern: allowed domains)"
        LINK_DENY = "link_deny", "Denied link domains"
        SCAM = "scam", "Scam pattern (regular expressions, one per line)"
        FLOOD = "flood", "Flooding (limit messages in window_seconds)"
        DUPLICATE = "duplicate", "Same text from several people (limit authors in window_seconds)"
        MENTIONS = "mentions", "Too many mentions (more than limit)"
        EMOJIS = "emojis", "Too many emojis (more than limit)"
        LINKS = "links", "Too many links (more than limit)"
        LENGTH = "length", "Too long (more than limit characters)"
        NEW_MEMBER_LINK = "new_member_link", "Links from new members (joined less than window_seconds ago)"
        NEW_MEMBER_TEXT = "new_member_text", "Stricter keywords for new members' first messages"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    pattern = models.TextField(
        blank=True, help_text="Keywords or domains (one per line), or regular expressions (one per line)"
    )
    platforms = models.JSONField(default=list, blank=True, help_text="Empty means every platform")
    limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Limit kinds: the most allowed; flood: messages; duplicate: authors"
    )
    window_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Flood and duplicate: the time window; new-member kinds: how long someone counts as new",
    )
    score = models.FloatField(
        default=0.9,
        help_text="How sure a hit of this rule is (0-1): at or above MODERATION_REMOVE_THRESHOLD it removes",
    )
    new_members_only = models.BooleanField(default=False, help_text="Only applies to new members")
    action = models.CharField(max_length=16, choices=ActionKind.choices, default=ActionKind.WARN)
    strike_weight = models.PositiveSmallIntegerField(default=1)
    is_active = models.BooleanField(default=True)
    description = models.TextField(blank=True, help_text="Shown to the member when the rule is applied")

    class Meta:
        db_table = "moderation_rules"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Verdict(models.TextChoices):
    ALLOW = "allow", "Allow"
    REVIEW = "review", "Review"
    REMOVE = "remove", "Remove"


class ModerationDecision(TimeStampedModel):
    """The audit row of one judged message: every check that fired, its score and why. A platform message is
    judged once (unique key), so a redelivered update returns this row instead of being judged again."""

    platform = models.CharField(max_length=12, choices=Platform.choices)
    chat_id = models.CharField(max_length=64)
    message_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=20, default="message")
    author_id = models.CharField(max_length=64)
    author_username = models.CharField(max_length=100, blank=True)
    author_display_name = models.CharField(max_length=200, blank=True)
    community_user = models.ForeignKey(
        "community.CommunityUser",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="moderation_decisions",
    )
    text = models.TextField(blank=True)
    sent_at = models.DateTimeField()
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    score = models.FloatField(default=0.0)
    strike_weight = models.PositiveSmallIntegerField(default=0)
    checks = models.JSONField(
        default=list, blank=True, help_text="Every check that fired: layer, check, score, why"
    )
    check_names = models.CharField(
        max_length=255, blank=True, help_text="The checks that fired, comma-separated (for filtering)"
    )
    classifier_score = models.FloatField(null=True, blank=True)
    used_llm = models.BooleanField(default=False)
    duration_ms = models.FloatField(default=0.0, help_text="Time the engine took to judge")

    class Meta:
        db_table = "moderation_decisions"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "chat_id", "message_id"], name="moderation_decision_once_per_message"
            ),
        ]
        indexes = [
            models.Index(fields=["verdict", "-created_at"], name="moderation_decisions_verdict"),
            models.Index(fields=["platform", "author_id", "-created_at"], name="moderation_decisions_author"),
        ]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} {self.platform}:{self.chat_id}:{self.message_id}"


class TrainingLabel(models.Model):
    """A message labelled spam or ham by an operator (/spam, "not spam" in the admin), a granted appeal, or the
    seed set; the classifier learns each one as it is stored."""

    class Label(models.TextChoices):
        SPAM = "spam", "Spam"
        HAM = "ham", "Not spam"

    class Source(models.TextChoices):
        OPERATOR = "operator", "Operator"
        APPEAL = "appeal", "Appeal granted"
        SEED = "seed", "Seed set"

    text = models.TextField()
    text_hash = models.CharField(max_length=64, db_index=True, help_text="SHA-256 of the normalised text")
    label = models.CharField(max_length=4, choices=Label.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.ForeignKey(
        ModerationDecision, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "moderation_labels"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.label}: {self.text[:60]}"


class ClassifierTraining(models.Model):
    """One full (re)training of the classifier: every process rebuilds its model when a newer one appears."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    seed_examples = models.PositiveIntegerField(default=0)
    label_examples = models.PositiveIntegerField(default=0)
    last_label_id = models.BigIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    weights = models.BinaryField(blank=True, default=b"", editable=False, help_text="The trained model")

    class Meta:
        db_table = "moderation_classifier_trainings"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"training #{self.pk} ({self.seed_examples} seed + {self.label_examples} labels)"


class BlockedDomain(TimeStampedModel):
    """A domain links may not point at: drainer and phishing sites from the feed, the project's seed list, or
    added by an operator. Stored normalised (lower case, IDNA/punycode decoded to ASCII form, no ``www.``)."""

    class Source(models.TextChoices):
        SEED = "seed", "Project seed list"
        FEED = "feed", "Drainer feed"
        OPERATOR = "operator", "Operator"

    domain = models.CharField(max_length=253, unique=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.OPERATOR)
    reason = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="Last refresh that listed it")

    class Meta:
        db_table = "moderation_blocked_domains"
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class ActionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    FAILED = "failed", "Failed"
    REVERTED = "reverted", "Reverted"


class Actor(models.TextChoices):
    ENGINE = "engine", "Engine"
    OPERATOR = "operator", "Operator"
    AGENT = "agent", "Moderator agent"


class ModerationAction(TimeStampedModel):
    community_user = models.ForeignKey(
        "community.CommunityUser", on_delete=models.CASCADE, related_name="moderation_actions"
    )
    identity = models.ForeignKey(
        "community.PlatformIdentity", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    platform = models.CharField(max_length=12, choices=Platform.choices)
    action = models.CharField(max_length=16, choices=ActionKind.choices)
    rule = models.ForeignKey(
        ModerationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions"
    )
    interaction = models.ForeignKey(
        "community.UserInteraction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when the moderator agent acted",
    )
    status = models.CharField(max_length=10, choices=ActionStatus.choices, default=ActionStatus.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="For timed mutes and bans")
    applied_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Enforcement: who acted, on which message, why (every check that fired), and what became of it.
    actor = models.CharField(max_length=10, choices=Actor.choices, default=Actor.ENGINE)
    decision = models.ForeignKey(
        ModerationDecision, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions"
    )
    chat_id = models.CharField(max_length=64, blank=True, help_text="Where the message was")
    message_id = models.CharField(max_length=64, blank=True, help_text="The platform's id of the message")
    message_text = models.TextField(blank=True)
    checks = models.JSONField(
        default=list, blank=True, help_text="Every check that fired: layer, check, score, why"
    )
    score = models.FloatField(null=True, blank=True, help_text="The engine's combined score")
    strikes_after = models.PositiveSmallIntegerField(
        default=0, help_text="Active strikes on the person's ledger once this action's were added"
    )
    reverses = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reversals",
        help_text="The mute or ban this unmute or unban lifts",
    )
    reverted_at = models.DateTimeField(null=True, blank=True, help_text="When a granted appeal reversed it")
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text="When a mute ran out or a mute or ban was lifted"
    )

    class Meta:
        db_table = "moderation_actions"
        ordering = ["-created_at"]
        constraints = [
            # One enforcement per platform message, whoever judged it (redelivery, /spam after the engine).
            models.UniqueConstraint(
                fields=["platform", "chat_id", "message_id"],
                condition=~Q(message_id=""),
                name="moderation_action_once_per_message",
            ),
        ]
        indexes = [
            models.Index(fields=["community_user", "-created_at"], name="moderation_by_user"),
            models.Index(fields=["status", "expires_at"], name="moderation_expiring"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.community_user} on {self.get_platform_display()}"


class Strike(models.Model):
    community_user = models.ForeignKey(
        "community.CommunityUser", on_delete=models.CASCADE, related_name="strikes"
    )
    action = models.ForeignKey(ModerationAction, on_delete=models.CASCADE, related_name="strikes")
    rule = models.ForeignKey(
        ModerationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    weight = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Strikes stop counting towards escalation after this")
    voided_at = models.DateTimeField(null=True, blank=True, help_text="Set when an appeal is upheld")

    class Meta:
        db_table = "moderation_strikes"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["community_user", "expires_at"], name="strikes_active")]

    def __str__(self) -> str:
        return f"strike ×{self.weight} for {self.community_user}"


class AppealSource(models.TextChoices):
    PORTAL = "portal", "Portal"
    BOT = "bot", "Bot command"
    ADMIN = "admin", "Operator"


class Appeal(TimeStampedModel):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        UPHELD = "upheld", "Upheld (action reverted)"
        DENIED = "denied", "Denied"

    action = models.ForeignKey(ModerationAction, on_delete=models.CASCADE, related_name="appeals")
    community_user = models.ForeignKey(
        "community.CommunityUser", on_delete=models.CASCADE, related_name="appeals"
    )
    message = models.TextField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    source = models.CharField(max_length=8, choices=AppealSource.choices, default=AppealSource.PORTAL)

    class Meta:
        db_table = "moderation_appeals"
        ordering = ["-created_at"]
        constraints = [
            # One appeal per action: a denied appeal is final.
            models.UniqueConstraint(fields=["action"], name="moderation_one_appeal_per_action"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="moderation_appeal_queue")]

    def __str__(self) -> str:
        return f"appeal of {self.action} ({self.get_status_display()})"


class OperationKind(models.TextChoices):
    DELETE_MESSAGE = "delete_message", "Delete message"
    MUTE = "mute", "Mute"
    UNMUTE = "unmute", "Unmute"
    BAN = "ban", "Ban"
    UNBAN = "unban", "Unban"
    NOTIFY = "notify", "Tell the member"


class OperationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    SKIPPED = "skipped", "Nothing to do"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled (action reversed first)"


class PlatformOperation(TimeStampedModel):
    """One call an action makes on one platform (a ban in one Telegram chat, a Discord timeout, the notice to
    the member), carried out by the ``moderation.execute_operation`` task with retries."""

    action = models.ForeignKey(ModerationAction, on_delete=models.CASCADE, related_name="operations")
    platform = models.CharField(max_length=12, choices=Platform.choices)
    operation = models.CharField(max_length=16, choices=OperationKind.choices)
    space = models.CharField(
        max_length=100, blank=True, help_text="Telegram chat or Discord server (for a deletion: the channel)"
    )
    user_external_id = models.CharField(max_length=64, blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    until = models.DateTimeField(null=True, blank=True, help_text="When a mute ends on the platform")
    text = models.TextField(blank=True, help_text="The notice, for notify")
    status = models.CharField(max_length=10, choices=OperationStatus.choices, default=OperationStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "moderation_operations"
        ordering = ["pk"]
        indexes = [models.Index(fields=["status", "created_at"], name="moderation_operations_status")]

    def __str__(self) -> str:
        return (
            f"{self.get_operation_display()} on {self.get_platform_display()} ({self.get_status_display()})"
        )


class ModerationPolicy(TimeStampedModel):
    """The community's ladder, one row the operator edits in the admin: strikes on the one ledger per person
    (across platforms) escalate delete → warn → timed mute → ban."""

    warn_at = models.PositiveSmallIntegerField(
        default=1, help_text="Active strikes from which a removed message also earns a warning"
    )
    mute_at = models.PositiveSmallIntegerField(
        default=2, help_text="Active strikes from which the person is muted"
    )
    ban_at = models.PositiveSmallIntegerField(
        default=3, help_text="Active strikes from which the person is banned"
    )
    mute_minutes = models.PositiveIntegerField(
        default=24 * 60, help_text="How long a mute lasts (at most 28 days: Discord's longest timeout)"
    )
    strike_expiry_days = models.PositiveSmallIntegerField(
        default=30, help_text="Days a strike counts towards escalation"
    )
    operator_strike_weight = models.PositiveSmallIntegerField(
        default=1, help_text="Strikes an operator's /warn, /mute, /ban or /spam adds"
    )
    notify_members = models.BooleanField(
        default=True, help_text="Tell members by direct message what happened and how to appeal"
    )

    class Meta:
        db_table = "moderation_policy"
        verbose_name_plural = "moderation policy"
        constraints = [
            models.CheckConstraint(condition=Q(warn_at__gte=1), name="moderation_policy_warn_at_positive"),
            models.CheckConstraint(
                condition=Q(mute_at__gte=models.F("warn_at")) & Q(ban_at__gte=models.F("mute_at")),
                name="moderation_policy_ladder_order",
            ),
            models.CheckConstraint(
                condition=Q(mute_minutes__gte=1) & Q(mute_minutes__lte=28 * 24 * 60),
                name="moderation_policy_mute_length",
            ),
            models.CheckConstraint(condition=Q(strike_expiry_days__gte=1), name="moderation_policy_expiry"),
        ]

    def __str__(self) -> str:
        return f"warn at {self.warn_at}, mute at {self.mute_at}, ban at {self.ban_at} strikes"
