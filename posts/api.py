"""The integration API for posts, their storyboards and their event trail: /api/v1/posts, shots, post-events.

The same services as the storyboard page (posts.services, posts.pipeline, the director), the same
selectors (a post of another artist is a 404), the admin's role permissions (HasModelPermission).
Writes carry the post's version (If-Match or `version`); actions take an Idempotency-Key and
answer with the post and the ids of the jobs they started.
"""

from decimal import Decimal
from pathlib import PurePosixPath

from django.db import transaction
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.urls import path
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from artists.models import BudgetState, Wardrobe
from artists.selectors import artists_visible_to
from mcn_site.lib.api import (
    IDEMPOTENCY_KEY,
    IF_MATCH,
    DownloadNegotiation,
    ExpensiveThrottle,
    HasModelPermission,
    IdFilter,
    InstantFilter,
    errors,
    etag,
    expected_version,
    idempotent,
)
from mcn_site.lib.downloads import media_response
from mcn_site.lib.months import MONTH_PATTERN, month_of, parse_month
from posts import pipeline, services
from posts.costs import COST_PERMS, artist_costs, post_cost
from posts.director.jobs import storyboard_generate
from posts.models import CostEntry, Post, PostEvent, PostStatus, Shot
from posts.provenance import shot_provenance, with_jobs
from posts.selectors import (
    POST_ACTION_PERMS,
    SHOT_PERMS,
    may,
    post_events_visible_to,
    posts_visible_to,
    shots_visible_to,
)

POSTS, SHOTS, EVENTS = ["posts"], ["shots"], ["post events"]


# --------------------------------------------------------------------------- serializers (read)


class TemplateProvenanceSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The workflow template's name.")
    version = serializers.IntegerField()
    sha256 = serializers.CharField(help_text="sha256 of the canonical JSON of its workflow, placeholders and manifest.")


class VoiceProvenanceSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="The TTS model (COSYVOICE_MODEL); blank when not configured.")
    mode = serializers.ChoiceField(choices=["sft", "zero_shot"], help_text="Built-in speaker, or a cloned sample.")
    voice = serializers.CharField(help_text='The speaker id, or "sample <sha256>" of the sample cloned.')


class StepProvenanceSerializer(serializers.Serializer):
    job = serializers.IntegerField(help_text="The factory job that made the asset.")
    template = TemplateProvenanceSerializer(required=False, help_text="ComfyUI steps (picture, clip).")
    seed = serializers.IntegerField(required=False, allow_null=True)
    models = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Model files the workflow's loader nodes named."
    )
    comfyui_version = serializers.CharField(required=False, help_text="Of the ComfyUI that ran it.")
    tts = VoiceProvenanceSerializer(required=False, help_text="The voice step.")


class ShotProvenanceSerializer(serializers.Serializer):
    """How each produced asset was made; null for one not made (yet), being made, or replaced by a manual asset."""

    picture = StepProvenanceSerializer(allow_null=True)
    voice = StepProvenanceSerializer(allow_null=True)
    clip = StepProvenanceSerializer(allow_null=True)


class ShotSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.DecimalField(max_digits=5, decimal_places=2, coerce_to_string=False, read_only=True)
    provenance = serializers.SerializerMethodField(
        help_text="How each produced asset (picture, voice, clip) was made, from the job that made it."
    )

    class Meta:
        model = Shot
        fields = [
            *("id", "position", "kind", "duration_seconds", "script", "visual_prompt", "locked", "status"),
            *("manual_asset", "generated_asset", "voice_asset", "job", "voice_job", "error", "updated_at"),
            *("generated_clip", "clip_job"),  # the clip a video workflow made (avatar or motion), and its job
            "provenance",
        ]
        read_only_fields = fields

    @extend_schema_field(ShotProvenanceSerializer)
    def get_provenance(self, shot: Shot) -> dict:
        return shot_provenance(shot)


class ShotDetailSerializer(ShotSerializer):
    post = serializers.PrimaryKeyRelatedField(read_only=True)
    post_version = serializers.IntegerField(
        source="post.version", read_only=True, help_text="The post's version now: send it with the next write."
    )

    class Meta(ShotSerializer.Meta):
        fields = [*ShotSerializer.Meta.fields, "post", "post_version"]
        read_only_fields = fields


class PostSerializer(serializers.ModelSerializer):
    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    shots = ShotSerializer(many=True, read_only=True, help_text="The storyboard, in playing order.")

    class Meta:
        model = Post
        fields = [
            *("id", "title", "artist", "wardrobe", "brief", "source_content", "aspect_ratio", "status"),
            *("feedback", "version", "final_video", "render_job", "failure", "created_from_schedule"),
            *("created_from_source", "created_at", "updated_at", "updated_by", "status_changed_at", "shots"),
        ]
        read_only_fields = fields


class CostSerializer(serializers.Serializer):
    """Sums of the cost ledger (posts.costs): amounts as decimal strings in `currency`."""

    currency = serializers.CharField(help_text="MCN_CURRENCY: every amount is in it.")
    total = serializers.DecimalField(max_digits=20, decimal_places=4)
    gpu = serializers.DecimalField(max_digits=20, decimal_places=4, help_text="GPU hours (ComfyUI jobs).")
    llm = serializers.DecimalField(max_digits=20, decimal_places=4, help_text="LLM tokens (the director).")
    cpu = serializers.DecimalField(max_digits=20, decimal_places=4, help_text="CPU hours (TTS, render).")
    gpu_seconds = serializers.FloatField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    jobs = serializers.IntegerField(help_text="Finished jobs priced (failed and cancelled ones too).")


class PostDetailSerializer(PostSerializer):
    cost = serializers.SerializerMethodField(help_text="What the post cost so far (null: your role sees no costs).")

    class Meta(PostSerializer.Meta):
        fields = [*PostSerializer.Meta.fields, "cost"]
        read_only_fields = fields

    @extend_schema_field(CostSerializer(allow_null=True))
    def get_cost(self, post) -> dict | None:
        request = self.context.get("request")
        if request is None or not may(user=request.user, perms=COST_PERMS):
            return None
        return post_cost(post_id=post.pk)


class BudgetSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=BudgetState.choices)
    month = serializers.CharField()
    currency = serializers.CharField()
    budget = serializers.DecimalField(max_digits=20, decimal_places=4, allow_null=True)
    spent = serializers.DecimalField(max_digits=20, decimal_places=4, allow_null=True)
    message = serializers.CharField(allow_blank=True, help_text="The warning (80 %) or refusal (100 %), in words.")


class PostCostSerializer(serializers.Serializer):
    post = serializers.IntegerField(allow_null=True, help_text="null: a post deleted since (its spend stays).")
    title = serializers.CharField(allow_blank=True)
    total = serializers.DecimalField(max_digits=20, decimal_places=4)


class ArtistCostsSerializer(CostSerializer):
    artist = serializers.IntegerField()
    month = serializers.CharField(help_text="YYYY-MM, in the site's time zone.")
    budget = BudgetSerializer()
    posts = PostCostSerializer(many=True, help_text="Spend per post this month, most expensive first (100 at most).")


class PostEventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)
    # Only status changes have them: an edit, a note or a job event has "" for both.
    from_status = serializers.ChoiceField(
        choices=PostStatus.choices,
        allow_blank=True,
        read_only=True,
        help_text='"" for events that are no status change.',
    )
    to_status = serializers.ChoiceField(
        choices=PostStatus.choices,
        allow_blank=True,
        read_only=True,
        help_text='"" for events that are no status change.',
    )

    class Meta:
        model = PostEvent
        fields = ["id", "post", "kind", "actor", "from_status", "to_status", "note", "created_at"]
        read_only_fields = fields


class ActionResultSerializer(serializers.Serializer):
    post = PostSerializer()
    job_ids = serializers.ListField(child=serializers.IntegerField(), help_text="The factory jobs this call started.")


# --------------------------------------------------------------------------- serializers (write)


class ScopedArtistField(serializers.PrimaryKeyRelatedField):
    """An artist the requesting user may see; any other id reads as one that does not exist."""

    def get_queryset(self):
        return artists_visible_to(user=self.context["request"].user)


class PostCreateSerializer(serializers.ModelSerializer):
    artist = ScopedArtistField()
    wardrobe = serializers.PrimaryKeyRelatedField(queryset=Wardrobe.objects.all(), required=False, allow_null=True)

    class Meta:
        model = Post
        fields = ["title", "artist", "wardrobe", "brief", "source_content", "aspect_ratio"]


class PostUpdateSerializer(PostCreateSerializer):
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="The post version you edited (or send If-Match)."
    )

    class Meta(PostCreateSerializer.Meta):
        fields = [f for f in services.POST_EDITABLE_FIELDS if f != "created_from_source"] + ["version"]


@extend_schema_field({"type": "number", "minimum": 0.01, "maximum": 60, "multipleOf": 0.01})
class _DurationField(serializers.DecimalField):
    """Seconds, 0.01 to 60 in hundredths: the schema says it as a number (DRF would say "a string")."""


class ShotWriteSerializer(serializers.ModelSerializer):
    duration_seconds = _DurationField(
        max_digits=5, decimal_places=2, min_value=Decimal("0.01"), max_value=Decimal("60"), required=False
    )
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="The post version you edited (or send If-Match)."
    )
    position = serializers.IntegerField(
        required=False, min_value=1, help_text="Where to insert a new shot (1 = first); default last."
    )

    class Meta:
        model = Shot
        fields = ["kind", "duration_seconds", "script", "visual_prompt", "locked", "position", "version"]


class VersionSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="The post version you edited (or send If-Match)."
    )


class ReorderSerializer(VersionSerializer):
    order = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        allow_empty=False,
        min_length=1,  # the same rule, but the schema says this one (minItems)
        help_text="Every shot id, in the new order.",
    )


class AssetSerializer(VersionSerializer):
    manual_asset = serializers.FileField(help_text="An image (JPEG, PNG, WebP) or a video (MP4, MOV, WebM).")


class GenerateSerializer(VersionSerializer):
    feedback = serializers.CharField(required=False, allow_blank=True, help_text="What the rewrite should change.")


class ApproveSerializer(VersionSerializer):
    note = serializers.CharField(required=False, allow_blank=True)


class RejectSerializer(VersionSerializer):
    feedback = serializers.CharField(help_text="What to change: it goes into the director's rewrite.")


# --------------------------------------------------------------------------- posts


class PostFilter(filters.FilterSet):
    # By id, not by choice of artist: a foreign id must look exactly like an unknown one (an empty list).
    artist = IdFilter(field_name="artist_id")
    status = filters.ChoiceFilter(choices=PostStatus.choices)
    created_after = InstantFilter(field_name="created_at", lookup_expr="gte")
    created_before = InstantFilter(field_name="created_at", lookup_expr="lt")
    updated_after = InstantFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Post
        fields = ["artist", "status", "created_after", "created_before", "updated_after"]


ACTION_EXAMPLE = OpenApiExample(
    "Approved",
    value={"post": {"id": 42, "status": "rendering", "version": 7, "shots": []}, "job_ids": [101, 102, 103]},
    response_only=True,
)


def _action_schema(summary: str, request, description: str = "", *codes: int):
    return extend_schema(
        tags=POSTS,
        summary=summary,
        description=description,
        request=request,
        parameters=[IDEMPOTENCY_KEY, IF_MATCH],
        responses={
            200: OpenApiResponse(ActionResultSerializer, examples=[ACTION_EXAMPLE]),
            **errors(400, 403, 404, 409, 412, 422, *codes),
        },
    )


@extend_schema_view(
    list=extend_schema(
        tags=POSTS, summary="List posts", responses={200: PostSerializer(many=True), **errors(400, 403)}
    ),
    retrieve=extend_schema(
        tags=POSTS,
        summary="One post, with its storyboard and its cost so far",
        description='The `ETag` header (`"v<version>"`) goes back as If-Match on writes.',
        responses={200: PostDetailSerializer, **errors(403, 404)},
    ),
)
class PostViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Post.objects.all()  # the model for HasModelPermission; rows come from get_queryset
    serializer_class = PostSerializer
    permission_classes = [HasModelPermission]
    filterset_class = PostFilter
    ordering_fields = ["created_at", "updated_at", "title", "status"]
    ordering = ["-created_at", "-id"]
    required_perms = None  # set per action in urlpatterns

    def get_queryset(self):
        # Built once a request (the selector asks the database whether the user is ops): DRF's model
        # permission asks for it too, for its model. Never evaluated itself: each use clones it.
        if getattr(self, "_visible", None) is None:
            self._visible = (
                posts_visible_to(user=self.request.user)
                .select_related("updated_by")
                # Shot.Meta.ordering: playing order; with the jobs their provenance reads.
                .prefetch_related(Prefetch("shots", queryset=with_jobs(Shot.objects.all())))
            )
        return self._visible

    def _fresh(self, post_id: int, *, code: int = status.HTTP_200_OK, job_ids: list[int] | None = None) -> Response:
        post = self.get_queryset().get(pk=post_id)
        data = self.get_serializer(post).data
        if job_ids is not None:
            data = {"post": data, "job_ids": job_ids}
        return Response(data, status=code, headers={"ETag": etag(post.version)})

    def retrieve(self, request, *args, **kwargs):
        post = self.get_object()
        data = PostDetailSerializer(post, context=self.get_serializer_context()).data
        return Response(data, headers={"ETag": etag(post.version)})

    @extend_schema(
        tags=POSTS,
        summary="Download the final video",
        description="The rendered MP4 (what `render.done` announces), for a member of the post's artist or ops. "
        "A post that has not been rendered yet is a 404.",
        responses={(200, "video/mp4"): OpenApiResponse(OpenApiTypes.BINARY), **errors(403, 404)},
    )
    def video(self, request, pk=None):
        post = get_object_or_404(posts_visible_to(user=request.user), pk=pk)
        return _download(request, post.final_video, f"post-{post.pk}", "This post has no final video yet.")

    @extend_schema(
        tags=POSTS,
        summary="Create a draft post",
        description="A draft for one of your artists; the director or the shots endpoints fill its storyboard.",
        request=PostCreateSerializer,
        responses={201: PostSerializer, **errors(400, 403)},
    )
    def create(self, request):
        data = PostCreateSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        post = services.post_create(actor=request.user, **data.validated_data)
        return self._fresh(post.pk, code=status.HTTP_201_CREATED)

    @extend_schema(
        tags=POSTS,
        summary="Edit a post",
        request=PostUpdateSerializer,
        parameters=[IF_MATCH],
        responses={200: PostSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def partial_update(self, request, pk=None):
        post = self.get_object()
        data = PostUpdateSerializer(post, data=request.data, partial=True, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        version = expected_version(request, current_version=post.version, body_version=changes.pop("version", None))
        services.post_update(post=post, actor=request.user, expected_version=version, data=changes)
        return self._fresh(post.pk)

    def _act(self, request, serializer_class, run) -> Response:
        """Validate, check the version, run one service; answer with the post and the jobs it started."""
        post = self.get_object()
        data = serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        args = dict(data.validated_data)
        version = expected_version(
            request, current_version=post.version, body_version=args.pop("version", None), required=False
        )
        job_ids = run(post, version, args)
        return self._fresh(post.pk, job_ids=job_ids)

    @_action_schema(
        "Write the storyboard (director)",
        GenerateSerializer,
        "Queues the director (an LLM, or the offline one) to write the shots from the brief; locked shots stay. "
        "Throttled per token.",
        429,
    )
    @idempotent
    def generate(self, request, pk=None):
        def run(post, version, args):
            with transaction.atomic():  # the version check's row lock holds until the job is queued
                if version is not None:
                    services.post_check_version(post_id=post.pk, expected_version=version)
                job = storyboard_generate(post_id=post.pk, actor=request.user, feedback=args.get("feedback", ""))
            return [job.pk]

        return self._act(request, GenerateSerializer, run)

    @_action_schema("Submit for review", VersionSerializer)
    @idempotent
    def submit(self, request, pk=None):
        def run(post, version, args):
            services.post_submit_for_review(post_id=post.pk, actor=request.user, expected_version=version)
            return []

        return self._act(request, VersionSerializer, run)

    @_action_schema(
        "Approve (reviewers)", ApproveSerializer, "Approving starts production: the voice, picture and render jobs."
    )
    @idempotent
    def approve(self, request, pk=None):
        def run(post, version, args):
            post = pipeline.post_approve(
                post_id=post.pk, actor=request.user, note=args.get("note", ""), expected_version=version
            )
            return post.started_jobs

        return self._act(request, ApproveSerializer, run)

    @_action_schema("Reject with feedback (reviewers)", RejectSerializer)
    @idempotent
    def reject(self, request, pk=None):
        def run(post, version, args):
            services.post_reject(
                post_id=post.pk, actor=request.user, feedback=args["feedback"], expected_version=version
            )
            return []

        return self._act(request, RejectSerializer, run)

    @_action_schema(
        "Render (or retry a failed render)",
        VersionSerializer,
        "Produces what the shots still need, then renders. Throttled per token.",
        429,
    )
    @idempotent
    def render(self, request, pk=None):
        def run(post, version, args):
            return pipeline.post_produce(post_id=post.pk, actor=request.user, expected_version=version).started_jobs

        return self._act(request, VersionSerializer, run)

    @_action_schema(
        "Cancel the post's unfinished jobs",
        VersionSerializer,
        "`job_ids` lists the jobs cancelled. A post in production fails, naming the cancelled shot.",
    )
    @idempotent
    def cancel(self, request, pk=None):
        def run(post, version, args):
            with transaction.atomic():  # the version check's row lock holds while the jobs are cancelled
                if version is not None:
                    services.post_check_version(post_id=post.pk, expected_version=version)
                return pipeline.post_cancel_jobs(post_id=post.pk, actor=request.user)

        return self._act(request, VersionSerializer, run)


# --------------------------------------------------------------------------- shots


class ShotViewSet(viewsets.GenericViewSet):
    """Storyboard edits, one shot at a time. Each write bumps the post's version (the storyboard's)."""

    queryset = Shot.objects.all()  # the model for HasModelPermission; rows come from get_queryset
    serializer_class = ShotDetailSerializer
    permission_classes = [HasModelPermission]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    filter_backends = []
    pagination_class = None
    required_perms = None  # set per action in urlpatterns

    def get_queryset(self):
        return with_jobs(shots_visible_to(user=self.request.user).select_related("post"))

    def _post(self, post_pk) -> Post:
        return get_object_or_404(posts_visible_to(user=self.request.user), pk=post_pk)

    def _answer(self, shot_id: int, code: int = status.HTTP_200_OK) -> Response:
        shot = self.get_queryset().get(pk=shot_id)
        return Response(self.get_serializer(shot).data, status=code, headers={"ETag": etag(shot.post.version)})

    def _version(self, request, post: Post, data: dict) -> int:
        return expected_version(request, current_version=post.version, body_version=data.pop("version", None))

    @extend_schema(
        tags=SHOTS,
        summary="Add a shot",
        request=ShotWriteSerializer,
        parameters=[IF_MATCH],
        responses={201: ShotDetailSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def create(self, request, post_pk=None):
        post = self._post(post_pk)
        data = ShotWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        version, position = self._version(request, post, fields), fields.pop("position", None)
        shot = services.shot_save(
            post=post, actor=request.user, expected_version=version, data=fields, position=position
        )
        return self._answer(shot.pk, status.HTTP_201_CREATED)

    @extend_schema(tags=SHOTS, summary="One shot", responses={200: ShotDetailSerializer, **errors(403, 404)})
    def retrieve(self, request, pk=None):
        return self._answer(self.get_object().pk)

    @extend_schema(
        tags=SHOTS,
        summary="Edit a shot",
        request=ShotWriteSerializer,
        parameters=[IF_MATCH],
        responses={200: ShotDetailSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def partial_update(self, request, pk=None):
        shot = self.get_object()
        data = ShotWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields.pop("position", None)  # moving a shot is /reorder
        version = self._version(request, shot.post, fields)
        services.shot_save(post=shot.post, actor=request.user, expected_version=version, data=fields, shot_id=shot.pk)
        return self._answer(shot.pk)

    @extend_schema(
        tags=SHOTS,
        summary="Delete a shot",
        description="Send the version as If-Match. The answer's ETag is the post's new version.",
        request=VersionSerializer,
        parameters=[IF_MATCH],
        responses={204: None, **errors(400, 403, 404, 409, 412, 428)},
    )
    def destroy(self, request, pk=None):
        shot = self.get_object()
        data = VersionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = self._version(request, shot.post, dict(data.validated_data))
        services.shot_delete(post=shot.post, actor=request.user, expected_version=version, shot_id=shot.pk)
        return Response(status=status.HTTP_204_NO_CONTENT, headers={"ETag": etag(shot.post.version)})

    @extend_schema(
        tags=SHOTS,
        summary="Reorder a post's shots",
        request=ReorderSerializer,
        parameters=[IF_MATCH],
        responses={200: PostSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def reorder(self, request, post_pk=None):
        post = self._post(post_pk)
        data = ReorderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        version = self._version(request, post, fields)
        services.shots_reorder(post=post, actor=request.user, expected_version=version, shot_ids=fields["order"])
        post = (
            posts_visible_to(user=request.user).prefetch_related("shots").select_related("updated_by").get(pk=post.pk)
        )
        return Response(
            PostSerializer(post, context=self.get_serializer_context()).data, headers={"ETag": etag(post.version)}
        )

    def _set_locked(self, request, locked: bool) -> Response:
        shot = self.get_object()
        data = VersionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = self._version(request, shot.post, dict(data.validated_data))
        services.shot_set_locked(shot=shot, actor=request.user, locked=locked, expected_version=version)
        return self._answer(shot.pk)

    @extend_schema(
        tags=SHOTS,
        summary="Lock a shot",
        description="A locked shot is never rewritten by the director, nor edited or deleted until unlocked.",
        request=VersionSerializer,
        parameters=[IF_MATCH],
        responses={200: ShotDetailSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def lock(self, request, pk=None):
        return self._set_locked(request, True)

    @extend_schema(
        tags=SHOTS,
        summary="Unlock a shot",
        request=VersionSerializer,
        parameters=[IF_MATCH],
        responses={200: ShotDetailSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def unlock(self, request, pk=None):
        return self._set_locked(request, False)

    @extend_schema(
        tags=SHOTS,
        summary="Make a new take of a shot's voice",
        description="Queues the voice server again with the shot's script and the artist's voice as they are now. "
        "The one way a locked shot's voice (and the length it sets) changes: production keeps a locked shot's voice "
        "whatever else changed. The answer's `voice_job` is the queued job; progress comes over the post's socket.",
        request=None,
        responses={202: ShotDetailSerializer, **errors(400, 403, 404)},
    )
    def revoice(self, request, pk=None):
        shot = self.get_object()
        pipeline.shot_revoice(shot_id=shot.pk, actor=request.user)
        return self._answer(shot.pk, status.HTTP_202_ACCEPTED)

    @extend_schema(
        tags=SHOTS,
        summary="Download a shot's picture",
        description="The picture or clip the render uses: the manual asset if there is one, else the generated one.",
        responses={
            (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, "video/*"): OpenApiResponse(OpenApiTypes.BINARY),
            **errors(403, 404),
        },
    )
    def picture(self, request, pk=None):
        shot = get_object_or_404(shots_visible_to(user=request.user), pk=pk)
        asset = shot.manual_asset or shot.generated_asset
        return _download(request, asset, f"shot-{shot.pk}-picture", "This shot has no picture yet.")

    @extend_schema(
        tags=SHOTS,
        summary="Download a shot's voice",
        description="The spoken line (WAV) made for the shot's script.",
        responses={(200, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY), **errors(403, 404)},
    )
    def voice(self, request, pk=None):
        shot = get_object_or_404(shots_visible_to(user=request.user), pk=pk)
        return _download(request, shot.voice_asset, f"shot-{shot.pk}-voice", "This shot has no voice yet.")

    @extend_schema(
        tags=SHOTS,
        summary="Upload a shot's manual asset",
        description="Multipart, field `manual_asset`. The type is judged by the file's content, not its name; "
        "images up to MCN_MAX_IMAGE_BYTES, videos up to MCN_MAX_VIDEO_BYTES.",
        request={"multipart/form-data": AssetSerializer},
        parameters=[IF_MATCH],
        responses={200: ShotDetailSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def upload_asset(self, request, pk=None):
        shot = self.get_object()
        data = AssetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        version = self._version(request, shot.post, fields)
        services.shot_save(
            post=shot.post,
            actor=request.user,
            expected_version=version,
            data={"manual_asset": fields["manual_asset"]},
            shot_id=shot.pk,
        )
        return self._answer(shot.pk)

    @extend_schema(
        tags=SHOTS,
        summary="Remove a shot's manual asset",
        request=VersionSerializer,
        parameters=[IF_MATCH],
        responses={200: ShotDetailSerializer, **errors(400, 403, 404, 409, 412, 428)},
    )
    def remove_asset(self, request, pk=None):
        shot = self.get_object()
        data = VersionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = self._version(request, shot.post, dict(data.validated_data))
        services.shot_save(
            post=shot.post, actor=request.user, expected_version=version, data={"manual_asset": ""}, shot_id=shot.pk
        )
        return self._answer(shot.pk)


def _download(request, file, stem: str, missing: str):
    """The file of a field the caller may see (checked by the caller's selector), named `stem` plus its suffix."""
    if not file:
        raise NotFound(missing)
    suffix = PurePosixPath(file.name).suffix
    return media_response(request, file.name, filename=f"{stem}{suffix}")


# --------------------------------------------------------------------------- post events


class PostEventFilter(filters.FilterSet):
    post = IdFilter(field_name="post_id")  # a foreign post reads as an empty trail, like an unknown one

    class Meta:
        model = PostEvent
        fields = ["post", "kind"]


@extend_schema_view(
    list=extend_schema(
        tags=EVENTS,
        summary="A post's trail",
        description="Who did what, when: status changes, edits, storyboard changes. Filter with `?post=<id>`.",
        responses={200: PostEventSerializer(many=True), **errors(400, 403)},
    )
)
class PostEventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = PostEvent.objects.all()  # the model for HasModelPermission; rows come from get_queryset
    serializer_class = PostEventSerializer
    permission_classes = [HasModelPermission]
    filterset_class = PostEventFilter
    ordering_fields = ["created_at"]
    ordering = ["created_at", "id"]

    def get_queryset(self):
        return post_events_visible_to(user=self.request.user).select_related("actor")


# --------------------------------------------------------------------------- costs


class ArtistCostsView(generics.GenericAPIView):
    """An artist's month in the cost ledger: totals split GPU / LLM / CPU, its budget, spend per post."""

    queryset = CostEntry.objects.all()  # the model for HasModelPermission (posts.view_costentry)
    permission_classes = [HasModelPermission]
    serializer_class = ArtistCostsSerializer
    required_perms = list(COST_PERMS)
    filter_backends = []
    pagination_class = None

    @extend_schema(
        tags=["costs"],
        summary="An artist's costs in a month",
        description="Every finished job that worked for the artist's posts, priced at the rates valid when it "
        "finished. `month` is YYYY-MM (default: this month). Another team's artist is a 404.",
        parameters=[
            OpenApiParameter("month", str, pattern=MONTH_PATTERN, description="YYYY-MM (default: the current month).")
        ],
        responses={200: ArtistCostsSerializer, **errors(400, 403, 404)},
    )
    def get(self, request, pk: int):
        artist = get_object_or_404(artists_visible_to(user=request.user), pk=pk)
        raw = request.query_params.get("month")
        month = parse_month(raw) if raw is not None else month_of()
        return Response(ArtistCostsSerializer(artist_costs(artist=artist, month=month)).data)


# --------------------------------------------------------------------------- routes

# The permissions come from posts.selectors, the table the storyboard page's endpoints ask too.
CHANGE_SHOTS = list(SHOT_PERMS["change"])
DOWNLOAD = DownloadNegotiation
posts = PostViewSet.as_view
shots = ShotViewSet.as_view


def _post_action(name: str, perms: tuple[str, ...], *, expensive: bool = False):
    throttles = {"throttle_classes": [ExpensiveThrottle]} if expensive else {}
    view = posts({"post": name}, required_perms=list(perms), **throttles)
    return path(f"posts/<int:pk>/{name}", view, name=f"post-{name}")


urlpatterns = [
    path("posts/", posts({"get": "list", "post": "create"}), name="post-list"),
    path("posts/<int:pk>/", posts({"get": "retrieve", "patch": "partial_update"}), name="post-detail"),
    path("posts/<int:pk>/video", posts({"get": "video"}, content_negotiation_class=DOWNLOAD), name="post-video"),
    _post_action("generate", POST_ACTION_PERMS["generate"], expensive=True),
    _post_action("submit", POST_ACTION_PERMS[PostStatus.REVIEW]),
    _post_action("approve", POST_ACTION_PERMS[PostStatus.APPROVED]),
    _post_action("reject", POST_ACTION_PERMS[PostStatus.REJECTED]),
    _post_action("render", POST_ACTION_PERMS[PostStatus.RENDERING], expensive=True),
    _post_action("cancel", POST_ACTION_PERMS["cancel"]),
    path(
        "posts/<int:post_pk>/shots/",
        shots({"post": "create"}, required_perms=list(SHOT_PERMS["add"])),
        name="shot-create",
    ),
    path(
        "posts/<int:post_pk>/shots/reorder",
        shots({"post": "reorder"}, required_perms=CHANGE_SHOTS),
        name="shot-reorder",
    ),
    path(
        "shots/<int:pk>/",
        shots(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"},
            required_perms={
                "GET": ["posts.view_shot"],
                "PATCH": list(SHOT_PERMS["change"]),
                "DELETE": list(SHOT_PERMS["delete"]),
            },
        ),
        name="shot-detail",
    ),
    path("shots/<int:pk>/lock", shots({"post": "lock"}, required_perms=CHANGE_SHOTS), name="shot-lock"),
    path("shots/<int:pk>/unlock", shots({"post": "unlock"}, required_perms=CHANGE_SHOTS), name="shot-unlock"),
    path(
        "shots/<int:pk>/asset",
        shots({"post": "upload_asset", "delete": "remove_asset"}, required_perms=CHANGE_SHOTS),
        name="shot-asset",
    ),
    path("shots/<int:pk>/revoice", shots({"post": "revoice"}, required_perms=CHANGE_SHOTS), name="shot-revoice"),
    path("shots/<int:pk>/picture", shots({"get": "picture"}, content_negotiation_class=DOWNLOAD), name="shot-picture"),
    path("shots/<int:pk>/voice", shots({"get": "voice"}, content_negotiation_class=DOWNLOAD), name="shot-voice"),
    path("post-events/", PostEventViewSet.as_view({"get": "list"}), name="postevent-list"),
    path("artists/<int:pk>/costs", ArtistCostsView.as_view(), name="artist-costs"),
]
