"""Text people type is stored as typed, except the one character no database keeps alike: NUL.

PostgreSQL refuses a NUL in text and in JSON (`\\u0000`): a 500 there, while SQLite stores it. One rule
for every entry point, so the storyboard page, the admin, the API and imports all answer 400 naming the
field: models mix in NulFreeText (their full_clean asks it), the API's model-clean serializers ask
nul_errors(), and services that store free text without a full_clean (review notes, director feedback)
call refuse_nul().
"""

from django.core.exceptions import ValidationError
from django.db import models

# DRF's wording for the same refusal (its CharField refuses NUL before our code runs).
NUL_MESSAGE = "Null characters are not allowed."
NUL_CODE = "null_characters_not_allowed"


def has_nul(value) -> bool:
    """Whether `value` (text, or JSON data: lists, objects and their keys) holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def refuse_nul(**fields) -> None:
    """Raise a ValidationError naming each of `fields` (name=value) that holds a NUL character."""
    bad = {name: ValidationError(NUL_MESSAGE, code=NUL_CODE) for name, value in fields.items() if has_nul(value)}
    if bad:
        raise ValidationError(bad)


def nul_errors(instance: models.Model, exclude=()) -> dict[str, list[ValidationError]]:
    """The text and JSON fields of `instance` (but `exclude`) that hold a NUL character, with the refusal."""
    return {
        field.name: [ValidationError(NUL_MESSAGE, code=NUL_CODE)]
        for field in instance._meta.concrete_fields
        if isinstance(field, models.CharField | models.TextField | models.JSONField)
        and field.name not in (exclude or ())
        and has_nul(field.value_from_object(instance))
    }


class NulFreeText:
    """Model mixin: full_clean() refuses a NUL character in every text and JSON field, beside the field's
    other errors. (Django's form fields refuse NUL already; model fields, and so services, did not.)"""

    def clean_fields(self, exclude=None):
        errors = nul_errors(self, exclude)
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)
