"""What a user sees when a model refuses its data."""

from django.core.exceptions import ValidationError


def clean_errors(instance) -> dict[str, list[str]]:
    """The messages full_clean() shows the user, by field; {} when the instance is valid."""
    try:
        instance.full_clean()
    except ValidationError as error:
        return error.message_dict
    return {}
