from decimal import Decimal

from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.db.models import Count, OuterRef, Subquery, Sum
from django.http import Http404
from django.urls import reverse
from django.utils.html import format_html

from artists.models import ApiToken, Artist, ArtistImage, BudgetState, Source, Voice, Wardrobe
from artists.selectors import artists_visible_to
from artists.services import api_token_create, api_token_revoke, artist_budget_lift
from mcn_site.lib.admin import ScopedAdmin, badge, thumbnail
from mcn_site.lib.forms import AdminModelForm, CommaSeparatedField
from mcn_site.lib.months import month_of
from mcn_site.lib.roles import is_ops


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    list_display = ["name", "engine", "speaker_id", "has_sample", "artist_count"]
    list_filter = ["engine"]
    search_fields = ["name", "speaker_id", "notes", "sanity_id"]
    # Explicit: Meta.ordering is dropped from the GROUP BY query the annotation makes (autocomplete pages).
    ordering = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "engine", "speaker_id"]}),
        ("Zero-shot sample", {"fields": ["sample_audio", "sample_player", "sample_transcription"]}),
        (None, {"fields": ["notes"]}),
        ("Machine", {"fields": ["sanity_id"]}),
    ]
    readonly_fields = ["sample_player", "sanity_id"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_artists=Count("artists"))

    @admin.display(boolean=True, description="Sample")
    def has_sample(self, voice):
        return bool(voice.sample_audio)

    @admin.display(description="Artists", ordering="n_artists")
    def artist_count(self, voice):
        return voice.n_artists

    @admin.display(description="Listen")
    def sample_player(self, voice):
        if not voice.sample_audio:
            return "–"
        return format_html('<audio controls preload="none" src="{}"></audio>', voice.sample_audio.url)


class WardrobeForm(AdminModelForm):
    class Meta:
        model = Wardrobe
        fields = ["name", "category", "preview", "comfy_payload"]


@admin.register(Wardrobe)
class WardrobeAdmin(admin.ModelAdmin):
    form = WardrobeForm
    list_display = ["preview_thumb", "name", "category", "lora_name"]
    list_display_links = ["preview_thumb", "name"]
    list_filter = ["category"]
    search_fields = ["name", "sanity_id"]
    fields = ["name", "category", "preview", "comfy_payload", "sanity_id"]
    readonly_fields = ["sanity_id"]

    @admin.display(description="")
    def preview_thumb(self, wardrobe):
        return thumbnail(wardrobe.preview, alt=wardrobe.name)

    @admin.display(description="LoRA")
    def lora_name(self, wardrobe):
        return (wardrobe.comfy_payload or {}).get("lora_name", "–") if isinstance(wardrobe.comfy_payload, dict) else "–"


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "category", "url", "max_items"]
    # A typed "example.com/feed" becomes https://, the scheme Django 6 assumes too.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_filter = ["category"]
    search_fields = ["name", "url", "instruction", "sanity_id"]
    readonly_fields = ["sanity_id"]


class ArtistImageInline(admin.TabularInline):
    model = ArtistImage
    extra = 0
    fields = ["kind", "image", "preview", "caption"]
    readonly_fields = ["preview"]

    @admin.display(description="Preview")
    def preview(self, image):
        return thumbnail(image.image, size=64)


class ArtistForm(AdminModelForm):
    content_focus = CommaSeparatedField(help_text="Topics to cover, separated by commas.")
    excluded_keywords = CommaSeparatedField(help_text="Topics never to touch, separated by commas.")

    class Meta:
        model = Artist
        fields = "__all__"


@admin.register(Artist)
class ArtistAdmin(ScopedAdmin):
    form = ArtistForm
    scope = staticmethod(artists_visible_to)
    list_display = ["face_thumb", "stage_name", "niche", "voice", "active", "post_count", "budget_this_month"]
    actions = ["lift_budget"]
    list_display_links = ["face_thumb", "stage_name"]
    list_filter = ["niche", "active"]
    list_select_related = ["voice"]
    search_fields = ["stage_name", "slug", "persona", "sanity_id"]
    # Explicit: Meta.ordering is dropped from the GROUP BY query the annotation makes (autocomplete pages).
    ordering = ["stage_name"]
    prepopulated_fields = {"slug": ["stage_name"]}
    autocomplete_fields = ["voice"]
    filter_horizontal = ["allowed_wardrobes", "default_sources", "members"]
    inlines = [ArtistImageInline]
    readonly_fields = [
        *("face_preview", "related_links", "created_at", "updated_at", "sanity_id"),
        *("budget_this_month", "budget_lifted"),
    ]
    fieldsets = [
        (
            "🧬 DNA",
            {
                "fields": [
                    "stage_name",
                    "slug",
                    "niche",
                    "persona",
                    "speaking_style",
                    "content_focus",
                    "excluded_keywords",
                    "colour",
                    "active",
                ]
            },
        ),
        (
            "📸 Visuals",
            {
                "fields": ["face_anchor", "face_preview", "full_body", "three_view_sheet"],
                "description": "Master visuals. Poses and studio backdrops are listed below.",
            },
        ),
        ("⚙️ Config", {"fields": ["voice", "allowed_wardrobes", "default_sources", "members"]}),
        (
            "💰 Budget",
            {
                "fields": ["monthly_budget", "budget_this_month", "budget_lifted"],
                "description": "What a month of production may cost. From 80 % the storyboard pages warn; at "
                "100 % new production is refused until ops lift the budget for the month (action in the list).",
            },
        ),
        ("Work", {"fields": ["related_links", "created_at", "updated_at", "sanity_id"]}),
    ]

    def get_queryset(self, request):
        # This month's spend: the cost ledger (posts.CostEntry) reached through its relation, as a subquery
        # (a join would multiply with the posts counted beside it); artists imports no other app.
        ledger = Artist._meta.get_field("cost_entries").related_model
        spend = (
            ledger.objects.filter(artist=OuterRef("pk"), month=month_of())
            .values("artist")
            .annotate(total=Sum("amount"))
            .values("total")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(n_posts=Count("posts", distinct=True), month_spend=Subquery(spend[:1]))
        )

    def get_readonly_fields(self, request, obj=None):
        # Only ops decide who works on an artist, and what a month of it may cost.
        fields = list(super().get_readonly_fields(request, obj))
        return fields if is_ops(request.user) else [*fields, "members", "monthly_budget"]

    def has_lift_permission(self, request) -> bool:
        return is_ops(request.user)

    @admin.action(description="Lift this month's budget (ops)", permissions=["lift"])
    def lift_budget(self, request, queryset):
        month = month_of()
        for artist in queryset:
            artist_budget_lift(artist_id=artist.pk, actor=request.user, month=month)
            self.log_change(request, artist, f"Budget lifted for {month}.")
        self.message_user(
            request, f"Budget lifted for {month}: {queryset.count()} artist(s) may produce again.", messages.SUCCESS
        )

    @admin.display(description="This month")
    def budget_this_month(self, artist):
        spent = getattr(artist, "month_spend", None)
        if spent is None and artist.pk and not hasattr(artist, "month_spend"):
            spent = artist.cost_entries.filter(month=month_of()).aggregate(total=Sum("amount"))["total"]
        spent = spent or Decimal("0")
        text = f"{settings.MCN_CURRENCY} {spent.quantize(Decimal('0.01'))}"
        if artist.monthly_budget is None:
            return text
        state = artist.budget_state(spent=spent, month=month_of())
        share = f"{spent / artist.monthly_budget * 100:.0f} %" if artist.monthly_budget else "100 %"
        label = f"{text} of {artist.monthly_budget} ({share})"
        colours = {
            BudgetState.WARNING: "#d97706",
            BudgetState.EXCEEDED: "#dc2626",
            BudgetState.LIFTED: "#0284c7",
        }
        if state in colours:
            return format_html("{} {}", label, badge(BudgetState(state).label, colours[state]))
        return label

    @admin.display(description="Lifted")
    def budget_lifted(self, artist):
        if not artist.budget_lifted_month:
            return "–"
        who = artist.budget_lifted_by.get_username() if artist.budget_lifted_by else "someone"
        return f"For {artist.budget_lifted_month}, by {who} on {artist.budget_lifted_at:%Y-%m-%d %H:%M}"

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change and not is_ops(request.user):
            # A producer who creates an artist works on it: without this it would vanish from their list.
            form.instance.members.add(request.user)

    @admin.display(description="")
    def face_thumb(self, artist):
        return thumbnail(artist.face_anchor, alt=artist.stage_name)

    @admin.display(description="Face anchor")
    def face_preview(self, artist):
        return thumbnail(artist.face_anchor, size=160, alt=artist.stage_name)

    @admin.display(description="Posts", ordering="n_posts")
    def post_count(self, artist):
        return artist.n_posts

    @admin.display(description="Schedules and posts")
    def related_links(self, artist):
        if not artist.pk:
            return "Save the artist first."
        schedules = reverse("admin:schedules_schedule_changelist") + f"?artist__id__exact={artist.pk}"
        new_schedule = reverse("admin:schedules_schedule_add") + f"?artist={artist.pk}"
        posts = reverse("admin:posts_post_changelist") + f"?artist__id__exact={artist.pk}"
        new_post = reverse("admin:posts_post_add") + f"?artist={artist.pk}"
        return format_html(
            '<a href="{}">📅 Schedules ({})</a> · <a href="{}">➕ New schedule for this artist</a><br>'
            '<a href="{}">🎬 Posts ({})</a> · <a href="{}">➕ New post</a>',
            schedules,
            artist.schedules.count(),
            new_schedule,
            posts,
            artist.posts.count(),
            new_post,
        )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Ops issue tokens for anyone; producers and reviewers see and make only their own.

    The key is made by artists.services.api_token_create and shown once, in the message after saving:
    only its hash is stored.
    """

    list_display = ["name", "user", "key_prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["key_prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if is_ops(request.user) else qs.filter(user=request.user)

    def get_fields(self, request, obj=None):
        if obj is not None:
            return ["name", "user", "key_prefix", "created_at", "last_used_at", "revoked_at"]
        return ["user", "name"] if is_ops(request.user) else ["name"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "user"] if obj is not None else self.readonly_fields

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such token, or not one of yours.")
        return obj

    @admin.display(description="Key")
    def key_prefix(self, token):
        return f"mcn_{token.prefix}_…" if token.prefix else "–"

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)  # only the name can change
            return
        user = obj.user if is_ops(request.user) and obj.user_id else request.user
        token, raw_key = api_token_create(user=user, name=obj.name)
        obj.pk, obj.user, obj.prefix, obj.key_hash, obj.created_at = (
            token.pk,
            token.user,
            token.prefix,
            token.key_hash,
            token.created_at,
        )
        obj._state.adding = False
        messages.warning(
            request,
            format_html("Copy this key now: it is shown only once. <code style='user-select:all'>{}</code>", raw_key),
        )

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset:
            api_token_revoke(token=token)
        self.message_user(request, f"{queryset.count()} token(s) revoked: they stop working at once.")
