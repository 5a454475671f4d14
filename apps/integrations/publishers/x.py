"""Publishing on X through tweepy, as the creator's account (OAuth 1.0a user context).

``tweepy.Client`` speaks API v2 (posts, mentions, metrics); media upload is still the v1.1 endpoint, through
``tweepy.API``. Both use a ``requests`` session on which we mount an adapter that gives every request a timeout
(tweepy's Client sets none) and, when ``X_API_BASE_URL`` is set, sends the X hosts to that base instead, so the
real clients can be pointed at a compatible server (a fake on loopback in tests).

``POST /2/tweets`` allows about 100 posts per 15 minutes per user: a shared ``RateLimiter`` keeps under it,
and a 429 blocks the bucket until ``x-rate-limit-reset`` for every worker.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import tweepy
from django.conf import settings
from django.core.cache import cache
from requests.adapters import HTTPAdapter

from apps.core.resilience import (
    PermanentError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    TransientError,
    retry_after_from_headers,
)
from apps.integrations.llm import text_length
from apps.integrations.publishers.base import DM_PREFIX, PublishProgress, Sleep, guarded
from apps.integrations.types import InboundEvent, OutboundPost, PostMetrics, PublishResult

SERVICE = "x"
X_HOSTS = ("https://api.twitter.com/", "https://upload.twitter.com/", "https://api.x.com/")
MAX_WEIGHTED_CHARS = 280
POSTS_PER_WINDOW, POST_WINDOW_SECONDS = 100, 15 * 60
REQUEST_TIMEOUT = 30.0
MENTION_PAGES = 5
T = TypeVar("T")


class XTransportAdapter(HTTPAdapter):
    """Gives each request a timeout and, with a base URL, rewrites ``https://api.twitter.com/<path>`` (and
    the upload host) to ``<base>/<path>``."""

    def __init__(self, *, base_url: str = "", timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.base_url and request.url:
            parts = urlsplit(request.url)
            request.url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def mount_transport(session: requests.Session, *, base_url: str = "") -> None:
    adapter = XTransportAdapter(base_url=base_url)
    for host in X_HOSTS:
        session.mount(host, adapter)


class XPublisher:
    platform = "x"

    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        access_token: str,
        access_token_secret: str,
        api_base_url: str = "",
        policy: RetryPolicy | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.client = tweepy.Client(
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            access_token=access_token,
            access_token_secret=access_token_secret,
        )
        self.api = tweepy.API(
            tweepy.OAuth1UserHandler(consumer_key, consumer_secret, access_token, access_token_secret)
        )
        mount_transport(self.client.session, base_url=api_base_url)
        mount_transport(self.api.session, base_url=api_base_url)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.limiter = RateLimiter(SERVICE)
        self._account = hashlib.sha256(access_token.encode()).hexdigest()[:16]

    @classmethod
    def from_settings(cls) -> XPublisher:
        return cls(
            consumer_key=settings.X_CONSUMER_KEY,
            consumer_secret=settings.X_CONSUMER_SECRET,
            access_token=settings.X_ACCESS_TOKEN,
            access_token_secret=settings.X_ACCESS_TOKEN_SECRET,
            api_base_url=settings.X_API_BASE_URL,
        )

    # --- calls ----------------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], *, bucket: str = "") -> T:
        def attempt() -> T:
            if bucket == "tweets":
                self.limiter.wait(
                    bucket,
                    limit=POSTS_PER_WINDOW,
                    per=POST_WINDOW_SECONDS,
                    max_wait=self.policy.max_rate_limit_wait,
                    sleep=self.sleep,
                )
            elif bucket and (blocked := self.limiter.blocked_for(bucket)):
                raise RateLimited(f"X asked us to wait on {bucket}", retry_after=blocked, bucket=bucket)
            try:
                return fn()
            except tweepy.TooManyRequests as exc:
                wait = retry_after_from_headers(exc.response.headers)
                wait = POST_WINDOW_SECONDS if wait is None else wait
                if bucket:
                    self.limiter.block(bucket, wait)
                raise RateLimited(
                    f"X rate limit: {exc}", retry_after=wait, service=SERVICE, bucket=bucket
                ) from exc
            except tweepy.TwitterServerError as exc:
                raise TransientError(f"X {exc.response.status_code}: {exc}", service=SERVICE) from exc
            except tweepy.HTTPException as exc:
                raise PermanentError(f"X {exc.response.status_code}: {exc}", service=SERVICE) from exc
            except (requests.RequestException, tweepy.TweepyException) as exc:
                # Connection failures and timeouts (tweepy.API wraps them in a bare TweepyException).
                raise TransientError(f"X unreachable: {exc}", service=SERVICE) from exc

        return guarded(SERVICE, attempt, policy=self.policy, sleep=self.sleep)

    # --- publish --------------------------------------------------------------------------------------------

    def publish(self, post: OutboundPost) -> PublishResult:
        parts = list(post.parts) or [post.text]
        for part in parts:
            if (length := text_length(part, "x")) > MAX_WEIGHTED_CHARS:
                raise PermanentError(f"post is {length} weighted characters; X allows {MAX_WEIGHTED_CHARS}")
        if post.channel.startswith(DM_PREFIX):
            return self._direct_message(post.channel.removeprefix(DM_PREFIX), post.text)

        progress = PublishProgress(self.platform, post.idempotency_key)
        ids = progress.sent()
        media_ids = None
        if post.image is not None and not ids:
            media = self._call(
                lambda: self.api.media_upload(filename=post.image_name, file=io.BytesIO(post.image or b""))
            )
            media_ids = [media.media_id_string]
        for index in range(len(ids), len(parts)):
            reply_to = ids[-1] if ids else (post.reply_to or None)
            response = self._call(
                functools.partial(
                    self.client.create_tweet,
                    text=parts[index],
                    in_reply_to_tweet_id=reply_to,
                    media_ids=media_ids if index == 0 else None,
                    user_auth=True,
                ),
                bucket="tweets",
            )
            ids.append(str(response.data["id"]))
            progress.record(ids)
        return PublishResult(external_id=ids[0], url=self.url(ids[0]), part_ids=tuple(ids))

    def _direct_message(self, user_id: str, text: str) -> PublishResult:
        response = self._call(
            lambda: self.client.create_direct_message(participant_id=user_id, text=text, user_auth=True),
            bucket="dm",
        )
        event_id = str(response.data["dm_event_id"])
        return PublishResult(external_id=event_id, part_ids=(event_id,))

    @staticmethod
    def url(tweet_id: str) -> str:
        return f"https://x.com/i/web/status/{tweet_id}"

    # --- inbound --------------------------------------------------------------------------------------------

    def _my_user_id(self) -> str:
        key = f"x:user-id:{self._account}"
        if user_id := cache.get(key):
            return str(user_id)
        response = self._call(lambda: self.client.get_me(user_auth=True))
        user_id = str(response.data.id)
        cache.set(key, user_id, timeout=None)
        return user_id

    def fetch_inbound(self, *, since: dt.datetime | None) -> list[InboundEvent]:
        """Mentions of the account, which include every reply to its posts."""
        return self.mentions(since=since)[0]

    def mentions(
        self, *, since: dt.datetime | None = None, since_id: str = "", pages: int = MENTION_PAGES
    ) -> tuple[list[InboundEvent], str]:
        """The account's mentions after ``since`` (a time) or ``since_id`` (a tweet id), up to ``pages``
        pages of 100, and the newest id X reported (empty when there were none)."""
        me = self._my_user_id()
        after: dict[str, Any] = {"since_id": since_id} if since_id else {"start_time": since}
        events: list[InboundEvent] = []
        newest = ""
        token = None
        for _ in range(pages):
            response = self._call(
                functools.partial(
                    self.client.get_users_mentions,
                    id=me,
                    **after,
                    max_results=100,
                    pagination_token=token,
                    tweet_fields=["created_at", "author_id", "conversation_id", "referenced_tweets"],
                    expansions=["author_id"],
                    user_fields=["username", "name"],
                    user_auth=True,
                ),
                bucket="mentions",
            )
            newest = newest or str(response.meta.get("newest_id") or "")
            users = {str(u.id): u for u in response.includes.get("users", [])}
            events += [self._event(tweet, users) for tweet in response.data or []]
            token = response.meta.get("next_token")
            if not token:
                break
        return events, newest

    def _event(self, tweet: tweepy.Tweet, users: dict[str, Any]) -> InboundEvent:
        replied_to = next(
            (str(ref.id) for ref in tweet.referenced_tweets or [] if ref.type == "replied_to"), ""
        )
        author = users.get(str(tweet.author_id))
        return InboundEvent(
            platform=self.platform,
            kind="reply" if replied_to else "mention",
            external_id=str(tweet.id),
            author_id=str(tweet.author_id),
            author_username=author.username if author else "",
            author_display_name=author.name if author else "",
            occurred_at=tweet.created_at,
            text=tweet.text,
            in_reply_to=replied_to,
        )

    # --- metrics --------------------------------------------------------------------------------------------

    def fetch_metrics(self, external_ids: list[str]) -> list[PostMetrics]:
        results: list[PostMetrics] = []
        for start in range(0, len(external_ids), 100):
            batch = external_ids[start : start + 100]
            response = self._call(
                functools.partial(
                    self.client.get_tweets, ids=batch, tweet_fields=["public_metrics"], user_auth=True
                ),
                bucket="lookup",
            )
            for tweet in response.data or []:
                public = tweet.public_metrics or {}
                results.append(
                    PostMetrics(
                        external_id=str(tweet.id),
                        metrics={
                            "impressions": int(public.get("impression_count", 0)),
                            "likes": int(public.get("like_count", 0)),
                            "reposts": int(public.get("retweet_count", 0)),
                            "replies": int(public.get("reply_count", 0)),
                            "quotes": int(public.get("quote_count", 0)),
                            "bookmarks": int(public.get("bookmark_count", 0)),
                        },
                    )
                )
        return results
