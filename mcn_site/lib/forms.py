"""Form fields shared by the admin forms of several apps."""

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS


class CommaSeparatedField(forms.CharField):
    """Edits a JSON list as "a, b, c"; `item` converts each piece (int for days of the month)."""

    def __init__(self, *, item=str, **kwargs):
        self.item = item
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value):
        pieces = [p.strip() for p in (value or "").replace("，", ",").split(",") if p.strip()]
        try:
            return [self.item(p) for p in pieces]
        except ValueError:
            raise forms.ValidationError("Separate the values with commas, e.g. 1, 15, 28.") from None


class AdminModelForm(forms.ModelForm):
    """A ModelForm whose model checks never judge a value the user did not type.

    Django runs Model.clean() even when a field failed to parse ("1, fifteen", broken
    JSON); the model then sees that field's previous value and adds a misleading second
    message ("Pick at least one day", '"lora_name" is required'). For such fields only the
    parse error is kept.
    """

    def _post_clean(self):
        failed = {name: len(errors) for name, errors in self._errors.items() if name != NON_FIELD_ERRORS}
        super()._post_clean()
        for name, count in failed.items():
            del self._errors[name].data[count:]
