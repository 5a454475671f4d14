"""Social posts about the watchlist: X recent search through tweepy, or ``fixtures/social/posts.json`` offline.

``since`` is inclusive. Posts come newest first.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import tweepy
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from requests.adapters import HTTPAdapter

from apps.core.resilience import (
    PermanentError,
    RateLimited,
    RetryPolicy,
    TransientError,
    guarded_call,
    retry_after_from_headers,
)
from apps.integrations.news import COIN_NAMES, coin_pattern
from apps.integrations.types import SocialPost, SocialSource

SERVICE = "social"
DEFAULT_POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0)
DEFAULT_TIMEOUT = 15.0
# X's windows are 15 minutes; when a 429 comes without x-rate-limit-reset, wait for one.
DEFAULT_RATE_LIMIT_WAIT = 900.0
X_API_HOST = "https://api.twitter.com"
# Recent search covers the last seven days and rejects an older start_time with a 400.
SEARCH_HORIZON = dt.timedelta(days=7) - dt.timedelta(minutes=1)
FIXTURE_POSTS = Path(settings.BASE_DIR) / "fixtures" / "social" / "posts.json"


def query_for(symbol: str) -> str:
    """The search for one watchlist entry: its cashtag, original posts in English."""
    return f"${symbol.split('/')[0].upper()} -is:retweet lang:en"


# --- X ------------------------------------------------------------------------------------------------------


class _XApiAdapter(HTTPAdapter):
    """Mounted on tweepy's session for api.twitter.com: sends its requests to ``base_url`` when one is set (a
    compatible server, or a fake in tests) and gives every request a timeout, which tweepy never sets."""

    def __init__(self, *, base_url: str, timeout: float) -> None:
        super().__init__()
        self._base = base_url.rstrip("/")
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self._base and request.url:
            parts = urlsplit(request.url)
            request.url = self._base + parts.path + (f"?{parts.query}" if parts.query else "")
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


class XSearchSource:
    """X API v2 recent search (app-only bearer token)."""

    name = "x"

    def __init__(
        self,
        bearer_token: str,
        *,
        api_base_url: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        policy: RetryPolicy = DEFAULT_POLICY,
        clock: Callable[[], dt.datetime] = timezone.now,
    ) -> None:
        self.client = tweepy.Client(bearer_token=bearer_token, wait_on_rate_limit=False)
        self.client.session.mount(X_API_HOST + "/", _XApiAdapter(base_url=api_base_url, timeout=timeout))
        self._policy = policy
        self._clock = clock

    def search(self, query: str, *, since: dt.datetime | None, limit: int) -> list[SocialPost]:
        start_time = None
        if since is not None:
            start_time = max(since, self._clock() - SEARCH_HORIZON)
        posts: list[SocialPost] = []
        next_token: str | None = None
        while len(posts) < limit:
            # X wants between 10 and 100 results a page.
            page_size = min(100, max(10, limit - len(posts)))
            page = guarded_call(
                SERVICE,
                functools.partial(self._page, query, start_time, page_size, next_token),
                policy=self._policy,
            )
            usernames = {str(user.id): user.username for user in page.includes.get("users", [])}
            for tweet in page.data or []:
                author_id = str(tweet.author_id or "")
                posts.append(
                    SocialPost(
                        external_id=str(tweet.id),
                        text=tweet.text,
                        created_at=tweet.created_at,
                        author_id=author_id,
                        author_username=usernames.get(author_id, ""),
                    )
                )
            next_token = page.meta.get("next_token")
            if not next_token:
                break
        return posts[:limit]

    def _page(
        self, query: str, start_time: dt.datetime | None, page_size: int, next_token: str | None
    ) -> Any:
        try:
            return self.client.search_recent_tweets(
                query,
                start_time=start_time,
                max_results=page_size,
                next_token=next_token,
                tweet_fields=["created_at", "author_id", "lang"],
                expansions=["author_id"],
                user_fields=["username"],
            )
        except tweepy.TooManyRequests as exc:
            if exc.reset_time is not None:
                wait: float | None = max(0.0, exc.reset_time - time.time())
            else:
                wait = retry_after_from_headers(exc.response.headers)
            raise RateLimited(
                f"X search: {exc}",
                retry_after=DEFAULT_RATE_LIMIT_WAIT if wait is None else wait,
                service=SERVICE,
                bucket="search",
            ) from exc
        except tweepy.TwitterServerError as exc:
            raise TransientError(f"X search: {exc}", service=SERVICE) from exc
        except tweepy.HTTPException as exc:  # 400, 401, 403, 404 and the odd other 4xx
            raise PermanentError(f"X search: {exc}", service=SERVICE) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"X search: {exc}", service=SERVICE) from exc
        except (tweepy.TweepyException, requests.RequestException) as exc:
            raise PermanentError(f"X search: {exc}", service=SERVICE) from exc


# --- offline twin -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FixturePost:
    id: int
    text: str
    author_id: str
    username: str
    minute_of_day: int


_OPERATOR = re.compile(r"^-|:|^\(|\)$|^OR$|^AND$")


class FileSocialSource:
    """The offline twin of X search: the posts in ``fixtures/social/posts.json``, each posted again every day
    at its time of day. A post's id is its fixture id plus the day, so a search over a given time returns
    the same ids whenever it runs, and the feed never runs dry."""

    name = "files"

    def __init__(
        self, path: Path = FIXTURE_POSTS, *, clock: Callable[[], dt.datetime] = timezone.now
    ) -> None:
        self._posts = _load_posts(path)
        self._clock = clock

    def search(self, query: str, *, since: dt.datetime | None, limit: int) -> list[SocialPost]:
        matches = _matcher(query)
        now = self._clock()
        start = since if since is not None else now - dt.timedelta(days=1)
        found = []
        day = start.date()
        while day <= now.date():
            midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            day_number = (day - dt.date(1970, 1, 1)).days
            for post in self._posts:
                created_at = midnight + dt.timedelta(minutes=post.minute_of_day)
                if start <= created_at <= now and matches(post.text):
                    found.append(
                        SocialPost(
                            external_id=str(post.id + day_number * 1_000_000),
                            text=post.text,
                            created_at=created_at,
                            author_id=post.author_id,
                            author_username=post.username,
                        )
                    )
            day += dt.timedelta(days=1)
        found.sort(key=lambda p: (p.created_at, p.external_id), reverse=True)
        return found[:limit]


@functools.cache
def _load_posts(path: Path) -> tuple[_FixturePost, ...]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    posts = []
    for item in raw["posts"]:
        hours, minutes = map(int, item["time"].split(":"))
        posts.append(
            _FixturePost(
                id=int(item["id"]),
                text=item["text"],
                author_id=item["author_id"],
                username=item["username"],
                minute_of_day=hours * 60 + minutes,
            )
        )
    return tuple(posts)


def _matcher(query: str) -> Callable[[str], bool]:
    """What the twin understands of X's query language: the coins a query names (by cashtag, ticker or name)
    select the posts that mention any of them; other plain words must appear; operators are ignored."""
    bases = {*COIN_NAMES, *(symbol.split("/")[0].upper() for symbol in settings.WATCHLIST)}
    coins = [pattern for base in sorted(bases) if (pattern := coin_pattern(base)).search(query)]
    if coins:
        return lambda text: any(pattern.search(text) for pattern in coins)
    words = [w.lower() for w in query.split() if not _OPERATOR.search(w)]
    return lambda text: all(word in text.lower() for word in words)


def get_social_source() -> SocialSource:
    backend = settings.SOCIAL_BACKEND
    if backend == "files":
        return FileSocialSource()
    if backend == "x":
        if not settings.X_BEARER_TOKEN:
            raise ImproperlyConfigured("SOCIAL_BACKEND=x needs X_BEARER_TOKEN")
        return XSearchSource(settings.X_BEARER_TOKEN, api_base_url=settings.X_API_BASE_URL)
    raise ImproperlyConfigured(f"SOCIAL_BACKEND must be files or x, not {backend!r}")
