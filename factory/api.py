"""The integration API of the GPU factory, for ops: /api/v1/jobs and /api/v1/workflow-templates.

Who sees jobs: ops only, as the queue dashboard (mcn_site.urls.ops_only). Everyone else gets a 404 on
every factory endpoint, lists included: the factory knows nothing of posts or artists, so it cannot tell
which jobs belong to which producer's posts. Producers and reviewers see the state of the jobs that make
their posts where those jobs belong, nested in the posts and shots of the posts API (posts.api).

Cancel and retry call factory.services.job_cancel / job_retry, as the admin's actions do, and are safe to
retry with an `Idempotency-Key`. Preflight asks the GPU server (COMFYUI_URL) for its node catalogue, as
the admin's "Preflight" action does; an unreachable server is a 503 in the error shape, never a 500.
"""

import httpx
from django.conf import settings
from django.urls import path
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from factory import preflight, services
from factory.comfyui import ComfyUIError
from factory.execution import client_for
from factory.models import ErrorKind, Job, JobEvent, JobOutput, JobStatus, WorkflowTemplate
from mcn_site.lib.api import (
    ERRORS,
    IDEMPOTENCY_KEY,
    Conflict,
    ErrorSerializer,
    HasModelPermission,
    IdFilter,
    idempotent,
)
from mcn_site.lib.roles import is_ops


class OpsOnly(BasePermission):
    """Signed in (else 401) and ops (else 404: for everyone else the factory is not there)."""

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        if not is_ops(request.user):
            raise exceptions.NotFound("No such page.")
        return True


class GpuServerUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "gpu_server_unreachable"
    default_detail = "The GPU server could not be reached."


# --- serializers ---------------------------------------------------------------------------------------


class JobOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobOutput
        fields = [
            "id", "attempt", "node_id", "index", "file", "original_name", "kind", "content_type", "size", "sha256",
        ]  # fmt: skip


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["id", "kind", "message", "data", "created_at"]


class JobSerializer(serializers.ModelSerializer):
    # Declared: "" (no error) must be in the documented enum, which a read-only model field leaves out.
    error_kind = serializers.ChoiceField(choices=[("", "None"), *ErrorKind.choices], read_only=True)
    template_name = serializers.CharField(source="template.name", read_only=True, allow_null=True, default=None)
    outputs = JobOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "template",
            "template_name",
            "params",
            "subject",
            "lane",
            "status",
            "attempts",
            "max_attempts",
            "retries",
            "progress_node",
            "progress_percent",
            "error_kind",
            "error_message",
            "error_details",
            "cancel_requested",
            "worker_name",
            "server_url",
            "gpu_seconds",
            "queue_seconds",
            "wall_seconds",
            "audio_seconds",
            "llm_model",
            "llm_prompt_tokens",
            "llm_completion_tokens",
            "created_at",
            "queued_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "outputs",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    events = JobEventSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "overrides", "events"]
        read_only_fields = fields


class WorkflowTemplateSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkflowTemplate
        fields = ["id", "name", "version", "description", "workflow", "placeholders", "active", "created_at"]
        read_only_fields = fields


class PreflightSerializer(serializers.Serializer):
    template = serializers.IntegerField(help_text="The template checked.")
    server = serializers.CharField(help_text="The GPU server asked (COMFYUI_URL).")
    ok = serializers.BooleanField(help_text="Every node type, input and model the workflow names checks out.")
    problems = serializers.ListField(child=serializers.CharField(), help_text="What is missing, in words.")


# --- jobs ----------------------------------------------------------------------------------------------


class JobFilter(filters.FilterSet):
    subject = filters.CharFilter(
        field_name="subject", lookup_expr="startswith", help_text="Jobs whose subject starts with this: post.42/"
    )
    template = IdFilter(field_name="template_id")

    class Meta:
        model = Job
        fields = ["status", "kind", "lane", "subject", "template"]


OPS_ERRORS = {401: ERRORS[401], 404: ERRORS[404]}
ACTION_ERRORS = {**OPS_ERRORS, 400: ERRORS[400], 409: ERRORS[409], 422: ERRORS[422]}  # 400: a bad Idempotency-Key
CANCELLED_EXAMPLE = OpenApiExample(
    "Cancelled while queued",
    response_only=True,
    value={"id": 7, "status": JobStatus.CANCELLED, "error_kind": "cancelled", "error_message": "Cancelled by ops."},
)


@extend_schema_view(
    list=extend_schema(
        tags=["factory"],
        summary="List jobs (ops)",
        description="Newest first. Filter by status, kind, lane, template and subject prefix "
        "(`subject=post.42/`: every job of post 42). Everyone but ops gets a 404: the state of the jobs that "
        "make a post is in the posts API.",
        responses={200: JobSerializer(many=True), 400: ERRORS[400], **OPS_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["factory"],
        summary="One job with its outputs and event trail (ops)",
        responses={200: JobDetailSerializer, **OPS_ERRORS},
    ),
)
class JobViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Job.objects.all()
    permission_classes = [OpsOnly, HasModelPermission]
    required_perms = None  # set per action in urlpatterns
    filterset_class = JobFilter
    ordering_fields = ["created_at", "finished_at", "id"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        jobs = Job.objects.select_related("template").prefetch_related("outputs")
        return jobs.prefetch_related("events") if self.action == "retrieve" else jobs

    def get_serializer_class(self):
        return JobDetailSerializer if self.action in ("retrieve", "cancel", "retry") else JobSerializer

    def _act(self, request, call):
        job = self.get_object()  # a 404 for an unknown id, before any service runs
        try:
            call(job_id=job.pk, actor=request.user)
        except services.JobStateError as error:
            raise Conflict(" ".join(error.messages), code="job_state") from error
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)

    @extend_schema(
        tags=["factory"],
        summary="Cancel a job (ops)",
        description="A queued job is cancelled at once; a running one is interrupted on the GPU server by its "
        "worker (`cancel_requested: true` until it stops). A finished job is a 409.",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: JobDetailSerializer, **ACTION_ERRORS},
        examples=[CANCELLED_EXAMPLE],
    )
    @idempotent
    def cancel(self, request, pk=None):
        return self._act(request, services.job_cancel)

    @extend_schema(
        tags=["factory"],
        summary="Retry a failed or cancelled job (ops)",
        description="Queued again with a fresh attempt budget. Any other state is a 409, and so is a job "
        "superseded by a later one for the same work (a post rendered again since): the message names it.",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: JobDetailSerializer, **ACTION_ERRORS},
    )
    @idempotent
    def retry(self, request, pk=None):
        return self._act(request, services.job_retry)


# --- workflow templates --------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        tags=["factory"],
        summary="List workflow templates (ops)",
        description="Every version, newest version of each name first. Filter by `name` and `active`.",
        responses={200: WorkflowTemplateSerializer(many=True), 400: ERRORS[400], **OPS_ERRORS},
    ),
    retrieve=extend_schema(
        tags=["factory"],
        summary="One workflow template (ops)",
        responses={200: WorkflowTemplateSerializer, **OPS_ERRORS},
    ),
)
class WorkflowTemplateViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = WorkflowTemplate.objects.all()
    serializer_class = WorkflowTemplateSerializer
    permission_classes = [OpsOnly, HasModelPermission]
    required_perms = None  # set per action in urlpatterns
    filterset_fields = ["name", "active"]
    ordering_fields = ["name", "version", "created_at", "id"]
    ordering = ["name", "-version"]

    @extend_schema(
        tags=["factory"],
        summary="Preflight a template against the GPU server (ops)",
        description="Asks the GPU server (COMFYUI_URL) for its node catalogue (/object_info) and names what in "
        "this workflow does not fit it: node types, inputs, link types, number limits, models (with where to get "
        "one the template's manifest lists). A server that cannot be reached, or that answers with no "
        "node catalogue, is a 503 `gpu_server_unreachable`.",
        request=None,
        responses={
            200: PreflightSerializer,
            **OPS_ERRORS,
            503: OpenApiResponse(
                ErrorSerializer,
                description="The GPU server could not be asked.",
                examples=[
                    OpenApiExample(
                        "Unreachable",
                        response_only=True,
                        value={
                            "error": {
                                "code": "gpu_server_unreachable",
                                "message": "GPU server unreachable at http://127.0.0.1:8188 (connection refused).",
                                "fields": {},
                            }
                        },
                    )
                ],
            ),
        },
        examples=[
            OpenApiExample(
                "A missing model",
                response_only=True,
                value={
                    "template": 3,
                    "server": "http://127.0.0.1:8188",
                    "ok": False,
                    "problems": [
                        "Node 4 (CheckpointLoaderSimple): ckpt_name 'missing.safetensors' is not installed on the "
                        "GPU server."
                    ],
                },
            )
        ],
    )
    def preflight(self, request, pk=None):
        template = self.get_object()
        url = settings.COMFYUI_URL
        try:
            # max_age=0: a person asking now wants the server's catalogue now, not a cached one.
            info = preflight.object_info(client_for(url), max_age=0)
        except ComfyUIError as error:
            reason = error.details.get("error") or error.message
            raise GpuServerUnavailable(f"GPU server unreachable at {url} ({reason}).") from error
        except (httpx.HTTPError, ValueError, OSError) as error:  # a 4xx, or not JSON: something else answers there
            raise GpuServerUnavailable(f"The GPU server at {url} gave no node catalogue ({error}).") from error
        if not isinstance(info, dict):
            raise GpuServerUnavailable(f"The GPU server at {url} gave no node catalogue.")
        problems = preflight.template_problems(template, info)
        return Response({"template": template.pk, "server": url, "ok": not problems, "problems": problems})


jobs = JobViewSet.as_view
templates = WorkflowTemplateViewSet.as_view

# Actions without a trailing slash, as the posts API's (posts/<id>/approve).
urlpatterns = [
    path("jobs/", jobs({"get": "list"}), name="job-list"),
    path("jobs/<int:pk>/", jobs({"get": "retrieve"}), name="job-detail"),
    path("jobs/<int:pk>/cancel", jobs({"post": "cancel"}, required_perms=["factory.change_job"]), name="job-cancel"),
    path("jobs/<int:pk>/retry", jobs({"post": "retry"}, required_perms=["factory.change_job"]), name="job-retry"),
    path("workflow-templates/", templates({"get": "list"}), name="workflowtemplate-list"),
    path("workflow-templates/<int:pk>/", templates({"get": "retrieve"}), name="workflowtemplate-detail"),
    path(
        "workflow-templates/<int:pk>/preflight",
        templates({"post": "preflight"}, required_perms=["factory.view_workflowtemplate"]),
        name="workflowtemplate-preflight",
    ),
]
