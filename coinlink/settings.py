"""CoinLink settings, read from the environment.

Defaults are the embedded development setup: SQLite, in-memory channel layer, local-memory cache and Celery
tasks run in-process. ``DATABASE_URL`` switches to PostgreSQL; ``REDIS_URL`` switches the Celery broker, the
channel layer and the cache to Redis. ``DJANGO_ENV=production`` turns on the production hardening and refuses
to start without its secrets. Every variable is listed in the README.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be development, production or test, not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

# --- core ---------------------------------------------------------------------------------------------------
# A development-only key, public in this repository; production refuses it (and any other "insecure" one).
_DEVELOPMENT_SECRET_KEY = "dev-insecure-4b1e0c2f8a6d4e9f8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d"  # noqa: S105
if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("production needs SECRET_KEY (50 characters or more) in the environment")
    if SECRET_KEY == _DEVELOPMENT_SECRET_KEY or SECRET_KEY.startswith(("dev-insecure-", "django-insecure-")):
        raise ImproperlyConfigured(
            "production refuses the development SECRET_KEY committed in settings.py: generate a new one"
        )
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("production needs ALLOWED_HOSTS in the environment")
    if "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured("production refuses ALLOWED_HOSTS=*: name the hosts the site answers on")
    DEBUG = False
else:
    SECRET_KEY = env.str("SECRET_KEY", default=_DEVELOPMENT_SECRET_KEY)
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
    DEBUG = env.bool("DEBUG", default=DJANGO_ENV == "development")

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.discord",
    "apps.core",
    "apps.accounts",
    "apps.integrations",
    "apps.agents",
    "apps.experiments",
    "apps.market",
    "apps.community",
    "apps.content",
    "apps.billing",
    "apps.moderation",
    "apps.learning",
    "apps.bots",
    "apps.portal",
    "apps.dashboard",
]

MIDDLEWARE = [
    # First, so it counts and times every answer, the other middleware's included.
    "apps.core.metrics.HttpMetricsMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "coinlink.urls"
WSGI_APPLICATION = "coinlink.wsgi.application"
ASGI_APPLICATION = "coinlink.asgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- data ---------------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60 if PRODUCTION else 0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the in-process agents write while the server reads.
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL;"
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "coinlink",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "coinlink:asgi"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- auth ---------------------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:account"
ACCOUNT_LOGOUT_REDIRECT_URL = "portal:home"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.str(
    "ACCOUNT_EMAIL_VERIFICATION", default="mandatory" if PRODUCTION else "optional"
)
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[CoinLink] "

# Discord and Telegram accounts are linked to a member, never used to create one: the adapter closes social
# signup, and linking a Discord account records the member's Discord identity for role sync.
SOCIALACCOUNT_ADAPTER = "apps.accounts.adapters.SocialAccountAdapter"
DISCORD_OAUTH_CLIENT_ID = env.str("DISCORD_OAUTH_CLIENT_ID", default="")
DISCORD_OAUTH_CLIENT_SECRET = env.str("DISCORD_OAUTH_CLIENT_SECRET", default="")
if bool(DISCORD_OAUTH_CLIENT_ID) != bool(DISCORD_OAUTH_CLIENT_SECRET):
    raise ImproperlyConfigured("DISCORD_OAUTH_CLIENT_ID and DISCORD_OAUTH_CLIENT_SECRET go together")
SOCIALACCOUNT_PROVIDERS = {
    "discord": {
        # Only who the member is: no email, guilds or tokens are needed to link the account.
        "SCOPE": ["identify"],
        "APPS": (
            [{"client_id": DISCORD_OAUTH_CLIENT_ID, "secret": DISCORD_OAUTH_CLIENT_SECRET, "key": ""}]
            if DISCORD_OAUTH_CLIENT_ID
            else []
        ),
    }
}
SOCIALACCOUNT_STORE_TOKENS = False
# The Telegram Login Widget names the bot (its domain is set with @BotFather's /setdomain) and is verified with
# TELEGRAM_BOT_TOKEN; members can always link by sending the bot a one-time code instead.
TELEGRAM_LOGIN_BOT_USERNAME = env.str("TELEGRAM_LOGIN_BOT_USERNAME", default="")

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="CoinLink <noreply@coinlink.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- i18n, static, media ------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "var" / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
# Media (members-only files among them) live here, outside MEDIA_ROOT, which a production proxy serves to anyone;
# members reach them only through the entitlement-checked portal view.
PRIVATE_MEDIA_ROOT = env.path("PRIVATE_MEDIA_ROOT", default=BASE_DIR / "var" / "private-media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- API ----------------------------------------------------------------------------------------------------
# The schema and its docs map every endpoint and parameter: staff only in production unless this opens them.
API_DOCS_PUBLIC = env.bool("API_DOCS_PUBLIC", default=not PRODUCTION)
# Failed token authentications per client address before it is refused (429) for the same period.
API_AUTH_FAILURE_RATE = env.str("API_AUTH_FAILURE_RATE", default="10/min")
# Failed admin sign-ins before a lockout: per account at one address, and per address whatever the account.
ADMIN_LOGIN_FAILURE_RATE = env.str("ADMIN_LOGIN_FAILURE_RATE", default="5/15min")
ADMIN_LOGIN_ADDRESS_FAILURE_RATE = env.str("ADMIN_LOGIN_ADDRESS_FAILURE_RATE", default="30/15min")
for _name in ("API_AUTH_FAILURE_RATE", "ADMIN_LOGIN_FAILURE_RATE", "ADMIN_LOGIN_ADDRESS_FAILURE_RATE"):
    # The format apps.core.attempts.FailureBudget reads: a count, then a period of seconds to days.
    if not re.fullmatch(r"[1-9]\d*/\d*(s|sec|second|m|min|minute|h|hour|d|day)s?", vars()[_name]):
        raise ImproperlyConfigured(f"{_name} must look like 5/15min or 20/h, not {vars()[_name]!r}")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # Counts failed tokens per address and answers 429 once over API_AUTH_FAILURE_RATE.
        "apps.core.api.TokenAuthentication",
    ],
    # JSON bodies are parsed with a bound on nesting (apps.core.jsonsafe).
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.PageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="600/min"),
    },
    # Proxies in front of the web processes that append to X-Forwarded-For: throttles and lockouts count the
    # address the outermost of them saw; 0 counts REMOTE_ADDR (a client can write any X-Forwarded-For).
    "NUM_PROXIES": env.int("NUM_PROXIES", default=1 if PRODUCTION else 0),
    # drf-spectacular, plus the errors every operation shares (apps.core.openapi).
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": (
        ["rest_framework.renderers.JSONRenderer"]
        if PRODUCTION
        else ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"]
    ),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CoinLink API",
    "DESCRIPTION": "Insights, published content and the member's own account.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc are served from our own static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or "cache+memory://")
# Embedded default: with no broker the tasks run in the calling process.
CELERY_TASK_ALWAYS_EAGER = env.bool(
    "CELERY_TASK_ALWAYS_EAGER", default=not (REDIS_URL or env.str("CELERY_BROKER_URL", default=""))
)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_RESULT_EXPIRES = 3600
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis (and SQS) keep a message a worker took but never acknowledged, and hand it to another worker this many
# seconds later: how long the work of a worker killed outright waits. It must exceed the longest countdown a
# task is retried with (a platform sync waits up to an hour), or a waiting retry is delivered twice.
CELERY_BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_BROKER_VISIBILITY_TIMEOUT", default=7200)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT,
    # Each worker looks for such messages this often (kombu's default is every 100 s: 10 s, every 10th time).
    "unacked_restore_interval": max(1, min(10, CELERY_BROKER_VISIBILITY_TIMEOUT // 5)),
    "unacked_restore_throttle": 1,
}
# Workers and beat record a heartbeat (apps.core.heartbeats) this often; /health/ calls one whose last
# heartbeat is older than HEARTBEAT_STALE_SECONDS stale.
HEARTBEAT_INTERVAL_SECONDS = env.float("HEARTBEAT_INTERVAL_SECONDS", default=30.0)
HEARTBEAT_STALE_SECONDS = env.float("HEARTBEAT_STALE_SECONDS", default=120.0)
if CELERY_BROKER_VISIBILITY_TIMEOUT < 1:
    raise ImproperlyConfigured("CELERY_BROKER_VISIBILITY_TIMEOUT must be 1 or more")
if not 0 < HEARTBEAT_INTERVAL_SECONDS < HEARTBEAT_STALE_SECONDS:
    raise ImproperlyConfigured("HEARTBEAT_INTERVAL_SECONDS must be above 0 and below HEARTBEAT_STALE_SECONDS")

# --- logging ------------------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.logging.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "apps.core.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# --- security -----------------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes that call a web process directly speak plain HTTP and count a redirect as healthy, so a
    # redirected /health/ would hide a 503.
    SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_AGE = 60 * 60 * 24 * 14

# --- metrics ------------------------------------------------------------------------------------------------
# /metrics (apps.core.metrics). Multi-process mode is prometheus_client's own: it reads PROMETHEUS_MULTIPROC_DIR
# from the process environment (where a .env file also puts it) when first imported, after these settings; every
# web and worker process of a machine needs the same directory, emptied by `manage.py metrics_prepare` before
# they start.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# A scraper gets in with "Authorization: Bearer <METRICS_TOKEN>" or from an address in METRICS_ALLOWED_IPS
# (compared with the direct peer, so never list a public proxy's address); development is open on loopback.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[] if PRODUCTION else ["127.0.0.0/8", "::1"])
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_IPS must list addresses or networks (10.0.0.0/8), not {_network!r}"
        ) from None
if PRODUCTION and METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be 32 characters or more in production")

# --- resilience ---------------------------------------------------------------------------------------------
CIRCUIT_BREAKER_FAILURES = env.int("CIRCUIT_BREAKER_FAILURES", default=5)
CIRCUIT_BREAKER_RESET_SECONDS = env.int("CIRCUIT_BREAKER_RESET_SECONDS", default=60)

# --- publishing integrations --------------------------------------------------------------------------------
# Each defaults to its offline twin: templates write the posts and the outbox records what would be sent.
LLM_BACKEND = env.str("LLM_BACKEND", default="templates")
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="claude-sonnet-5-5")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")

X_BACKEND = env.str("X_BACKEND", default="outbox")
X_CONSUMER_KEY = env.str("X_CONSUMER_KEY", default="")
X_CONSUMER_SECRET = env.str("X_CONSUMER_SECRET", default="")
X_ACCESS_TOKEN = env.str("X_ACCESS_TOKEN", default="")
X_ACCESS_TOKEN_SECRET = env.str("X_ACCESS_TOKEN_SECRET", default="")
X_HANDLE = env.str("X_HANDLE", default="")
# Shared with the X search client: sends the real clients to a compatible server instead of api.twitter.com.
X_API_BASE_URL = env.str("X_API_BASE_URL", default="")

TELEGRAM_BACKEND = env.str("TELEGRAM_BACKEND", default="outbox")
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default="https://api.telegram.org")
TELEGRAM_CHANNEL_ID = env.str("TELEGRAM_CHANNEL_ID", default="")

DISCORD_BACKEND = env.str("DISCORD_BACKEND", default="outbox")
DISCORD_BOT_TOKEN = env.str("DISCORD_BOT_TOKEN", default="")
DISCORD_API_BASE_URL = env.str("DISCORD_API_BASE_URL", default="")
DISCORD_CHANNEL_ID = env.str("DISCORD_CHANNEL_ID", default="")
DISCORD_WEBHOOK_URL = env.str("DISCORD_WEBHOOK_URL", default="")
# The members' private channels, where the weekly report is announced; empty: not announced on that platform
# (never in the public channel instead).
TELEGRAM_MEMBERS_CHANNEL_ID = env.str("TELEGRAM_MEMBERS_CHANNEL_ID", default="")
DISCORD_MEMBERS_CHANNEL_ID = env.str("DISCORD_MEMBERS_CHANNEL_ID", default="")
if DISCORD_MEMBERS_CHANNEL_ID and not DISCORD_MEMBERS_CHANNEL_ID.isdigit():
    raise ImproperlyConfigured("DISCORD_MEMBERS_CHANNEL_ID must be a numeric Discord channel id")
for _members, _public in (
    ("TELEGRAM_MEMBERS_CHANNEL_ID", "TELEGRAM_CHANNEL_ID"),
    ("DISCORD_MEMBERS_CHANNEL_ID", "DISCORD_CHANNEL_ID"),
):
    if vars()[_members] and vars()[_members] == vars()[_public]:
        raise ImproperlyConfigured(f"{_members} must be a private channel, not the public {_public}")
# The operators' private channels, where performance alerts are posted (an alert rule names the platforms);
# empty: that platform's delivery is recorded as failed and the dashboard alone shows the alert.
TELEGRAM_OPERATORS_CHANNEL_ID = env.str("TELEGRAM_OPERATORS_CHANNEL_ID", default="")
DISCORD_OPERATORS_CHANNEL_ID = env.str("DISCORD_OPERATORS_CHANNEL_ID", default="")
if DISCORD_OPERATORS_CHANNEL_ID and not DISCORD_OPERATORS_CHANNEL_ID.isdigit():
    raise ImproperlyConfigured("DISCORD_OPERATORS_CHANNEL_ID must be a numeric Discord channel id")

if LLM_BACKEND not in {"templates", "anthropic"}:
    raise ImproperlyConfigured(f"LLM_BACKEND must be templates or anthropic, not {LLM_BACKEND!r}")
PUBLISHER_CREDENTIALS = {
    "x": ["X_CONSUMER_KEY", "X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"],
    "telegram": ["TELEGRAM_BOT_TOKEN", "TELEGRAM_CHANNEL_ID"],
    # A bot token with its channel, or a webhook (which can post but not read).
    "discord": ["DISCORD_BOT_TOKEN", "DISCORD_CHANNEL_ID"],
}
for _platform, _backend in {"x": X_BACKEND, "telegram": TELEGRAM_BACKEND, "discord": DISCORD_BACKEND}.items():
    if _backend not in {"outbox", "api"}:
        raise ImproperlyConfigured(f"{_platform.upper()}_BACKEND must be outbox or api, not {_backend!r}")
if PRODUCTION:
    # Production refuses to start with a real integration it cannot authenticate; get_writer and
    # get_publisher refuse the same in every environment, at the moment they are asked for one.
    if LLM_BACKEND == "anthropic" and not ANTHROPIC_API_KEY:
        raise ImproperlyConfigured("LLM_BACKEND=anthropic needs ANTHROPIC_API_KEY")
    for _platform, _names in PUBLISHER_CREDENTIALS.items():
        if globals()[f"{_platform.upper()}_BACKEND"] != "api":
            continue
        if _platform == "discord" and DISCORD_WEBHOOK_URL:
            continue
        if _missing := [name for name in _names if not globals()[name]]:
            raise ImproperlyConfigured(f"{_platform.upper()}_BACKEND=api needs {', '.join(_missing)}")

# --- market integrations ------------------------------------------------------------------------------------
# Each integration has a real client and an offline twin; the twins are the embedded default.
EXCHANGE_BACKEND = env.str("EXCHANGE_BACKEND", default="simulated")
EXCHANGE_ID = env.str("EXCHANGE_ID", default="binance")
EXCHANGE_API_URL = env.str("EXCHANGE_API_URL", default="")
EXCHANGE_TIMEOUT_SECONDS = env.float("EXCHANGE_TIMEOUT_SECONDS", default=10.0)
WATCHLIST = env.list("WATCHLIST", default=["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"])
MARKET_TIMEFRAME = env.str("MARKET_TIMEFRAME", default="1h")
NEWS_BACKEND = env.str("NEWS_BACKEND", default="files")
NEWS_FEEDS = env.list("NEWS_FEEDS", default=[])
NEWSAPI_KEY = env.str("NEWSAPI_KEY", default="")
NEWSAPI_URL = env.str("NEWSAPI_URL", default="https://newsapi.org")
SOCIAL_BACKEND = env.str("SOCIAL_BACKEND", default="files")
# X search also follows X_API_BASE_URL (with the publishing integrations above).
X_BEARER_TOKEN = env.str("X_BEARER_TOKEN", default="")

for _name, _choices in (
    ("EXCHANGE_BACKEND", {"simulated", "ccxt"}),
    ("NEWS_BACKEND", {"files", "rss"}),
    ("SOCIAL_BACKEND", {"files", "x"}),
):
    if vars()[_name] not in _choices:
        raise ImproperlyConfigured(f"{_name} must be one of {sorted(_choices)}, not {vars()[_name]!r}")
if _malformed := [symbol for symbol in WATCHLIST if symbol.count("/") != 1]:
    raise ImproperlyConfigured(f"WATCHLIST entries must look like BASE/QUOTE: {_malformed}")
if PRODUCTION:
    if NEWS_BACKEND == "rss" and not (NEWS_FEEDS or NEWSAPI_KEY):
        raise ImproperlyConfigured("NEWS_BACKEND=rss needs NEWS_FEEDS or NEWSAPI_KEY")
    if SOCIAL_BACKEND == "x" and not X_BEARER_TOKEN:
        raise ImproperlyConfigured("SOCIAL_BACKEND=x needs X_BEARER_TOKEN")

# --- agents -------------------------------------------------------------------------------------------------
# The embedded default runs the beat schedules and the agents inside the server process (runserver, daphne);
# with a broker, `celery beat` and the workers do.
AGENTS_RUN_IN_PROCESS = env.bool("AGENTS_RUN_IN_PROCESS", default=CELERY_TASK_ALWAYS_EAGER)
# Transient errors (timeouts, 5xx, rate limits) are retried with exponential backoff and jitter; a platform's
# retry-after wins over the backoff.
AGENT_RETRY_MAX_ATTEMPTS = env.int("AGENT_RETRY_MAX_ATTEMPTS", default=3)
AGENT_RETRY_BASE_DELAY = env.float("AGENT_RETRY_BASE_DELAY", default=10.0)
AGENT_RETRY_MAX_DELAY = env.float("AGENT_RETRY_MAX_DELAY", default=300.0)
# A crontab for the whole pipeline (five of its agents have no schedule of their own, so without it nothing
# is drafted); created once as a beat schedule, then edited in the admin. "off" (or empty) for none.
AGENT_PIPELINE_SCHEDULE = env.str("AGENT_PIPELINE_SCHEDULE", default="*/30 * * * *").strip()
if AGENT_PIPELINE_SCHEDULE.lower() in {"off", "none", "false"}:
    AGENT_PIPELINE_SCHEDULE = ""
if AGENT_RETRY_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("AGENT_RETRY_MAX_ATTEMPTS must be 1 or more")
if not 0 <= AGENT_RETRY_BASE_DELAY <= AGENT_RETRY_MAX_DELAY:
    raise ImproperlyConfigured("AGENT_RETRY_BASE_DELAY must be between 0 and AGENT_RETRY_MAX_DELAY")

# --- billing ------------------------------------------------------------------------------------------------
# Stripe. Without STRIPE_SECRET_KEY (development) checkout runs on the local twin; production needs the real
# key, and the webhook signing secret without which no Stripe event is accepted.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=10.0)
# A signed event older than this is refused, so a captured request cannot be replayed (Stripe's default).
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env.int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Production takes live keys only, unless this says a test-mode deployment (a staging site) is meant.
STRIPE_ALLOW_TEST_KEYS = env.bool("STRIPE_ALLOW_TEST_KEYS", default=not PRODUCTION)
BILLING_CURRENCY = env.str("BILLING_CURRENCY", default="usd").lower()

if BILLING_CURRENCY not in {"usd", "eur", "gbp"}:  # apps.core.models.Currency
    raise ImproperlyConfigured(f"BILLING_CURRENCY must be usd, eur or gbp, not {BILLING_CURRENCY!r}")
if STRIPE_WEBHOOK_TOLERANCE_SECONDS < 1:
    raise ImproperlyConfigured("STRIPE_WEBHOOK_TOLERANCE_SECONDS must be 1 or more")
_stripe_secrets = {"STRIPE_SECRET_KEY": STRIPE_SECRET_KEY, "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET}
if PRODUCTION and (_missing := [name for name, value in _stripe_secrets.items() if not value]):
    raise ImproperlyConfigured(f"production needs {', '.join(_missing)} in the environment")
if PRODUCTION and not STRIPE_ALLOW_TEST_KEYS:
    for _name, _value in (
        ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY),
        ("STRIPE_PUBLISHABLE_KEY", STRIPE_PUBLISHABLE_KEY),
    ):
        if _value.startswith(("sk_test_", "rk_test_", "pk_test_")):
            raise ImproperlyConfigured(
                f"{_name} is a Stripe test-mode key: production needs a live one "
                "(set STRIPE_ALLOW_TEST_KEYS=true for a test-mode deployment)"
            )
if PRODUCTION and not STRIPE_WEBHOOK_SECRET.startswith("whsec_"):
    raise ImproperlyConfigured(
        "STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret from Stripe, which starts with whsec_"
    )
CELERY_BEAT_SCHEDULE = {
    **vars().get("CELERY_BEAT_SCHEDULE", {}),
    # Takes ended Discord roles and Telegram channel memberships away.
    "billing.expire_entitlements": {"task": "billing.expire_entitlements", "schedule": 300.0},
    # Stripe events and agent runs a killed worker left half done, recovered without an operator.
    "billing.recover_stripe_events": {"task": "billing.recover_stripe_events", "schedule": 60.0},
    "agents.recover_abandoned_runs": {"task": "agents.recover_abandoned_runs", "schedule": 60.0},
    # One email and one dashboard event when new drafts wait for an operator's approval, not one per draft.
    "content.announce_waiting_drafts": {"task": "content.announce_waiting_drafts", "schedule": 600.0},
}

# --- content pipeline ---------------------------------------------------------------------------------------
# Added to every post, and counted towards the platform's length limit.
POST_DISCLAIMER = env.str("POST_DISCLAIMER", default="Not financial advice.")
# Drafts for these platforms are approved as soon as they pass the content checks; the others wait for an
# operator (the admin's approve action). Production approves nothing by itself unless told to.
CONTENT_AUTO_APPROVE_PLATFORMS = env.list(
    "CONTENT_AUTO_APPROVE_PLATFORMS", default=[] if PRODUCTION else ["x", "telegram", "discord"]
)
# Phrases no post may contain (case-insensitive, whole words); empty keeps the built-in list
# (apps.content.agents.creation.DEFAULT_BANNED_PHRASES).
CONTENT_BANNED_PHRASES = [p.strip() for p in env.list("CONTENT_BANNED_PHRASES", default=[]) if p.strip()]
# "x=8,telegram=4,discord=4": posts planned and published per platform and UTC day.
_daily_caps = env.str("CONTENT_DAILY_CAPS", default="x=8,telegram=4,discord=4")
CONTENT_DAILY_CAPS: dict[str, int] = {}
for _item in filter(None, (i.strip() for i in _daily_caps.split(","))):
    _platform, _, _cap = _item.partition("=")
    if _platform.strip() not in {"x", "telegram", "discord"} or not _cap.strip().isdigit():
        raise ImproperlyConfigured(f"CONTENT_DAILY_CAPS must look like x=8,telegram=4, not {_daily_caps!r}")
    CONTENT_DAILY_CAPS[_platform.strip()] = int(_cap)
# UTC hours nothing is scheduled or published in: "0-6" is midnight up to 6:00; ranges may wrap ("22-6") and
# be combined ("0-6,13-14"); empty for none.
CONTENT_QUIET_HOURS = env.str("CONTENT_QUIET_HOURS", default="0-6")
for _range in filter(None, (r.strip() for r in CONTENT_QUIET_HOURS.split(","))):
    _start, _, _end = _range.partition("-")
    if not (_start.isdigit() and _end.isdigit() and int(_start) <= 23 and int(_end) <= 24):
        raise ImproperlyConfigured(
            f"CONTENT_QUIET_HOURS must look like 0-6 or 22-6, not {CONTENT_QUIET_HOURS!r}"
        )
if _unknown := set(CONTENT_AUTO_APPROVE_PLATFORMS) - {"x", "telegram", "discord"}:
    raise ImproperlyConfigured(f"CONTENT_AUTO_APPROVE_PLATFORMS names unknown platforms: {sorted(_unknown)}")

# --- community access ---------------------------------------------------------------------------------------
# Entitlements carried to the platforms (apps.integrations.access; the offline twin while *_BACKEND=outbox):
# Discord roles in DISCORD_GUILD_ID, single-use invite links to Telegram channels, and the Telegram bot's webhook,
# which accepts an update only with TELEGRAM_WEBHOOK_SECRET in its path and in Telegram's secret-token header
# (empty: every update is refused).
DISCORD_GUILD_ID = env.str("DISCORD_GUILD_ID", default="")
TELEGRAM_WEBHOOK_SECRET = env.str("TELEGRAM_WEBHOOK_SECRET", default="")
TELEGRAM_INVITE_TTL_HOURS = env.int("TELEGRAM_INVITE_TTL_HOURS", default=24)

if TELEGRAM_WEBHOOK_SECRET and (
    len(TELEGRAM_WEBHOOK_SECRET) > 256
    or not all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in TELEGRAM_WEBHOOK_SECRET)
):
    # Telegram's own rule for setWebhook's secret_token.
    raise ImproperlyConfigured("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
if TELEGRAM_INVITE_TTL_HOURS < 1:
    raise ImproperlyConfigured("TELEGRAM_INVITE_TTL_HOURS must be 1 or more")

# --- the bots (manage.py run_discord_bot, run_telegram_bot; apps.bots) ------------------------------------
# The Discord channels whose messages the bot records and moderates (empty: every channel of DISCORD_GUILD_ID).
DISCORD_MODERATED_CHANNEL_IDS = env.list("DISCORD_MODERATED_CHANNEL_IDS", default=[])
# The gateway the Discord bot connects to (empty: Discord's own, wss://gateway.discord.gg/).
DISCORD_GATEWAY_URL = env.str("DISCORD_GATEWAY_URL", default="")
if _bad_channels := [c for c in DISCORD_MODERATED_CHANNEL_IDS if not c.isdigit()]:
    raise ImproperlyConfigured(
        f"DISCORD_MODERATED_CHANNEL_IDS holds numeric channel ids, not {_bad_channels}"
    )
# How often X mentions and replies are read (since the newest one read) into the inbound path; 0 turns it off.
X_MENTIONS_POLL_SECONDS = env.int("X_MENTIONS_POLL_SECONDS", default=120)
if X_MENTIONS_POLL_SECONDS < 0:
    raise ImproperlyConfigured("X_MENTIONS_POLL_SECONDS must be 0 (off) or more")
if X_MENTIONS_POLL_SECONDS:
    CELERY_BEAT_SCHEDULE["bots.poll_x_mentions"] = {
        "task": "bots.poll_x_mentions",
        "schedule": float(X_MENTIONS_POLL_SECONDS),
    }

# --- moderation enforcement ---------------------------------------------------------------------------------
# Telegram keeps bans and mutes per chat: the groups (and channels) where a mute or ban reaches someone, besides
# the chat their message was in. Discord's reach is the server, DISCORD_GUILD_ID. The ladder itself (thresholds,
# mute length, strike expiry) is the ModerationPolicy row the operator edits in the admin.
MODERATION_TELEGRAM_CHATS = env.list("MODERATION_TELEGRAM_CHATS", default=[])
if _bad_chats := [c for c in MODERATION_TELEGRAM_CHATS if not (c.lstrip("-").isdigit() or c.startswith("@"))]:
    raise ImproperlyConfigured(f"MODERATION_TELEGRAM_CHATS holds chat ids or @usernames, not {_bad_chats}")

# --- moderation engine --------------------------------------------------------------------------------------
# A message's combined score (0-1) at or above the remove threshold is removed, at or above the review threshold
# queued for an operator. The classifier fires from its minimum score up.
MODERATION_REMOVE_THRESHOLD = env.float("MODERATION_REMOVE_THRESHOLD", default=0.85)
MODERATION_REVIEW_THRESHOLD = env.float("MODERATION_REVIEW_THRESHOLD", default=0.6)
MODERATION_CLASSIFIER_MIN_SCORE = env.float("MODERATION_CLASSIFIER_MIN_SCORE", default=0.4)
if not 0 < MODERATION_REVIEW_THRESHOLD <= MODERATION_REMOVE_THRESHOLD <= 1:
    raise ImproperlyConfigured(
        "moderation thresholds need 0 < MODERATION_REVIEW_THRESHOLD <= MODERATION_REMOVE_THRESHOLD <= 1"
    )
# Someone counts as new for this long after joining, and for their first messages whatever their join date.
MODERATION_NEW_MEMBER_HOURS = env.float("MODERATION_NEW_MEMBER_HOURS", default=24.0)
MODERATION_NEW_MEMBER_MESSAGES = env.int("MODERATION_NEW_MEMBER_MESSAGES", default=3)
# Built-in limits besides the operators' rules (0 turns one off): more than N messages in T seconds per author,
# and the same text from N people within an hour.
MODERATION_FLOOD_MESSAGES = env.int("MODERATION_FLOOD_MESSAGES", default=8)
MODERATION_FLOOD_SECONDS = env.int("MODERATION_FLOOD_SECONDS", default=10)
MODERATION_DUPLICATE_AUTHORS = env.int("MODERATION_DUPLICATE_AUTHORS", default=3)
# Names nobody may look like, besides X_HANDLE, TELEGRAM_LOGIN_BOT_USERNAME and the staff's own identities.
MODERATION_PROTECTED_NAMES = [
    n.strip() for n in env.list("MODERATION_PROTECTED_NAMES", default=["CoinLink"]) if n.strip()
]
# The drainer-domain feed: an http(s) URL, or a file (relative paths from the project root); the project's seed
# list (fixtures/moderation/drainer_domains.txt) is always loaded too.
MODERATION_DRAINER_FEED = env.str(
    "MODERATION_DRAINER_FEED", default="fixtures/moderation/drainer_domains.txt"
)
MODERATION_DRAINER_FEED_TIMEOUT_SECONDS = env.float("MODERATION_DRAINER_FEED_TIMEOUT_SECONDS", default=15.0)
# How often a process looks for new labels and rule changes (seconds; the shared cache carries a version).
MODERATION_REFRESH_SECONDS = env.float("MODERATION_REFRESH_SECONDS", default=2.0)
# A full retraining counts an operator's or appeal's label this many times a seed example.
MODERATION_LABEL_WEIGHT = env.float("MODERATION_LABEL_WEIGHT", default=5.0)
# Ask the LLM (LLM_BACKEND) about borderline messages only; never needed, off by default.
MODERATION_LLM_CONFIRM = env.bool("MODERATION_LLM_CONFIRM", default=False)
