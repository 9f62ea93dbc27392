"""Webhooks: endpoints configured by ops and the log of every delivery (posts.webhooks)."""

import django.db.models.deletion
from django.db import migrations, models

import posts.models


class Migration(migrations.Migration):
    dependencies = [
        ("artists", "0001_initial"),
        ("posts", "0008_production"),
    ]

    operations = [
        migrations.CreateModel(
            name="Webhook",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(help_text="Who receives it, e.g. “n8n publishing flow”.", max_length=100)),
                (
                    "url",
                    models.URLField(
                        help_text="http(s) URL that receives a POST per event. Addresses on our own network are refused unless MCN_WEBHOOK_ALLOW_PRIVATE=1.",
                        max_length=500,
                    ),
                ),
                (
                    "secret",
                    models.CharField(
                        default=posts.models.webhook_secret,
                        help_text="Signs every delivery (X-MCN-Signature). Give it to the receiver; change it to rotate.",
                        max_length=200,
                    ),
                ),
                ("event_types", models.JSONField(default=list, help_text="The events this endpoint receives.")),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "artist",
                    models.ForeignKey(
                        blank=True,
                        help_text="Only events of this artist's posts. Empty: every artist.",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="webhooks",
                        to="artists.artist",
                    ),
                ),
            ],
            options={
                "ordering": ["name", "id"],
            },
        ),
        migrations.CreateModel(
            name="WebhookDelivery",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "uuid",
                    models.UUIDField(
                        editable=False, help_text="X-MCN-Delivery: new for every redelivery.", unique=True
                    ),
                ),
                (
                    "event_id",
                    models.UUIDField(editable=False, help_text="The event's id: the same in every redelivery of it."),
                ),
                (
                    "event_type",
                    models.CharField(
                        choices=[
                            ("post.status_changed", "Post status changed"),
                            ("job.finished", "Factory job finished"),
                            ("job.failed", "Factory job failed or cancelled"),
                            ("schedule.fired", "Schedule fired (draft post created)"),
                            ("render.done", "Render done (video ready)"),
                            ("ping", "Test event (ping)"),
                        ],
                        max_length=40,
                    ),
                ),
                ("event_at", models.DateTimeField(help_text="When the event happened (created_at in the body).")),
                ("payload", models.JSONField(default=dict, help_text="The event's data.")),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("succeeded", "Succeeded"), ("failed", "Failed")],
                        default="pending",
                        max_length=20,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0)),
                (
                    "next_attempt_at",
                    models.DateTimeField(
                        blank=True,
                        help_text="When the next attempt is due (or, while one runs, when it expires).",
                        null=True,
                    ),
                ),
                ("response_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("response_body", models.TextField(blank=True, help_text="The first 2 KB of the last response.")),
                ("error", models.TextField(blank=True)),
                ("duration_ms", models.PositiveIntegerField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                (
                    "webhook",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="deliveries", to="posts.webhook"
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "webhook deliveries",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_created_idx"),
                    models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due_idx"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("status__in", ["pending", "succeeded", "failed"])),
                        name="delivery_status_valid",
                    )
                ],
            },
        ),
    ]
