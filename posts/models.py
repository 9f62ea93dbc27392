"""Posts (video work orders), their shot-by-shot storyboards and their event trail."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from artists.models import SANITY_ID_HELP, sanity_id_unique
from mcn_site.lib.media import audio_duration, validate_image_or_video
from mcn_site.lib.text import NulFreeText


def validate_music(file) -> None:
    """Background music: a WAV or MP3 that can be read (any length: it loops or is cut), at most
    MCN_MAX_AUDIO_BYTES like every audio upload."""
    audio_duration(file, what="music file")


class AspectRatio(models.TextChoices):
    PORTRAIT = "9:16", "9:16 portrait (1080x1920)"
    LANDSCAPE = "16:9", "16:9 landscape (1920x1080)"
    SQUARE = "1:1", "1:1 square (1080x1080)"


# Output size per aspect ratio: the render's frame and the ComfyUI job's WIDTH/HEIGHT.
ASPECT_SIZES = {
    AspectRatio.PORTRAIT: (1080, 1920),
    AspectRatio.LANDSCAPE: (1920, 1080),
    AspectRatio.SQUARE: (1080, 1080),
}


class PostStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    REVIEW = "review", "In review"
    REJECTED = "rejected", "Rejected"
    APPROVED = "approved", "Approved"
    RENDERING = "rendering", "Rendering"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


# The one place that says which status may follow which. Reviewer-only moves are
# marked in REVIEW_TRANSITIONS; posts.services.post_transition enforces both.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    PostStatus.DRAFT: frozenset({PostStatus.REVIEW}),
    PostStatus.REVIEW: frozenset({PostStatus.APPROVED, PostStatus.REJECTED, PostStatus.DRAFT}),
    PostStatus.REJECTED: frozenset({PostStatus.DRAFT}),
    PostStatus.APPROVED: frozenset({PostStatus.RENDERING, PostStatus.DRAFT}),
    PostStatus.RENDERING: frozenset({PostStatus.DONE, PostStatus.FAILED}),
    PostStatus.FAILED: frozenset({PostStatus.RENDERING, PostStatus.DRAFT}),
    PostStatus.DONE: frozenset(),
}
REVIEW_TRANSITIONS = frozenset({(PostStatus.REVIEW, PostStatus.APPROVED), (PostStatus.REVIEW, PostStatus.REJECTED)})
# Storyboards can be edited only while nobody is reviewing or producing them.
EDITABLE_STATUSES = frozenset({PostStatus.DRAFT, PostStatus.REJECTED, PostStatus.FAILED})


class PostQuerySet(models.QuerySet):
    def awaiting_review(self) -> "PostQuerySet":
        return self.filter(status=PostStatus.REVIEW)


class Post(NulFreeText, models.Model):
    title = models.CharField(max_length=200)
    artist = models.ForeignKey("artists.Artist", on_delete=models.PROTECT, related_name="posts")
    wardrobe = models.ForeignKey(
        "artists.Wardrobe",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="posts",
        help_text="One of the artist's allowed wardrobes.",
    )
    brief = models.TextField(blank=True, help_text="What the video is about: the director writes from this.")
    source_content = models.TextField(blank=True, help_text="Scraped article or transcript the brief draws on.")
    created_from_schedule = models.ForeignKey(
        "schedules.Schedule", on_delete=models.SET_NULL, null=True, blank=True, related_name="posts"
    )
    created_from_source = models.ForeignKey(
        "artists.Source", on_delete=models.SET_NULL, null=True, blank=True, related_name="posts"
    )
    status = models.CharField(max_length=20, choices=PostStatus.choices, default=PostStatus.DRAFT)
    feedback = models.TextField(blank=True, help_text="The reviewer's notes from the last rejection.")
    aspect_ratio = models.CharField(max_length=5, choices=AspectRatio.choices, default=AspectRatio.PORTRAIT)
    music = models.FileField(
        upload_to="posts/music/",
        blank=True,
        validators=[validate_music],
        help_text="Optional background music (WAV or MP3), mixed low and ducked under the voice.",
    )
    final_video = models.FileField(upload_to="posts/final/", blank=True, editable=False)
    render_job = models.ForeignKey(
        "factory.Job", on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    failure = models.TextField(blank=True, editable=False, help_text="Why production failed: which shot, and what.")
    # Optimistic concurrency: every write bumps it, a write based on an older one is refused.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    sanity_id = models.CharField(max_length=200, blank=True, editable=False, help_text=SANITY_ID_HELP)

    objects = PostQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("review_post", "Can approve or reject posts")]
        indexes = [
            # The post list filtered by artist and status (admin changelist, /posts/).
            models.Index(fields=["artist", "status"], name="post_artist_status_idx"),
            # Review queue: Post.objects.awaiting_review() ordered by age.
            models.Index(fields=["status", "created_at"], name="post_status_created_idx"),
            # Which row names a media file: posts.selectors.media_visible_to, on every /media/ request.
            models.Index(fields=["music"], name="post_music_idx"),
            models.Index(fields=["final_video"], name="post_final_video_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=PostStatus.values), name="post_status_valid"),
            models.CheckConstraint(condition=Q(version__gte=1), name="post_version_positive"),
            sanity_id_unique("post_sanity_id_unique"),
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        allowed = self.artist.allowed_wardrobes if self.artist_id else None
        if self.wardrobe_id and allowed is not None and not allowed.filter(pk=self.wardrobe_id).exists():
            raise ValidationError({"wardrobe": f"“{self.wardrobe}” is not one of {self.artist}'s allowed wardrobes."})

    @property
    def is_editable(self) -> bool:
        return self.status in EDITABLE_STATUSES


class PostEvent(models.Model):
    """Append-only trail of what happened to a post: status changes, edits, feedback."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        STATUS = "status", "Status changed"
        EDITED = "edited", "Edited"
        STORYBOARD = "storyboard", "Storyboard changed"
        BUDGET = "budget", "Budget"  # the artist's month crossed 80 % of its budget (posts.costs)

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    from_status = models.CharField(max_length=20, choices=PostStatus.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=PostStatus.choices, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # A post's trail, newest last (post page, admin inline, API).
            models.Index(fields=["post", "created_at"], name="postevent_post_created_idx"),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.STATUS:
            return f"{self.post}: {self.from_status} → {self.to_status}"
        return f"{self.post}: {self.get_kind_display()}"


class ShotKind(models.TextChoices):
    A_ROLL = "a_roll", "A-roll (artist talking)"
    B_ROLL = "b_roll", "B-roll (cutaway)"
    PRODUCT = "product", "Product close-up"


class ShotStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PRODUCING = "producing", "Producing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Shot(NulFreeText, models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="shots")
    position = models.PositiveIntegerField(help_text="1, 2, 3 ... in playing order.")
    locked = models.BooleanField(default=False, help_text="Locked shots are never touched by AI regeneration.")
    kind = models.CharField(max_length=20, choices=ShotKind.choices, default=ShotKind.A_ROLL)
    duration_seconds = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("3.00"),
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("60"))],
    )
    script = models.TextField(blank=True, help_text="What the artist says (required for A-roll).")
    visual_prompt = models.TextField(blank=True, help_text="What the picture shows (for B-roll and product shots).")
    manual_asset = models.FileField(
        upload_to="shots/manual/",
        blank=True,
        validators=[validate_image_or_video],
        help_text="An image or video that replaces AI generation for this shot.",
    )
    generated_asset = models.FileField(upload_to="shots/generated/", blank=True, editable=False)
    # Content keys: the hash of the inputs the stored picture/voice were made from. Production
    # makes a shot again only when its key changes (posts.pipeline.picture_key / voice_key).
    picture_key = models.CharField(max_length=64, blank=True, editable=False)
    voice_asset = models.FileField(upload_to="shots/voice/", blank=True, editable=False)
    voice_key = models.CharField(max_length=64, blank=True, editable=False)
    voice_job = models.ForeignKey(
        "factory.Job", on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    # The shot's clip, made from its still and/or voice by a video workflow (ShotWorkflow step avatar or
    # motion); the render prefers it to the still. clip_key hashes its inputs, as picture_key does.
    generated_clip = models.FileField(upload_to="shots/clips/", blank=True, editable=False)
    clip_key = models.CharField(max_length=64, blank=True, editable=False)
    clip_job = models.ForeignKey(
        "factory.Job",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        help_text="The factory job making this shot's clip (avatar or motion) now (or last).",
    )
    error = models.TextField(blank=True, editable=False, help_text="Why producing this shot failed.")
    job = models.ForeignKey(
        "factory.Job",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        help_text="The factory job producing this shot's picture now (or last).",
    )
    status = models.CharField(max_length=20, choices=ShotStatus.choices, default=ShotStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    sanity_key = models.CharField(
        max_length=100,
        blank=True,
        editable=False,
        help_text="The _key of the storyboard item in the Sanity post this shot was imported from.",
    )

    class Meta:
        ordering = ["post", "position"]
        # Which row names a media file: posts.selectors.media_visible_to, on every /media/ request.
        indexes = [
            models.Index(fields=["manual_asset"], name="shot_manual_asset_idx"),
            models.Index(fields=["generated_asset"], name="shot_generated_asset_idx"),
            models.Index(fields=["voice_asset"], name="shot_voice_asset_idx"),
            models.Index(fields=["generated_clip"], name="shot_generated_clip_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["post", "position"], name="shot_unique_position"),
            # A re-import finds the shot by its Sanity _key, unique within the post's storyboard array.
            models.UniqueConstraint(
                fields=["post", "sanity_key"], condition=~Q(sanity_key=""), name="shot_sanity_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(duration_seconds__gt=0, duration_seconds__lte=60), name="shot_duration_0_60"
            ),
        ]

    def __str__(self) -> str:
        lock = "🔒 " if self.locked else ""
        return f"{lock}Shot {self.position}: {self.get_kind_display()}"

    def clean(self) -> None:
        if self.kind == ShotKind.A_ROLL and not self.script.strip():
            raise ValidationError({"script": "An A-roll shot needs a script: the words the artist says."})
        if self.kind != ShotKind.A_ROLL and not self.visual_prompt.strip() and not self.manual_asset:
            raise ValidationError({"visual_prompt": "Describe the picture, or upload a manual asset for this shot."})


class ShotWorkflow(models.Model):
    """Which factory workflow template makes each production step of each kind of shot.

    A shot's production is a small graph: its picture (a still), then, where a mapping exists for its kind,
    a clip made from it: `avatar` (the artist speaking the shot's voice: A-roll) or `motion` (the still,
    moving: B-roll, product). `bindings` names, for each of the template's own placeholders, the production
    parameter that fills it (posts.workflows.PARAMETERS); a placeholder named like a parameter needs none.
    """

    class Step(models.TextChoices):
        PICTURE = "picture", "Picture (a still)"
        AVATAR = "avatar", "Avatar (the artist speaks the shot's voice)"
        MOTION = "motion", "Motion (the still, moving)"

    kind = models.CharField(max_length=20, choices=ShotKind.choices)
    step = models.CharField(max_length=10, choices=Step.choices, default=Step.PICTURE)
    template_name = models.SlugField(
        max_length=100, help_text="Name of a factory workflow template; its latest active version is used."
    )
    bindings = models.JSONField(
        default=dict,
        blank=True,
        help_text='Template placeholder -> production parameter, e.g. {"POSITIVE_PROMPT": "PROMPT"}.',
    )

    class Meta:
        ordering = ["kind", "step"]
        constraints = [
            # One template per step of a kind: production asks "which template makes this step?".
            models.UniqueConstraint(fields=["kind", "step"], name="shotworkflow_kind_step_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.step} → {self.template_name}"

    def clean(self) -> None:
        # A typo'd template name or an unbound placeholder is refused here, where ops type it, not at approval.
        from posts.workflows import mapping_problems  # reads factory's templates; posts.workflows imports lazily

        problems = mapping_problems(step=self.step, template_name=self.template_name, bindings=self.bindings)
        if problems:
            raise ValidationError(problems)


class PromptTemplate(NulFreeText, models.Model):
    """The director's prompts as data: `{{var}}` placeholders, versioned, one active per role."""

    class Role(models.TextChoices):
        ANALYST = "analyst", "Analyst (reads the sources)"
        WRITER = "writer", "Writer (writes the lines)"
        DIRECTOR = "director", "Director (cuts into shots)"

    role = models.CharField(max_length=20, choices=Role.choices)
    version = models.PositiveIntegerField(default=1)
    template = models.TextField(help_text="Use {{artist_name}}, {{brief}}, {{target_seconds}} ... placeholders.")
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sanity_id = models.CharField(max_length=200, blank=True, editable=False, help_text=SANITY_ID_HELP)

    class Meta:
        ordering = ["role", "-version"]
        constraints = [
            sanity_id_unique("prompttemplate_sanity_id_unique"),
            models.UniqueConstraint(fields=["role", "version"], name="prompttemplate_role_version_unique"),
            # The director takes the active prompt of each role: there can be only one.
            models.UniqueConstraint(fields=["role"], condition=Q(active=True), name="prompttemplate_one_active"),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()} v{self.version}"

    def clean(self) -> None:
        from posts.director.prompts import VARIABLES, unknown_variables

        unknown = unknown_variables(self.template)
        if unknown:
            raise ValidationError(
                {"template": f"Unknown variables: {', '.join(unknown)}. Known: {', '.join(sorted(VARIABLES))}."}
            )


# --------------------------------------------------------------------------- webhooks


class WebhookEvent(models.TextChoices):
    """What an endpoint can subscribe to (posts.webhooks sends them); "ping" is the admin's test event."""

    POST_STATUS_CHANGED = "post.status_changed", "Post status changed"
    JOB_FINISHED = "job.finished", "Factory job finished"
    JOB_FAILED = "job.failed", "Factory job failed or cancelled"
    SCHEDULE_FIRED = "schedule.fired", "Schedule fired (draft post created)"
    RENDER_DONE = "render.done", "Render done (video ready)"
    PING = "ping", "Test event (ping)"


SUBSCRIBABLE_EVENTS = [(value, label) for value, label in WebhookEvent.choices if value != WebhookEvent.PING]


def webhook_secret() -> str:
    import secrets

    return "whsec_" + secrets.token_urlsafe(32)


class Webhook(NulFreeText, models.Model):
    """An integration's endpoint: which events it gets, signed with its secret."""

    name = models.CharField(max_length=100, help_text="Who receives it, e.g. “n8n publishing flow”.")
    url = models.URLField(
        max_length=500,
        help_text="http(s) URL that receives a POST per event. Addresses on our own network are refused "
        "unless MCN_WEBHOOK_ALLOW_PRIVATE=1.",
    )
    secret = models.CharField(
        max_length=200,
        default=webhook_secret,
        help_text="Signs every delivery (X-MCN-Signature). Give it to the receiver; change it to rotate.",
    )
    event_types = models.JSONField(default=list, help_text="The events this endpoint receives.")
    artist = models.ForeignKey(
        "artists.Artist",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="webhooks",
        help_text="Only events of this artist's posts. Empty: every artist.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from mcn_site.lib.netguard import check_public_url

        errors = {}
        known = {value for value, _label in SUBSCRIBABLE_EVENTS}
        if not isinstance(self.event_types, list) or not self.event_types:
            errors["event_types"] = "Pick at least one event."
        elif unknown := sorted(set(map(str, self.event_types)) - known):
            errors["event_types"] = f"Unknown events: {', '.join(unknown)}."
        if self.url:
            try:
                check_public_url(self.url, allow_private=settings.MCN_WEBHOOK_ALLOW_PRIVATE)
            except ValidationError as error:
                errors["url"] = error.messages
        if errors:
            raise ValidationError(errors)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event sent to one endpoint: the row is the truth, rq only rings the doorbell."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    uuid = models.UUIDField(unique=True, editable=False, help_text="X-MCN-Delivery: new for every redelivery.")
    event_id = models.UUIDField(editable=False, help_text="The event's id: the same in every redelivery of it.")
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    event_at = models.DateTimeField(help_text="When the event happened (created_at in the body).")
    payload = models.JSONField(default=dict, help_text="The event's data.")
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next attempt is due (or, while one runs, when it expires)."
    )
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first 2 KB of the last response.")
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The delivery log of one endpoint, newest first (admin changelist filtered by webhook).
            models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_created_idx"),
            # Pending deliveries whose attempt is due: the claim in posts.webhooks.deliver.
            models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.webhook} ({self.get_status_display()})"


class CostEntryQuerySet(models.QuerySet):
    def in_month(self, month: str) -> "CostEntryQuerySet":
        return self.filter(month=month)


class CostEntry(models.Model):
    """The cost ledger: one row per finished job that worked for a post, priced once (posts.costs).

    Written when the job reaches a terminal status (a failed or cancelled job costs what it consumed);
    a job retried and finished again is priced again from its cumulative usage, in the same row. The
    amounts keep the rates valid when the job finished (factory.costs): a later price change rewrites
    nothing. The row outlives its shot (rewritten away) and its post (deleted): the money was spent.
    """

    # SET_NULL: the spend stays in the ledger when ops clear old jobs (one row per job while it exists).
    job = models.OneToOneField(
        "factory.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="cost_entry"
    )
    artist = models.ForeignKey("artists.Artist", on_delete=models.PROTECT, related_name="cost_entries")
    post = models.ForeignKey(Post, on_delete=models.SET_NULL, null=True, blank=True, related_name="cost_entries")
    shot = models.ForeignKey(Shot, on_delete=models.SET_NULL, null=True, blank=True, related_name="cost_entries")
    step = models.CharField(max_length=20, help_text="picture, voice, avatar, motion, storyboard or render.")
    job_kind = models.CharField(max_length=20)
    job_status = models.CharField(max_length=20)
    template_name = models.CharField(max_length=100, blank=True)
    pool = models.CharField(max_length=50, blank=True, help_text="The GPU pool ('' = default).")
    llm_model = models.CharField(max_length=200, blank=True)
    month = models.CharField(max_length=7, help_text="YYYY-MM (site time zone) the job finished in.")
    finished_at = models.DateTimeField()
    gpu_seconds = models.FloatField(default=0)
    cpu_seconds = models.FloatField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    gpu_amount = models.DecimalField(max_digits=16, decimal_places=6, default=Decimal("0"))
    llm_amount = models.DecimalField(max_digits=16, decimal_places=6, default=Decimal("0"))
    cpu_amount = models.DecimalField(max_digits=16, decimal_places=6, default=Decimal("0"))
    amount = models.DecimalField(max_digits=16, decimal_places=6, default=Decimal("0"), help_text="The total.")
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CostEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-finished_at", "-id"]
        verbose_name = "cost entry"
        verbose_name_plural = "cost ledger"
        indexes = [
            # An artist's month (the budget check before each production, the API, the admin's totals).
            models.Index(fields=["artist", "month"], name="costentry_artist_month_idx"),
            # A post's cost on its storyboard page; a step's average over history (the estimate).
            models.Index(fields=["post", "step"], name="costentry_post_step_idx"),
            models.Index(fields=["template_name", "step"], name="costentry_template_step_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="costentry_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Job {self.job_id} ({self.step}): {self.amount} {self.currency}"
