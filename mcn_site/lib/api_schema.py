"""The API schema's generator (DEFAULT_SCHEMA_CLASS); apart from mcn_site.lib.api, which DRF's settings import
while drf_spectacular.openapi imports DRF's generic views (a cycle)."""

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import force_instance, is_serializer
from rest_framework import serializers


class AutoSchema(SpectacularAutoSchema):
    """The schema's request bodies: JSON, or multipart/form-data where the body has a file field.

    The server also parses forms everywhere (the browsable API, curl -F), but a form cannot say `null` or
    an empty list, and JSON cannot carry a file: each body is documented in the one type that can hold it.
    """

    def map_parsers(self):
        parsers = super().map_parsers()
        serializer = self.get_request_serializer()
        fields = getattr(force_instance(serializer), "fields", {}) if is_serializer(serializer) else {}
        wanted = "multipart/form-data" if any(isinstance(f, serializers.FileField) for f in fields.values()) else None
        wanted = wanted or "application/json"
        return [wanted] if wanted in parsers else parsers

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """Text the server takes: no NUL and no lone surrogate (DRF refuses both), and where it may not be
        blank, something besides spaces (DRF trims before it checks)."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        plain_text = (
            isinstance(field, serializers.CharField)
            and not isinstance(field, serializers.ChoiceField)
            and not any(isinstance(v, RegexValidator) for v in field.validators)  # it says its own pattern
        )
        if direction == "request" and plain_text and schema.get("type") == "string" and "pattern" not in schema:
            if field.allow_blank or not field.trim_whitespace:
                # `+`: spectacular adds the empty string as a oneOf branch of its own for a blank-able field
                schema["pattern"] = f"^{_TEXT}+$" if field.allow_blank else f"^{_TEXT}*$"
            else:
                schema["pattern"] = f"^{_TEXT}*[^\\x00\\ud800-\\udfff\\s]{_TEXT}*$"
        return schema


_TEXT = "[^\\x00\\ud800-\\udfff]"


def document_shared_answers(result, generator, request, public):
    """POSTPROCESSING_HOOKS: answers every list or every body shares, said once for all of them.

    - A body over the server's limit is a 413 (mcn_site.lib.api.refused_request).
    - A filter given an empty value (`?status=`) is not applied, as django-filter reads it: `allowEmptyValue`.
      `page` and `page_size` are not filters: empty, they are a 400.
    - A page past the last one is a 404.
    """
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["responses"].setdefault("413", _error("The request body is over the server's limit."))
        operation = item.get("get")
        if not operation:
            continue
        names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        if "page" not in names:
            continue
        for parameter in operation["parameters"]:
            if parameter.get("in") == "query" and parameter["name"] not in ("page", "page_size"):
                parameter["allowEmptyValue"] = True
        operation["responses"].setdefault("404", _error("A page past the last one."))
    return result


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
