from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from artists.models import Wardrobe
from artists.selectors import artists_visible_to
from mcn_site.lib.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    ScopedAdmin,
    ScopedRelatedFieldListFilter,
    badge,
    thumbnail,
)
from mcn_site.lib.forms import AdminModelForm
from mcn_site.lib.roles import can_review
from posts import pipeline, services
from posts.director.prompts import VARIABLES
from posts.models import Post, PostEvent, PostStatus, PromptTemplate, Shot, ShotWorkflow
from posts.selectors import post_events_visible_to, posts_visible_to
from posts.workflows import PARAMETERS

STATUS_COLOURS = {
    PostStatus.DRAFT: "#6b7280",
    PostStatus.REVIEW: "#d97706",
    PostStatus.REJECTED: "#dc2626",
    PostStatus.APPROVED: "#2563eb",
    PostStatus.RENDERING: "#7c3aed",
    PostStatus.DONE: "#16a34a",
    PostStatus.FAILED: "#991b1b",
}


def status_badge(post: Post) -> str:
    return badge(post.get_status_display(), STATUS_COLOURS[post.status])


class ShotForm(AdminModelForm):
    class Meta:
        model = Shot
        fields = ["position", "locked", "kind", "duration_seconds", "script", "visual_prompt", "manual_asset"]
        widgets = {
            "script": forms.Textarea(attrs={"rows": 2, "cols": 36}),
            "visual_prompt": forms.Textarea(attrs={"rows": 2, "cols": 30}),
            "position": forms.NumberInput(attrs={"style": "width:4em"}),
            "duration_seconds": forms.NumberInput(attrs={"style": "width:5em", "step": "0.1"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["position"].required = False
        self.fields["position"].help_text = "Playing order. Leave empty to add at the end."

    def validate_unique(self):
        # Positions are renumbered 1..n by posts.services.storyboard_apply, so a typed
        # position that another shot holds in the database is a move, not a clash.
        pass


class ShotFormSet(BaseInlineFormSet):
    def validate_unique(self):
        # Two rows typed with the same position are an order (ties keep the rows' order
        # on the page), not a clash: storyboard_apply renumbers them 1..n.
        pass

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        originals = {s.pk: s for s in Shot.objects.filter(post=self.instance)} if self.instance.pk else {}
        problems = services.storyboard_problems(originals=originals, change=storyboard_change(self))
        if problems:
            raise ValidationError(problems)


def storyboard_change(formset) -> services.StoryboardChange:
    """The storyboard an inline formset describes: kept shots in their typed order, and deletions."""
    kept, deleted = [], []
    for index, form in enumerate(formset.forms):
        if not hasattr(form, "cleaned_data") or not form.cleaned_data:
            continue
        if formset.can_delete and formset._should_delete_form(form):
            if form.instance.pk:
                deleted.append(form.instance)
            continue
        if form.instance.pk or form.has_changed():
            position = form.cleaned_data.get("position") or 10_000 + index
            kept.append((position, index, form.instance))
    return services.StoryboardChange(shots=[shot for _, _, shot in sorted(kept, key=lambda k: k[:2])], deleted=deleted)


class ShotInline(admin.TabularInline):
    model = Shot
    form = ShotForm
    formset = ShotFormSet
    extra = 0
    ordering = ["position"]
    fields = [
        "position",
        "locked",
        "kind",
        "duration_seconds",
        "script",
        "visual_prompt",
        "manual_asset",
        "asset_preview",
        "status",
    ]
    readonly_fields = ["asset_preview", "status"]

    def _editable(self, obj) -> bool:
        return obj is None or obj.is_editable

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)

    @admin.display(description="Generated")
    def asset_preview(self, shot):
        return thumbnail(shot.generated_asset, size=64)


class PostEventInline(ReadOnlyInline):
    model = PostEvent
    fields = ["created_at", "actor", "kind", "from_status", "to_status", "note"]
    readonly_fields = fields
    verbose_name_plural = "Event trail"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


class PostForm(AdminModelForm):
    class Meta:
        model = Post
        fields = [
            "title", "artist", "wardrobe", "brief", "source_content", "created_from_source",
            "aspect_ratio", "music", "version",
        ]  # fmt: skip
        widgets = {"version": forms.HiddenInput}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].required = False
        artist_id = self._artist_id()
        if artist_id and "wardrobe" in self.fields:
            # The dropdown offers only the artist's allowed wardrobes; Post.clean enforces it anyway.
            self.fields["wardrobe"].queryset = Wardrobe.objects.filter(artists=artist_id)

    def _artist_id(self) -> int | None:
        """The artist the wardrobe must belong to: the submitted one, else the saved or pre-filled one."""
        if self.is_bound:
            raw = self.data.get(self.add_prefix("artist"))
        else:
            raw = self.initial.get("artist") or self.instance.artist_id
        try:
            return int(raw)
        except (TypeError, ValueError):
            return None

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk:
            services.post_check_version(post_id=self.instance.pk, expected_version=cleaned.get("version") or 0)
        return cleaned


class RejectForm(forms.Form):
    feedback = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
        help_text="What should change? The rewrite keeps locked shots and works from this.",
    )


# Written by the system (services, factory), shown read-only.
META_FIELDS = [
    "storyboard_link",
    "status_label",
    "feedback",
    "final_video",
    "failure",
    "created_from_schedule",
    "updated_by",
    "updated_at",
    "status_changed_at",
    "created_at",
    "sanity_id",
]


@admin.register(Post)
class PostAdmin(ScopedAdmin):
    form = PostForm
    scope = staticmethod(posts_visible_to)
    scoped_fields = {"artist": artists_visible_to}
    inlines = [ShotInline, PostEventInline]
    list_display = [
        "artist_face",
        "title",
        "artist",
        "status_label",
        "wardrobe",
        "shot_count",
        "updated_at",
        "storyboard_link",
    ]
    list_display_links = ["title"]
    list_filter = ["status", ("artist", ScopedRelatedFieldListFilter), "created_at"]
    list_select_related = ["artist", "wardrobe"]
    search_fields = ["title", "brief", "artist__stage_name", "sanity_id"]
    # Explicit: Meta.ordering is dropped from the GROUP BY query the shot count makes.
    ordering = ["-created_at", "-id"]
    autocomplete_fields = ["artist"]
    date_hierarchy = "created_at"
    readonly_fields = META_FIELDS
    fieldsets = [
        ("🛠️ Config", {"fields": ["title", "artist", "wardrobe", "created_from_source", "version"]}),
        ("Brief", {"fields": ["brief", "source_content"]}),
        ("🎬 Production", {"fields": ["aspect_ratio", "music"]}),
        ("📊 Meta", {"fields": META_FIELDS}),
    ]
    actions = ["submit_for_review", "approve", "reject", "produce", "back_to_draft"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_shots=Count("shots"))

    @admin.display(description="", ordering="artist__stage_name")
    def artist_face(self, post):
        return thumbnail(post.artist.face_anchor, size=32, alt=post.artist.stage_name)

    @admin.display(description="Storyboard")
    def storyboard_link(self, post):
        if not post.pk:
            return "–"
        return format_html('<a href="{}">Open storyboard ↗</a>', reverse("posts:storyboard", args=[post.pk]))

    @admin.display(description="Status", ordering="status")
    def status_label(self, post):
        return status_badge(post)

    @admin.display(description="Shots", ordering="n_shots")
    def shot_count(self, post):
        return post.n_shots

    # --- saving through the services ------------------------------------------------

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in services.POST_EDITABLE_FIELDS if name in form.cleaned_data}
        if change:
            fresh = Post.objects.get(pk=obj.pk)
            saved = services.post_update(
                post=fresh, actor=request.user, expected_version=form.cleaned_data["version"], data=data
            )
        else:
            saved = services.post_create(actor=request.user, **data)
        # The admin goes on to save inlines against form.instance: hand it the saved row.
        form.instance = saved
        obj.pk, obj.version = saved.pk, saved.version

    def save_formset(self, request, form, formset, change):
        if formset.model is not Shot:
            return super().save_formset(request, form, formset, change)
        # The shots are saved by storyboard_apply, not formset.save(); the admin's change
        # message still reads what formset.save() would have recorded.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if not formset.has_changed():
            return None
        storyboard = storyboard_change(formset)
        added = [shot for shot in storyboard.shots if shot.pk is None]
        edited = [(f.instance, f.changed_data) for f in formset.initial_forms if f.instance in storyboard.shots]
        post = form.instance
        services.storyboard_apply(post=post, actor=request.user, expected_version=post.version, change=storyboard)
        formset.new_objects = added
        formset.changed_objects = [(shot, fields) for shot, fields in edited if fields]
        formset.deleted_objects = storyboard.deleted
        return None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as error:
            # The forms check versions and locked shots first, so this is only reached when a
            # concurrent save slips in between clean() and the services (SQLite has no row locks).
            # The transaction has rolled back: nothing of this save was kept.
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    # --- admin actions: each one a service call per post --------------------------

    def has_review_permission(self, request):
        return can_review(request.user)

    def _apply(self, request, queryset, verb: str, call) -> None:
        done, failed = 0, []
        for post in queryset:
            try:
                call(post)
                done += 1
            except (ValidationError, PermissionDenied) as error:
                text = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
                failed.append(f"“{post}”: {text}")
        if done:
            self.message_user(request, f"{verb}: {done} post(s).", messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description="Submit for review", permissions=["change"])
    def submit_for_review(self, request, queryset):
        self._apply(
            request,
            queryset,
            "Submitted for review",
            lambda p: services.post_submit_for_review(post_id=p.pk, actor=request.user),
        )

    @admin.action(description="Approve (and produce)", permissions=["review"])
    def approve(self, request, queryset):
        self._apply(
            request,
            queryset,
            "Approved, in production",
            lambda p: pipeline.post_approve(post_id=p.pk, actor=request.user),
        )

    @admin.action(description="Produce again (retry a failed render)", permissions=["change"])
    def produce(self, request, queryset):
        self._apply(
            request, queryset, "In production", lambda p: pipeline.post_produce(post_id=p.pk, actor=request.user)
        )

    @admin.action(description="Reject with feedback…", permissions=["review"])
    def reject(self, request, queryset):
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            feedback = form.cleaned_data["feedback"]
            self._apply(
                request,
                queryset,
                "Rejected",
                lambda p: services.post_reject(post_id=p.pk, actor=request.user, feedback=feedback),
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Reject with feedback",
            "posts": queryset,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/posts/post/reject.html", context)

    @admin.action(description="Move back to draft", permissions=["change"])
    def back_to_draft(self, request, queryset):
        self._apply(
            request,
            queryset,
            "Moved back to draft",
            lambda p: services.post_transition(post_id=p.pk, to_status=PostStatus.DRAFT, actor=request.user),
        )


@admin.register(PostEvent)
class PostEventAdmin(ReadOnlyAdmin, ScopedAdmin):
    """The whole trail across posts, read-only: nobody edits history."""

    scope = staticmethod(post_events_visible_to)
    list_display = ["created_at", "post", "kind", "from_status", "to_status", "actor", "note"]
    list_filter = ["kind", "to_status", "created_at"]
    list_select_related = ["post", "actor"]
    search_fields = ["post__title", "note", "actor__username"]
    readonly_fields = ["post", "kind", "actor", "from_status", "to_status", "note", "created_at"]


class ShotWorkflowForm(AdminModelForm):
    """Saving checks the mapping (ShotWorkflow.clean): the template exists and every placeholder is filled."""

    class Meta:
        model = ShotWorkflow
        fields = ["kind", "step", "template_name", "bindings"]
        help_texts = {
            "bindings": "The template's own placeholder -> a production parameter, "
            '{"POSITIVE_PROMPT": "PROMPT"} for instance. A placeholder named like a parameter needs none. '
            "Parameters: " + ", ".join(PARAMETERS) + " (docs/workflows.md).",
        }


@admin.register(ShotWorkflow)
class ShotWorkflowAdmin(admin.ModelAdmin):
    """Ops choose which factory template makes each step of each kind of shot; a mapping is checked when saved."""

    form = ShotWorkflowForm
    list_display = ["kind", "step", "template_name", "bindings"]
    list_filter = ["step", "kind"]
    search_fields = ["template_name"]


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    """The director's prompts: edit the text, keep one active version per role."""

    list_display = ["role", "version", "active", "description", "created_at"]
    list_filter = ["role", "active"]
    search_fields = ["template", "description", "sanity_id"]
    readonly_fields = ["created_at", "variables", "sanity_id"]
    fields = ["role", "version", "active", "description", "template", "variables", "created_at", "sanity_id"]

    @admin.display(description="Variables you can use")
    def variables(self, template):
        return format_html_join(
            "", "<div><code>{{{{{}}}}}</code> {}</div>", ((name, text) for name, text in VARIABLES.items())
        )


# --------------------------------------------------------------------------- webhooks (ops only: ROLES)

from posts import webhooks  # noqa: E402 - the webhook admin below is self-contained
from posts.models import SUBSCRIBABLE_EVENTS, DeliveryStatus, Webhook, WebhookDelivery  # noqa: E402

DELIVERY_COLOURS = {
    DeliveryStatus.PENDING: "#d97706",
    DeliveryStatus.SUCCEEDED: "#16a34a",
    DeliveryStatus.FAILED: "#dc2626",
}


class WebhookForm(AdminModelForm):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label="URL",
        help_text=Webhook._meta.get_field("url").help_text,
        widget=forms.URLInput(attrs={"size": 80}),
    )
    event_types = forms.MultipleChoiceField(
        choices=SUBSCRIBABLE_EVENTS, widget=forms.CheckboxSelectMultiple, help_text="The events this endpoint receives."
    )

    class Meta:
        model = Webhook
        fields = ["name", "url", "active", "event_types", "artist", "secret"]
        widgets = {"secret": forms.TextInput(attrs={"size": 60, "autocomplete": "off"})}


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    """Integrations' endpoints: where each event goes, signed with the endpoint's secret."""

    form = WebhookForm
    list_display = ["name", "url", "active", "events", "artist", "last_delivery"]
    list_filter = ["active", "artist"]
    list_select_related = ["artist"]
    search_fields = ["name", "url"]
    autocomplete_fields = ["artist"]
    readonly_fields = ["created_at", "updated_at", "deliveries_link"]
    actions = ["send_test_event"]

    @admin.display(description="Events")
    def events(self, webhook):
        return ", ".join(webhook.event_types or []) or "–"

    @admin.display(description="Last delivery")
    def last_delivery(self, webhook):
        last = getattr(webhook, "_last", None)
        return status_badge_delivery(last) if last else "–"

    @admin.display(description="Deliveries")
    def deliveries_link(self, webhook):
        if not webhook.pk:
            return "–"
        url = reverse("admin:posts_webhookdelivery_changelist") + f"?webhook__id__exact={webhook.pk}"
        return format_html('<a href="{}">Delivery log</a>', url)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # One query for the page's last deliveries, not one per row.
        rows = list(changelist.result_list)
        latest = {}
        for delivery in WebhookDelivery.objects.filter(webhook__in=rows).order_by("webhook_id", "-created_at", "-id"):
            latest.setdefault(delivery.webhook_id, delivery)
        for row in rows:
            row._last = latest.get(row.pk)
        return changelist

    @admin.action(description="Send test event (ping)", permissions=["change"])
    def send_test_event(self, request, queryset):
        for webhook in queryset:
            webhooks.webhook_send_test(webhook=webhook)
        self.message_user(
            request, f"Queued a ping to {queryset.count()} endpoint(s); see the delivery log.", messages.SUCCESS
        )


def status_badge_delivery(delivery: WebhookDelivery) -> str:
    return badge(delivery.get_status_display(), DELIVERY_COLOURS[delivery.status])


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """The delivery log: what was sent where, what came back. Read-only; Redeliver sends an event again."""

    list_display = [
        "created_at",
        "webhook",
        "event_type",
        "status_badge",
        "response_code",
        "attempts",
        "duration_ms",
        "short_error",
        "delivered_at",
    ]
    list_filter = ["status", "event_type", "webhook", "created_at"]
    list_select_related = ["webhook"]
    search_fields = ["uuid", "event_id", "error"]
    fields = [
        "webhook",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "response_code",
        "duration_ms",
        "error",
        "response_body",
        "uuid",
        "event_id",
        "event_at",
        "payload",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields
    actions = ["redeliver"]

    @admin.display(description="Status", ordering="status")
    def status_badge(self, delivery):
        return status_badge_delivery(delivery)

    @admin.display(description="Error")
    def short_error(self, delivery):
        return (delivery.error[:80] + "…") if len(delivery.error) > 80 else delivery.error

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm("posts.change_webhook")

    @admin.action(description="Redeliver (same event, new delivery)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        for delivery in queryset.select_related("webhook"):
            webhooks.webhook_redeliver(delivery=delivery)
        self.message_user(request, f"Queued {queryset.count()} redelivery(ies).", messages.SUCCESS)


# --- the cost ledger ----------------------------------------------------------------------------

from django.conf import settings  # noqa: E402 - the ledger admin below is self-contained

from posts.costs import cost_entries_visible_to, totals, totals_by_artist_month  # noqa: E402
from posts.models import CostEntry  # noqa: E402


@admin.register(CostEntry)
class CostEntryAdmin(ReadOnlyAdmin, ScopedAdmin):
    """The cost ledger, read-only (posts.costs writes it): every priced job, with totals per artist and month
    of what the changelist shows. Producers and reviewers see their artists' rows only."""

    scope = staticmethod(cost_entries_visible_to)
    scoped_fields = {"artist": artists_visible_to}
    change_list_template = "admin/posts/costentry/change_list.html"
    date_hierarchy = "finished_at"
    list_display = [
        *("finished_at", "artist", "post", "shot", "step", "template_name", "job_status"),
        *("gpu_seconds", "tokens", "amount"),
    ]
    list_filter = ["month", ("artist", ScopedRelatedFieldListFilter), "step", "job_status", "pool"]
    list_select_related = ["artist", "post", "shot"]
    search_fields = ["post__title", "artist__stage_name", "template_name", "llm_model"]
    readonly_fields = [
        *("job", "artist", "post", "shot", "step", "job_kind", "job_status", "template_name", "pool", "llm_model"),
        *("month", "finished_at", "gpu_seconds", "cpu_seconds", "prompt_tokens", "completion_tokens"),
        *("gpu_amount", "llm_amount", "cpu_amount", "amount", "currency", "created_at", "updated_at"),
    ]

    @admin.display(description="Tokens")
    def tokens(self, entry):
        return entry.prompt_tokens + entry.completion_tokens

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:  # a redirect (bad filter) has no list
            rows = totals_by_artist_month(changelist.queryset)
            for row in rows:
                row["gpu_hours"] = row["gpu_seconds"] / 3600
            response.context_data.update(
                cost_totals=rows, cost_grand=totals(changelist.queryset), cost_currency=settings.MCN_CURRENCY
            )
        return response
