"""The drainer-domain feed: phishing and wallet-drainer domains the moderation engine blocks.

``get_drainer_feed()`` picks by ``settings.MODERATION_DRAINER_FEED``: an ``http(s)://`` URL is fetched with
``HttpDrainerFeed`` (requests, inside the ``drainer_feed`` circuit breaker with the usual retries); anything else
is a path read by ``FileDrainerFeed``, the offline twin (by default the project's seed list,
``fixtures/moderation/drainer_domains.txt``).

Formats understood, whichever the source: plain text, one domain (or URL) a line, ``#`` comments and an
optional reason after the domain (``drainer.example  # fake Uniswap claim``); a JSON array of domains; or a JSON
object with a list under ``blacklist``, ``blocklist``, ``denylist`` or ``domains`` (MetaMask's
eth-phishing-detect ``config.json`` uses ``blacklist``). Entries are returned as written; normalising them is the
moderation service's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from django.conf import settings

from apps.core.resilience import PermanentError, RetryPolicy, guarded_call
from apps.integrations.news import http_get

SERVICE = "drainer_feed"
LIST_KEYS = ("blacklist", "blocklist", "denylist", "domains")


@dataclass(frozen=True)
class FeedEntry:
    domain: str
    reason: str = ""


class DrainerFeed(Protocol):
    source: str

    def fetch(self) -> list[FeedEntry]: ...


def parse_feed(body: str, *, source: str) -> list[FeedEntry]:
    stripped = body.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise PermanentError(f"{source}: not valid JSON ({exc})", service=SERVICE) from exc
        if isinstance(data, dict):
            items = next((data[key] for key in LIST_KEYS if isinstance(data.get(key), list)), None)
            if items is None:
                raise PermanentError(f"{source}: no list under {', '.join(LIST_KEYS)}", service=SERVICE)
        else:
            items = data
        return [FeedEntry(str(item).strip()) for item in items if isinstance(item, str) and item.strip()]
    entries: list[FeedEntry] = []
    for line in body.splitlines():
        domain, _, reason = line.partition("#")
        domain = domain.strip()
        if domain:
            entries.append(FeedEntry(domain.split()[0], reason.strip()))
    return entries


class HttpDrainerFeed:
    def __init__(self, url: str, *, timeout: float = 15.0, policy: RetryPolicy | None = None) -> None:
        self.url = url
        self.source = url
        self.timeout = timeout
        self.policy = policy or RetryPolicy()

    def fetch(self) -> list[FeedEntry]:
        def call() -> list[FeedEntry]:
            response = http_get(self.url, service=SERVICE, timeout=self.timeout)
            return parse_feed(response.text, source=self.url)

        return guarded_call(SERVICE, call, policy=self.policy)


class FileDrainerFeed:
    """The offline twin: the same formats read from a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.source = str(path)

    def fetch(self) -> list[FeedEntry]:
        try:
            body = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PermanentError(f"{self.path}: {exc}", service=SERVICE) from exc
        return parse_feed(body, source=str(self.path))


def seed_feed() -> FileDrainerFeed:
    """The project's own list, always loaded beside whatever feed is configured."""
    return FileDrainerFeed(Path(settings.BASE_DIR) / "fixtures" / "moderation" / "drainer_domains.txt")


def get_drainer_feed() -> DrainerFeed:
    location = settings.MODERATION_DRAINER_FEED.strip()
    if location.startswith(("http://", "https://")):
        return HttpDrainerFeed(location, timeout=settings.MODERATION_DRAINER_FEED_TIMEOUT_SECONDS)
    if not location:
        return seed_feed()
    path = Path(location)
    return FileDrainerFeed(path if path.is_absolute() else Path(settings.BASE_DIR) / path)
