"""The integration API's shared framework: one error shape, pagination, permissions, throttling,
idempotent actions and version preconditions. Every app's `api.py` builds on these.

Errors, everywhere under /api/:

    {"error": {"code": "invalid", "message": "...", "fields": {"shots.0.script": ["..."]}}}

plus `current_version` on 409 `stale` and 412 `precondition_failed`, `retry_after` on 429.
"""

import hashlib
import json
import logging
import re
from datetime import UTC
from functools import wraps

import django_rq
import redis
from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.template.defaultfilters import filesizeformat
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField, RangeField
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.widgets import DateRangeWidget
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

log = logging.getLogger(__name__)

# Redis (throttle counters, idempotency keys) down or restarting: a 503 the client may retry after this long.
REDIS_RETRY_AFTER = 5

NON_FIELD = "__all__"

# --------------------------------------------------------------------------- errors


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"
    default_detail = "The object changed since you read it: read it again and resend with its new ETag."

    def __init__(self, *, current_version: int, detail: str | None = None):
        super().__init__(detail or self.default_detail)
        self.current_version = current_version


class PreconditionRequired(exceptions.APIException):
    """A write that says neither which version it edited (`version`) nor which ETag it read (`If-Match`)."""

    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    default_code = "precondition_required"
    default_detail = 'Send the version you edited, as "version" or as an If-Match: "v<version>" header.'

    def __init__(self):
        super().__init__(self.default_detail)
        self.fields = {"version": [self.default_detail]}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "This request conflicts with another one."


class Unprocessable(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "unprocessable"
    default_detail = "This request cannot be processed."


def _flatten(detail, path: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"shots.0.script": ["..."]}: one path per field that failed."""
    if isinstance(detail, dict):
        out = {}
        for key, value in detail.items():
            out.update(_flatten(value, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {path or api_settings.NON_FIELD_ERRORS_KEY: [str(item) for item in detail]}
        out = {}
        for index, item in enumerate(detail):
            if item:  # DRF puts {} for list items without errors
                out.update(_flatten(item, f"{path}.{index}" if path else str(index)))
        return out
    return {path or api_settings.NON_FIELD_ERRORS_KEY: [str(detail)]}


def _summary(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {' '.join(messages)}" for name, messages in fields.items()]
    return "Some fields are not valid. " + " ".join(parts)


def error_body(code: str, message: str, fields: dict | None = None, **extra) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}


def refused_request(exc: SuspiciousOperation) -> tuple[int, dict]:
    """(status, body) for a request Django refuses while reading it: a body over DATA_UPLOAD_MAX_MEMORY_SIZE,
    too many fields or files, a malformed multipart form. The message names the limit that was passed."""
    if isinstance(exc, RequestDataTooBig):
        limit = filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        message = (
            f"The request body is larger than {limit}, the limit for a request's data (uploaded files not "
            "counted): send less, or send files as multipart/form-data uploads."
        )
        return status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, error_body("too_large", message)
    if isinstance(exc, TooManyFieldsSent):
        message = (
            f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} query parameters or form "
            "fields, the limit."
        )
        return status.HTTP_400_BAD_REQUEST, error_body("too_many_fields", message)
    if isinstance(exc, TooManyFilesSent):
        message = f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files, the limit."
        return status.HTTP_400_BAD_REQUEST, error_body("too_many_files", message)
    message = "The request is malformed (its headers, query or body could not be read): check and resend it."
    return status.HTTP_400_BAD_REQUEST, error_body("bad_request", message)


def bad_request_response(exception) -> JsonResponse:
    """Django's 400 (handler400) under /api/: what Django refused before DRF's handler saw it."""
    if not isinstance(exception, SuspiciousOperation):
        exception = SuspiciousOperation()
    status_code, body = refused_request(exception)
    return JsonResponse(body, status=status_code)


def exception_handler(exc, context):
    """DRF's handler, reshaped into the one error shape; Django's ValidationError from services is a 400."""
    if isinstance(exc, SuspiciousOperation):  # Django refused the body while DRF read it (even with DEBUG on)
        status_code, body = refused_request(exc)
        return Response(body, status=status_code)
    if isinstance(exc, DjangoValidationError):
        set_rollback()
        current_version = getattr(exc, "current_version", None)
        if current_version is not None:  # posts.services.ConcurrentEditError: somebody saved first
            body = error_body("stale", " ".join(exc.messages), current_version=current_version)
            return Response(body, status=status.HTTP_409_CONFLICT)
        fields = dict(exc.message_dict) if hasattr(exc, "error_dict") else {}
        general = fields.pop(NON_FIELD, [])
        if fields:
            message = " ".join([*general, *(m for messages in fields.values() for m in messages)])
            code = "invalid"
        else:
            message = " ".join(exc.messages)
            codes = {e.code for e in exc.error_list} if hasattr(exc, "error_list") else set()
            code = codes.pop() if len(codes) == 1 and None not in codes else "invalid"
        return Response(error_body(code, message, fields), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        # A transient outage (matrix row 2), not a bug: 503 with a retry hint, never a 500.
        set_rollback()
        log.warning("API request refused, Redis unavailable: %s", exc)
        body = error_body(
            "unavailable",
            f"A backing service is restarting. Retry in {REDIS_RETRY_AFTER} seconds.",
            retry_after=REDIS_RETRY_AFTER,
        )
        return Response(
            body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": str(REDIS_RETRY_AFTER)}
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or exceptions.NotFound.default_detail)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or exceptions.PermissionDenied.default_detail)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug, not bad input: Django's 500 and its error report
    extra = {}
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        general = fields.get(api_settings.NON_FIELD_ERRORS_KEY) if len(fields) == 1 else None
        code, message = "invalid", " ".join(general) if general else _summary(fields)
    else:
        fields = getattr(exc, "fields", {})
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        message = str(exc.detail) if not isinstance(exc.detail, dict | list) else exc.default_detail
        if isinstance(exc, exceptions.Throttled):
            code, extra["retry_after"] = "throttled", int(exc.wait or 0)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response.status_code = status.HTTP_401_UNAUTHORIZED  # even where no WWW-Authenticate fits
        if getattr(exc, "current_version", None) is not None:
            extra["current_version"] = exc.current_version
    response.data = error_body(str(code), message, fields, **extra)
    return response


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs: invalid, not_found, stale, throttled, ...")
    message = serializers.CharField(help_text="For people: what went wrong and what to do.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Field errors by path, e.g. {"shots.0.script": ["This field is required."]}.',
    )
    current_version = serializers.IntegerField(required=False, help_text="409 stale and 412: the version now.")
    retry_after = serializers.IntegerField(required=False, help_text="429: seconds to wait.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def _example(name: str, code: str, message: str, **extra) -> OpenApiExample:
    return OpenApiExample(name, value=error_body(code, message, **extra), response_only=True)


ERRORS: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(
        ErrorSerializer,
        description="Invalid input: `fields` says which.",
        examples=[
            _example(
                "Invalid field",
                "invalid",
                "Some fields are not valid. script: An A-roll shot needs a script.",
                fields={"script": ["An A-roll shot needs a script: the words the artist says."]},
            )
        ],
    ),
    401: OpenApiResponse(
        ErrorSerializer,
        description="No credentials, or a token that is unknown or revoked.",
        examples=[_example("Revoked token", "authentication_failed", "This API token was revoked.")],
    ),
    403: OpenApiResponse(
        ErrorSerializer,
        description="Your role may not do this (e.g. only reviewers approve).",
        examples=[_example("Not a reviewer", "permission_denied", "Only reviewers may approve or reject a post.")],
    ),
    404: OpenApiResponse(
        ErrorSerializer,
        description="No such object, or not one of your artists'.",
        examples=[_example("Not found", "not_found", "No Post matches the given query.")],
    ),
    409: OpenApiResponse(
        ErrorSerializer,
        description="`stale`: somebody saved first (send the new `version`); `in_progress`: the same "
        "Idempotency-Key is still running.",
        examples=[
            _example(
                "Stale version",
                "stale",
                "ops changed this post at 24 Nov 2026, 10:02 (now version 8). Reload to see their changes.",
                current_version=8,
            ),
            _example("In progress", "in_progress", "A request with this Idempotency-Key is still running."),
        ],
    ),
    412: OpenApiResponse(
        ErrorSerializer,
        description="`If-Match` names another version than the current one.",
        examples=[
            _example("Precondition failed", "precondition_failed", PreconditionFailed.default_detail, current_version=8)
        ],
    ),
    428: OpenApiResponse(
        ErrorSerializer,
        description='Neither `version` in the body nor an `If-Match: "v<version>"` header: say which version '
        "you edited.",
        examples=[
            _example(
                "No version",
                "precondition_required",
                PreconditionRequired.default_detail,
                fields={"version": [PreconditionRequired.default_detail]},
            )
        ],
    ),
    422: OpenApiResponse(
        ErrorSerializer,
        description="The Idempotency-Key was used with a different body.",
        examples=[
            _example(
                "Key reused", "idempotency_mismatch", "This Idempotency-Key was used for a different request body."
            )
        ],
    ),
    429: OpenApiResponse(
        ErrorSerializer,
        description="Too many expensive actions (generate, render) for this token: wait `retry_after` seconds.",
        examples=[_example("Throttled", "throttled", "Request was throttled.", retry_after=42)],
    ),
}


_KEY_PATTERN = "^[\\x21-\\x7e]{1,200}$"  # printable ASCII, no spaces: what `idempotent` accepts
_ETAG_PATTERN = '^[ \\t]*(\\*|(W/)?"v[0-9]+")[ \\t]*$'  # what `expected_version` accepts

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 200, "pattern": _KEY_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description="Any unique text (a UUID) of 1 to 200 printable ASCII characters without spaces (400 "
    "otherwise): a retry with the same key and body returns the first answer, with `Idempotent-Replayed: "
    "true`, and starts nothing new; the same key with another body is a 422. Kept for 24 hours.",
)
IF_MATCH = OpenApiParameter(
    "If-Match",
    {"type": "string", "pattern": _ETAG_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description='The ETag you read, e.g. `"v3"` (`*`: any version): refused with 412 if the post has moved on '
    "since. A write needs this header or `version` in the body (428 with neither).",
)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error responses for an endpoint: `responses={200: X, **errors(400, 404)}`."""
    return {code: ERRORS[code] for code in (401, *codes)}


# --------------------------------------------------------------------------- lists and permissions


class Pagination(PageNumberPagination):
    """`page` (1 = first) and `page_size` (1 to 200; a larger one is capped): anything else is a 400 naming
    the parameter, a page past the last one a 404 (DRF's). The schema says the same."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        bad = {
            name: [f"Give a whole number of 1 or more{' (at most 200 are returned)' * (name == 'page_size')}."]
            for name in (self.page_query_param, self.page_size_query_param)
            if name in request.query_params and not _positive_integer(request.query_params[name])
        }
        if bad:
            raise exceptions.ValidationError(bad)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_query_param:
                parameter["description"] = "The page, 1 for the first; a page past the last one is a 404."
            else:
                parameter["description"] = f"Results per page, {self.page_size} if not given; at most 200 are returned."
        return parameters


def _positive_integer(value: str) -> bool:
    return value.isascii() and value.isdigit() and int(value) >= 1


class FilterBackend(DjangoFilterBackend):
    """django-filter, with booleans as strict as the schema says: `?active=maybe` is a 400, not "no filter".

    (django-filter reads anything but true/false/1/0 as "not given".) An empty value stays "not given",
    as the schema says (`allowEmptyValue`, mcn_site.lib.api_schema.document_shared_answers).
    """

    BOOLEAN_VALUES = {"", "true", "false", "True", "False", "1", "0"}

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            bad = {
                name: ["Give true or false."]
                for name, declared in filterset_class.base_filters.items()
                if isinstance(declared, filters.BooleanFilter)
                and any(value not in self.BOOLEAN_VALUES for value in request.query_params.getlist(name))
            }
            if bad:
                raise exceptions.ValidationError(bad)
        return super().filter_queryset(request, queryset, view)


class HasModelPermission(DjangoModelPermissions):
    """The admin's role permissions, per method, on the view's model: GET needs `view_`, POST `add_`, ...

    A view (or a ViewSet action, through `@action(required_perms=...)`) may name the permissions
    itself in `required_perms`, as a list or a {method: list} dict. Which objects a user reaches is
    the view's queryset (a selector), so a foreign object is a 404, never a 403.
    """

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return False
        required = getattr(view, "required_perms", None)
        if isinstance(required, dict):
            required = required.get(request.method)
        if required is not None:
            return request.user.has_perms(required)
        return super().has_permission(request, view)


class ExpensiveThrottle(SimpleRateThrottle):
    """The `expensive` rate (LLM and GPU work), counted per token; a browser session counts per user."""

    scope = "expensive"

    def get_rate(self):
        # Read at request time, not import time, so the setting can change (tests, reloads).
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        token = getattr(request.auth, "prefix", None)
        ident = f"token-{token}" if token else f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


# --------------------------------------------------------------------------- versions


def etag(version: int) -> str:
    return f'"v{version}"'


_ETAG_RE = re.compile(r'^(?:W/)?"v(\d+)"$')


def expected_version(request, *, current_version: int, body_version: int | None, required: bool = True) -> int | None:
    """The version a write is based on: `If-Match: "v<n>"` (412 if the object moved on) or `version` in the body.

    The body's version is checked by the service itself (409 `stale`, with who changed it).
    """
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        if if_match.strip() == "*":
            return current_version
        match = _ETAG_RE.match(if_match.strip())
        if match is None:
            raise exceptions.ValidationError({"If-Match": ['Send the ETag you read, e.g. "v3".']})
        if int(match.group(1)) != current_version:
            raise PreconditionFailed(current_version=current_version)
        return current_version
    if body_version is None and required:
        raise PreconditionRequired()
    return body_version


# --------------------------------------------------------------------------- idempotent actions

IDEMPOTENCY_TTL = 24 * 3600  # a finished answer is replayed for a day
# A pending marker outlives any action (they only queue work), but not a crashed process by much:
# a retry after a crash mid-request must not be refused for a whole day.
IDEMPOTENCY_PENDING_TTL = 300
_KEY_RE = re.compile(_KEY_PATTERN)


def _redis():
    return django_rq.get_connection("default")


def _request_hash(request) -> str:
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict: form or multipart
        data = {key: values for key, values in data.lists()}
    return hashlib.sha256(json.dumps(data, sort_keys=True, cls=JSONEncoder).encode()).hexdigest()


def idempotent(view_method):
    """Make an action POST safe to retry with an `Idempotency-Key` header (optional).

    The first request with a key runs and its 2xx answer is kept for 24 h; a retry with the same
    key and body gets that answer again (`Idempotent-Replayed: true`) and starts nothing. While the
    first is still running, a duplicate gets 409 `in_progress`; the same key with another body
    gets 422 `idempotency_mismatch`. An error answer is not kept: the request may be retried.
    """

    @wraps(view_method)
    def wrapped(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not _KEY_RE.match(key):
            raise exceptions.ValidationError(
                {"Idempotency-Key": ["Use 1 to 200 printable characters without spaces, e.g. a UUID."]}
            )
        redis_key = f"idem:{request.user.pk}:{request.method}:{request.path}:{key}"
        digest = _request_hash(request)
        redis = _redis()
        pending = json.dumps({"state": "pending", "hash": digest})
        # Race: two requests with one key. SET NX lets exactly one of them run; the other reads its marker.
        if not redis.set(redis_key, pending, nx=True, ex=IDEMPOTENCY_PENDING_TTL):
            stored = redis.get(redis_key)
            if stored is None:  # expired between the two calls: treat it as still running
                raise Conflict("A request with this Idempotency-Key is still running.", code="in_progress")
            stored = json.loads(stored)
            if stored["hash"] != digest:
                raise Unprocessable(
                    "This Idempotency-Key was used for a different request body.", code="idempotency_mismatch"
                )
            if stored["state"] == "pending":
                raise Conflict("A request with this Idempotency-Key is still running.", code="in_progress")
            headers = {**stored["headers"], "Idempotent-Replayed": "true"}
            return Response(stored["body"], status=stored["status"], headers=headers)
        try:
            response = view_method(self, request, *args, **kwargs)
        except BaseException:
            redis.delete(redis_key)
            raise
        if 200 <= response.status_code < 300:
            done = {
                "state": "done",
                "hash": digest,
                "status": response.status_code,
                "body": json.loads(json.dumps(response.data, cls=JSONEncoder)),
                "headers": {name: response[name] for name in ("ETag", "Location") if response.has_header(name)},
            }
            redis.set(redis_key, json.dumps(done), ex=IDEMPOTENCY_TTL)
        else:
            redis.delete(redis_key)
        return response

    return wrapped


# --- filters that turn impossible values into a 400, never a database overflow (a 500) ---------------


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": 2**63 - 1})
class IdFilter(filters.NumberFilter):
    """A row id: a whole number the database can hold (a 1e83 or a 1.5 is a 400, not an overflow, not a 500).

    A plain number, not a choice of visible rows: another team's id filters to nothing, it is not "invalid".
    """

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"min_value": 1, "max_value": 2**63 - 1, **kwargs})


class InstantField(IsoDateTimeField):
    """An ISO 8601 instant, handed to the database in UTC.

    9999-12-31T23:59-05:00 is a 400, not an overflow; an offset PostgreSQL cannot store (+22:18, legal
    in Python) is converted to UTC first rather than reaching the database as a 500.
    """

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return value
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise DjangoValidationError("Give an instant between the years 1 and 9999 in UTC.") from None


class InstantRangeField(RangeField):
    widget = DateRangeWidget

    def __init__(self, *args, **kwargs):
        super().__init__((InstantField(), InstantField()), *args, **kwargs)


class InstantRangeFilter(filters.IsoDateTimeFromToRangeFilter):
    field_class = InstantRangeField


class InstantFilter(filters.IsoDateTimeFilter):
    """One ISO 8601 instant bound (created_after=...): outside the years 1-9999 in UTC is a 400."""

    field_class = InstantField


# --------------------------------------------------------------------------- downloads


class DownloadNegotiation(BaseContentNegotiation):
    """Download endpoints send the file whatever the client accepts (`Accept: video/mp4` is no 406);
    their errors keep the JSON error shape."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
