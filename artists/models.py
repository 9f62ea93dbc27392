"""Artists and the assets they are built from: voices, wardrobes, sources, master visuals."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from mcn_site.lib.media import SquareImageValidator, VoiceSampleValidator, validate_image
from mcn_site.lib.text import NulFreeText

FACE_ANCHOR_MIN_SIDE = 512
VOICE_SAMPLE_SECONDS = (3.0, 30.0)
SANITY_ID_HELP = "The _id of the Sanity document this row was imported from (manage.py import_sanity)."


def sanity_id_unique(name: str) -> models.UniqueConstraint:
    """Re-imports find a row by its Sanity _id: at most one row per _id; rows made here have none."""
    return models.UniqueConstraint(fields=["sanity_id"], condition=~Q(sanity_id=""), name=name)


class Niche(models.TextChoices):
    FINANCE = "finance", "Finance"
    TECH = "tech", "Tech"
    KIDS = "kids", "Kids"
    METAPHYSICS = "metaphysics", "Metaphysics"


class Voice(NulFreeText, models.Model):
    class Engine(models.TextChoices):
        COSYVOICE = "cosyvoice", "CosyVoice"

    name = models.CharField(max_length=120)
    engine = models.CharField(max_length=20, choices=Engine.choices, default=Engine.COSYVOICE)
    speaker_id = models.CharField(
        max_length=120, blank=True, help_text="CosyVoice SFT speaker id. Leave empty for zero-shot cloning."
    )
    sample_audio = models.FileField(
        upload_to="voices/",
        blank=True,
        validators=[VoiceSampleValidator(*VOICE_SAMPLE_SECONDS)],
        help_text="WAV or MP3, 3 to 30 s, one clear speaker. Used for zero-shot cloning.",
    )
    sample_transcription = models.TextField(
        blank=True, help_text="The exact words spoken in the sample (zero-shot cloning needs them)."
    )
    notes = models.TextField(blank=True)
    sanity_id = models.CharField(max_length=200, blank=True, editable=False, help_text=SANITY_ID_HELP)

    class Meta:
        ordering = ["name"]
        constraints = [sanity_id_unique("voice_sanity_id_unique")]
        # Which row names a media file: posts.selectors.media_visible_to, on every /media/ request.
        indexes = [models.Index(fields=["sample_audio"], name="voice_sample_audio_idx")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.sample_audio and not self.sample_transcription.strip():
            raise ValidationError(
                {"sample_transcription": "Type the exact words spoken in the sample: zero-shot cloning needs them."}
            )
        if not self.sample_audio and not self.speaker_id.strip():
            raise ValidationError(
                {"sample_audio": "Give a sample recording (zero-shot cloning) or a speaker id (SFT voice)."}
            )


class Wardrobe(NulFreeText, models.Model):
    class Category(models.TextChoices):
        FORMAL = "formal", "Formal"
        CASUAL = "casual", "Casual"
        SPORT = "sport", "Sport"
        SPECIAL = "special", "Special"

    name = models.CharField(max_length=120)
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.CASUAL)
    preview = models.ImageField(upload_to="wardrobes/", blank=True, validators=[validate_image])
    comfy_payload = models.JSONField(
        default=dict,
        help_text='What ComfyUI needs, e.g. {"lora_name": "suit_v1.safetensors", '
        '"trigger_word": "navy blue suit", "strength": 0.8}.',
    )
    sanity_id = models.CharField(max_length=200, blank=True, editable=False, help_text=SANITY_ID_HELP)

    class Meta:
        ordering = ["name"]
        constraints = [sanity_id_unique("wardrobe_sanity_id_unique")]
        # Which row names a media file: posts.selectors.media_visible_to, on every /media/ request.
        indexes = [models.Index(fields=["preview"], name="wardrobe_preview_idx")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problems = comfy_payload_problems(self.comfy_payload)
        if problems:
            raise ValidationError({"comfy_payload": problems})


def comfy_payload_problems(payload) -> list[str]:
    """What is wrong with a wardrobe's ComfyUI payload, in words; empty when it is valid."""
    if not isinstance(payload, dict):
        return ['The payload must be a JSON object such as {"lora_name": "suit_v1.safetensors"}.']
    problems = []
    lora = payload.get("lora_name")
    if not isinstance(lora, str) or not lora.strip():
        problems.append('"lora_name" is required: the LoRA file name, e.g. "suit_v1.safetensors".')
    if "trigger_word" in payload and not isinstance(payload["trigger_word"], str):
        problems.append('"trigger_word" must be text.')
    if "strength" in payload:
        strength = payload["strength"]
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 2:
            problems.append(f'"strength" must be a number from 0 to 2 (got {strength!r}).')
    unknown = sorted(set(payload) - {"lora_name", "trigger_word", "strength"})
    if unknown:
        problems.append(f"Unknown keys: {', '.join(unknown)}. Allowed: lora_name, trigger_word, strength.")
    return problems


class Source(NulFreeText, models.Model):
    class Category(models.TextChoices):
        FINANCE = "finance", "Finance"
        TECH = "tech", "Tech"
        KIDS = "kids", "Kids"
        METAPHYSICS = "metaphysics", "Metaphysics"
        POLITICS = "politics", "Politics"
        ALL = "all", "All niches"

    name = models.CharField(max_length=120)
    category = models.CharField(
        max_length=20,
        choices=Category.choices,
        help_text="Keeps sources to the right artists: a finance artist never reads nursery rhymes.",
    )
    url = models.URLField(max_length=500, help_text="http or https only.")
    instruction = models.TextField(blank=True, help_text="What the director should focus on in this source.")
    max_items = models.PositiveSmallIntegerField(default=5)
    sanity_id = models.CharField(max_length=200, blank=True, editable=False, help_text=SANITY_ID_HELP)

    class Meta:
        ordering = ["name"]
        constraints = [
            sanity_id_unique("source_sanity_id_unique"),
            models.CheckConstraint(
                condition=Q(url__startswith="http://") | Q(url__startswith="https://"), name="source_url_http"
            ),
            models.CheckConstraint(condition=Q(max_items__gte=1, max_items__lte=100), name="source_max_items_1_100"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.url and not self.url.lower().startswith(("http://", "https://")):
            raise ValidationError({"url": "Only http:// and https:// addresses can be read."})
        if self.max_items is not None and not 1 <= self.max_items <= 100:
            raise ValidationError({"max_items": "Read between 1 and 100 items per run."})


BUDGET_WARNING_SHARE = Decimal("0.8")  # the pages warn from 80 % of the monthly budget


class BudgetState(models.TextChoices):
    NONE = "none", "No budget"
    OK = "ok", "Within budget"
    WARNING = "warning", "Over 80 % of the budget"
    EXCEEDED = "exceeded", "Budget spent: new production refused"
    LIFTED = "lifted", "Budget lifted by ops for this month"


class ArtistQuerySet(models.QuerySet):
    def with_member(self, user) -> "ArtistQuerySet":
        """Artists this user is a member of."""
        return self.filter(members=user)


class Artist(NulFreeText, models.Model):
    # DNA
    stage_name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    niche = models.CharField(max_length=20, choices=Niche.choices)
    persona = models.TextField(blank=True, help_text="Backstory and personality.")
    speaking_style = models.TextField(blank=True)
    content_focus = models.JSONField(default=list, blank=True, help_text="Topics to cover, as a list of words.")
    excluded_keywords = models.JSONField(default=list, blank=True, help_text="Topics never to touch.")
    colour = models.CharField(
        max_length=7,
        default="#4f46e5",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a #rrggbb colour such as #4f46e5.")],
        help_text="Brand colour (#rrggbb) for title cards and badges.",
    )
    # Visuals
    face_anchor = models.ImageField(
        upload_to="artists/faces/",
        validators=[SquareImageValidator(FACE_ANCHOR_MIN_SIDE)],
        help_text=f"Square face close-up, at least {FACE_ANCHOR_MIN_SIDE}x{FACE_ANCHOR_MIN_SIDE} px: "
        "locks the face in every shot.",
    )
    full_body = models.ImageField(upload_to="artists/body/", blank=True, validators=[validate_image])
    three_view_sheet = models.ImageField(
        upload_to="artists/sheets/", blank=True, validators=[validate_image], help_text="Front, side and back."
    )
    # Config
    voice = models.ForeignKey(Voice, on_delete=models.PROTECT, related_name="artists")
    allowed_wardrobes = models.ManyToManyField(Wardrobe, blank=True, related_name="artists")
    default_sources = models.ManyToManyField(Source, blank=True, related_name="artists")
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="artists", help_text="Who may work on this artist."
    )
    active = models.BooleanField(default=True)
    # Budget: what a month of this artist's production may cost (posts.costs prices it from the ledger).
    # Ops set it and lift it; at 80 % the pages warn, at 100 % new production is refused until lifted.
    monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="In MCN_CURRENCY, per calendar month; blank = no budget. Set by ops.",
    )
    budget_lifted_month = models.CharField(
        max_length=7, blank=True, editable=False, help_text="YYYY-MM: the month ops lifted the budget for."
    )
    budget_lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    budget_lifted_at = models.DateTimeField(null=True, blank=True, editable=False)
    budget_warned_month = models.CharField(
        max_length=7, blank=True, editable=False, help_text="YYYY-MM: the month the 80 % warning was noted."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sanity_id = models.CharField(max_length=200, blank=True, editable=False, help_text=SANITY_ID_HELP)

    objects = ArtistQuerySet.as_manager()

    class Meta:
        ordering = ["stage_name"]
        constraints = [sanity_id_unique("artist_sanity_id_unique")]
        # Which row names a media file: posts.selectors.media_visible_to, on every /media/ request.
        indexes = [
            models.Index(fields=["face_anchor"], name="artist_face_anchor_idx"),
            models.Index(fields=["full_body"], name="artist_full_body_idx"),
            models.Index(fields=["three_view_sheet"], name="artist_three_view_sheet_idx"),
        ]

    def __str__(self) -> str:
        return self.stage_name

    def budget_state(self, *, spent: Decimal, month: str) -> str:
        """Where `spent` (this month's ledger total) stands against the budget: one of BudgetState."""
        if self.monthly_budget is None:
            return BudgetState.NONE
        if self.budget_lifted_month == month:
            return BudgetState.LIFTED
        if spent >= self.monthly_budget:
            return BudgetState.EXCEEDED
        if spent >= self.monthly_budget * BUDGET_WARNING_SHARE:
            return BudgetState.WARNING
        return BudgetState.OK

    def clean(self) -> None:
        for field in ("content_focus", "excluded_keywords"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValidationError({field: 'Give a list of words, e.g. ["stocks", "crypto"].'})


class ArtistImage(NulFreeText, models.Model):
    """The many master visuals: the pose library and studio backdrops."""

    class Kind(models.TextChoices):
        POSE = "pose", "Pose"
        BACKDROP = "backdrop", "Studio backdrop"

    artist = models.ForeignKey(Artist, on_delete=models.CASCADE, related_name="images")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    image = models.ImageField(upload_to="artists/library/", validators=[validate_image])
    caption = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["artist", "kind", "id"]
        # Which row names a media file: posts.selectors.media_visible_to, on every /media/ request.
        indexes = [models.Index(fields=["image"], name="artistimage_image_idx")]

    def __str__(self) -> str:
        return f"{self.artist} {self.get_kind_display()} {self.caption}".strip()


class ApiToken(NulFreeText, models.Model):
    """A key an integration sends as `Authorization: Token <key>`: it acts as its user.

    Only the SHA-256 of the key is stored; the key itself is shown once, when it is made
    (artists.services.api_token_create). `prefix` finds the row without a scan.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=120, help_text="What uses it, e.g. “n8n publishing flow”.")
    prefix = models.CharField(max_length=8, unique=True, editable=False)  # unique: the lookup on every request
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} (mcn_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
