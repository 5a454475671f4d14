# The embedded default's durable deferred task calls (retries with backoff, work taken out of requests).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0003_runs_degraded"),
    ]

    operations = [
        migrations.CreateModel(
            name="DeferredTask",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("task_name", models.CharField(max_length=200)),
                ("args", models.JSONField(blank=True, default=list)),
                ("kwargs", models.JSONField(blank=True, default=dict)),
                (
                    "retries",
                    models.PositiveIntegerField(
                        default=0, help_text="Celery's retry count for the next attempt (0 for the first)"
                    ),
                ),
                ("eta", models.DateTimeField(help_text="Not run before this time")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                        ],
                        default="pending",
                        max_length=10,
                    ),
                ),
                (
                    "locked_until",
                    models.DateTimeField(
                        blank=True,
                        null=True,
                        help_text="While running: when another process may take it (its runner died)",
                    ),
                ),
                ("last_error", models.TextField(blank=True)),
            ],
            options={
                "db_table": "deferred_tasks",
                "ordering": ["eta", "id"],
                "indexes": [models.Index(fields=["status", "eta"], name="deferred_tasks_due")],
            },
        ),
    ]
