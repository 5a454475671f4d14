"""Settings of the web servers the webhook benchmark starts: the application's own settings, untouched, with a
URLconf that serves the baseline view beside every application URL, and a Celery queue of the benchmark's own
for the run with a broker (no worker reads it; the benchmark deletes it afterwards)."""

from coinlink.settings import *  # noqa: F403

ROOT_URLCONF = "bench.baseline_urls"
CELERY_TASK_DEFAULT_QUEUE = "coinlink-bench-webhooks"
