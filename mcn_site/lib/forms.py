"""Form fields shared by the admin forms of several apps."""

from django import forms


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
