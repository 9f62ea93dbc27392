"""The integration API for artists and the assets they are built from: /api/v1/artists, voices, wardrobes, sources.

Permissions are the admin's (mcn_site.lib.roles through HasModelPermission): everyone signed in with a role
reads; producers add and change; only ops delete. Artists are scoped by artists.selectors: a producer or
reviewer sees only the artists they are a member of, and another artist is a 404. Voices, wardrobes and
sources are shared libraries, read by every role, as in the admin.

These are plain CRUD tables (there is no artists/services.py), so ModelViewSets are fine; each serializer runs
the model's own clean() so the API refuses exactly what the admin form refuses.
"""

import copy

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import ProtectedError
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.routers import SimpleRouter

from artists.models import Artist, Niche, Source, Voice, Wardrobe
from artists.selectors import artists_visible_to
from mcn_site.lib.api import ERRORS, Conflict, HasModelPermission, IdFilter
from mcn_site.lib.roles import is_ops
from mcn_site.lib.text import nul_errors


class ModelCleanSerializer(serializers.ModelSerializer):
    """Runs the model's clean() on the instance as it would be saved, so the API and the admin agree."""

    def validate(self, attrs):
        attrs = super().validate(attrs)
        model = self.Meta.model
        instance = copy.copy(self.instance) if self.instance is not None else model()
        many = {field.name for field in model._meta.many_to_many}
        for name, value in attrs.items():
            if name not in many:
                setattr(instance, name, value)
        if errors := nul_errors(instance):  # what full_clean would refuse too (mcn_site.lib.text)
            raise DjangoValidationError(errors)
        instance.clean()  # a Django ValidationError here is a 400 with its field errors (DRF converts it)
        return attrs


def errors_for(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


LIST_ERRORS = errors_for(400, 401, 403)  # 400: a filter value that is not valid (artist=abc)
READ_ERRORS = errors_for(401, 404)
WRITE_ERRORS = errors_for(400, 401, 403, 404)


def destroy_or_conflict(instance) -> None:
    try:
        instance.delete()
    except ProtectedError as error:
        users = sorted({str(obj) for obj in error.protected_objects})[:5]
        raise Conflict(f"{instance} is still in use ({', '.join(users)}): it cannot be deleted.") from error


class CrudViewSet(viewsets.ModelViewSet):
    """A plain CRUD table under the admin's model permissions; a delete of a row in use is a 409."""

    permission_classes = [HasModelPermission]
    lookup_value_converter = "int"
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def perform_destroy(self, instance):
        destroy_or_conflict(instance)


def crud_schema(noun: str, serializer, *, tag: str):
    """extend_schema_view for a CRUD table: summaries, the answer and the documented errors of every operation."""
    return extend_schema_view(
        list=extend_schema(tags=[tag], summary=f"List {noun}s", responses={200: serializer(many=True), **LIST_ERRORS}),
        retrieve=extend_schema(tags=[tag], summary=f"One {noun}", responses={200: serializer, **READ_ERRORS}),
        create=extend_schema(
            tags=[tag], summary=f"Add a {noun}", responses={201: serializer, **errors_for(400, 401, 403)}
        ),
        update=extend_schema(tags=[tag], summary=f"Replace a {noun}", responses={200: serializer, **WRITE_ERRORS}),
        partial_update=extend_schema(
            tags=[tag], summary=f"Change a {noun}", responses={200: serializer, **WRITE_ERRORS}
        ),
        destroy=extend_schema(
            tags=[tag],
            summary=f"Delete a {noun} (ops)",
            description="Refused with 409 while something still uses it.",
            responses={204: None, **errors_for(401, 403, 404, 409)},
        ),
    )


# --- voices, wardrobes, sources: shared libraries ------------------------------------------------------


class VoiceSerializer(ModelCleanSerializer):
    class Meta:
        model = Voice
        fields = ["id", "name", "engine", "speaker_id", "sample_audio", "sample_transcription", "notes"]


@extend_schema_field(
    {
        "type": "object",
        "required": ["lora_name"],
        "additionalProperties": False,
        "properties": {
            "lora_name": {"type": "string", "pattern": "\\S"},
            "trigger_word": {"type": "string"},
            "strength": {"type": "number", "minimum": 0, "maximum": 2},
        },
    }
)
class _ComfyPayloadField(serializers.JSONField):
    """What artists.models.comfy_payload_problems() accepts, said in the schema."""


class WardrobeSerializer(ModelCleanSerializer):
    comfy_payload = _ComfyPayloadField(
        help_text='What ComfyUI needs: {"lora_name": "suit_v1.safetensors", "trigger_word": "navy blue suit", '
        '"strength": 0.8}.'
    )

    class Meta:
        model = Wardrobe
        fields = ["id", "name", "category", "preview", "comfy_payload"]


class SourceSerializer(ModelCleanSerializer):
    class Meta:
        model = Source
        fields = ["id", "name", "category", "url", "instruction", "max_items"]
        extra_kwargs = {"max_items": {"min_value": 1, "max_value": 100}}


@crud_schema("voice", VoiceSerializer, tag="voices")
class VoiceViewSet(CrudViewSet):
    """Voices: a CosyVoice speaker id, or a sample recording with its transcription (zero-shot cloning)."""

    queryset = Voice.objects.all()
    serializer_class = VoiceSerializer
    filterset_fields = ["engine"]
    ordering_fields = ["name", "id"]


@crud_schema("wardrobe", WardrobeSerializer, tag="wardrobes")
class WardrobeViewSet(CrudViewSet):
    queryset = Wardrobe.objects.all()
    serializer_class = WardrobeSerializer
    filterset_fields = ["category"]
    ordering_fields = ["name", "id"]


@crud_schema("source", SourceSerializer, tag="sources")
class SourceViewSet(CrudViewSet):
    queryset = Source.objects.all()
    serializer_class = SourceSerializer
    filterset_fields = ["category"]
    ordering_fields = ["name", "id"]


# --- artists -------------------------------------------------------------------------------------------


class ArtistSerializer(ModelCleanSerializer):
    content_focus = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, help_text="Topics to cover."
    )
    excluded_keywords = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, help_text="Topics never to touch."
    )
    members = serializers.PrimaryKeyRelatedField(
        many=True,
        required=False,
        queryset=get_user_model().objects.all(),
        help_text="User ids of who may work on this artist. Only ops may change it.",
    )

    class Meta:
        model = Artist
        fields = [
            "id",
            "stage_name",
            "slug",
            "niche",
            "persona",
            "speaking_style",
            "content_focus",
            "excluded_keywords",
            "colour",
            "face_anchor",
            "full_body",
            "three_view_sheet",
            "voice",
            "allowed_wardrobes",
            "default_sources",
            "members",
            "active",
            "monthly_budget",
            "budget_lifted_month",
            "created_at",
            "updated_at",
        ]
        # The budget is set and lifted by ops in the admin; the API shows it (its spend: /artists/<id>/costs).
        read_only_fields = ["monthly_budget", "budget_lifted_month"]
        extra_kwargs = {"allowed_wardrobes": {"required": False}, "default_sources": {"required": False}}

    def validate_members(self, members):
        request = self.context["request"]
        current = set(self.instance.members.values_list("pk", flat=True)) if self.instance else set()
        if not is_ops(request.user) and {user.pk for user in members} != current:
            # As in the admin, where the field is read-only for everyone but ops.
            raise PermissionDenied("Only ops decide who works on an artist.")
        return members


class ArtistFilter(filters.FilterSet):
    voice = IdFilter(field_name="voice_id")

    class Meta:
        model = Artist
        fields = ["niche", "active", "voice"]


ARTIST_EXAMPLE = OpenApiExample(
    "An artist",
    response_only=True,
    value={
        "id": 1,
        "stage_name": "Lin Yue",
        "slug": "lin-yue",
        "niche": Niche.FINANCE,
        "persona": "A calm former trader who explains markets in plain words.",
        "speaking_style": "Short sentences.",
        "content_focus": ["stocks", "gold"],
        "excluded_keywords": ["crypto"],
        "colour": "#4f46e5",
        "face_anchor": "http://127.0.0.1:8000/media/artists/faces/lin-yue.png",
        "full_body": None,
        "three_view_sheet": None,
        "voice": 1,
        "allowed_wardrobes": [1, 2],
        "default_sources": [3],
        "members": [4],
        "active": True,
        "monthly_budget": "500.00",
        "budget_lifted_month": "",
        "created_at": "2026-01-05T09:00:00Z",
        "updated_at": "2026-01-05T09:00:00Z",
    },
)


@extend_schema_view(
    list=extend_schema(
        tags=["artists"],
        summary="List the artists you work on",
        description="Ops see every artist; producers and reviewers only those they are a member of.",
        responses={200: ArtistSerializer(many=True), **LIST_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["artists"],
        summary="One artist",
        description="Another team's artist is a 404.",
        responses={200: ArtistSerializer, 401: ERRORS[401], 404: ERRORS[404]},
        examples=[ARTIST_EXAMPLE],
    ),
    create=extend_schema(
        tags=["artists"],
        summary="Add an artist (multipart: the face anchor is an image upload)",
        description="A producer who adds an artist becomes its member, as in the admin.",
        responses={201: ArtistSerializer, 400: ERRORS[400], 401: ERRORS[401], 403: ERRORS[403]},
    ),
    update=extend_schema(
        tags=["artists"],
        summary="Replace an artist",
        responses={200: ArtistSerializer, **{k: ERRORS[k] for k in [400, 401, 403, 404]}},
    ),
    partial_update=extend_schema(
        tags=["artists"],
        summary="Change an artist",
        description="`members` may be changed by ops only.",
        responses={200: ArtistSerializer, **{k: ERRORS[k] for k in [400, 401, 403, 404]}},
    ),
    destroy=extend_schema(
        tags=["artists"],
        summary="Delete an artist (ops)",
        description="Refused with 409 while the artist has posts.",
        responses={204: None, **{k: ERRORS[k] for k in [401, 403, 404, 409]}},
    ),
)
class ArtistViewSet(CrudViewSet):
    serializer_class = ArtistSerializer
    queryset = Artist.objects.all()  # the model for HasModelPermission; rows come from get_queryset
    filterset_class = ArtistFilter
    ordering_fields = ["stage_name", "created_at", "id"]
    ordering = ["stage_name", "id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular building the schema
            return Artist.objects.none()
        return (
            artists_visible_to(user=self.request.user)
            .select_related("voice")
            .prefetch_related("allowed_wardrobes", "default_sources", "members")
        )

    def perform_create(self, serializer):
        with transaction.atomic():
            artist = serializer.save()
            if not is_ops(self.request.user):
                # As the admin does: a producer who creates an artist works on it, else it would vanish from
                # their list.
                artist.members.add(self.request.user)


router = SimpleRouter(use_regex_path=False)  # <int:pk>, as the posts API: "abc" is a 404 before any view
router.register("artists", ArtistViewSet, basename="artist")
router.register("voices", VoiceViewSet, basename="voice")
router.register("wardrobes", WardrobeViewSet, basename="wardrobe")
router.register("sources", SourceViewSet, basename="source")

urlpatterns = router.urls
