"""Helpers for driving the admin the way a browser does.

`form_data()` reads an admin add/change page and returns the body the browser
would POST back unchanged (hidden version, management forms, selected options),
so a test changes only the fields its behaviour is about.
"""

from html.parser import HTMLParser

from django.test import Client


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


class _FormReader(HTMLParser):
    """Collects the successful controls of one <form> (by id), as a browser would submit them."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.pairs: list[tuple[str, str]] = []
        self._select: dict | None = None
        self._option: dict | None = None
        self._textarea: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and "disabled" not in a:
            kind = (a.get("type") or "text").lower()
            if kind in {"submit", "button", "image", "reset", "file"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in a:
                return
            self.pairs.append((name, a.get("value", "on" if kind in {"checkbox", "radio"} else "")))
        elif tag == "textarea" and name:
            self._textarea = {"name": name, "text": ""}
        elif tag == "select" and name:
            self._select = {"name": name, "multiple": "multiple" in a, "selected": [], "first": None}
        elif tag == "option" and self._select is not None:
            self._option = {"value": a.get("value"), "selected": "selected" in a, "text": ""}

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea["text"] += data
        if self._option is not None:
            self._option["text"] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            # A browser drops the one newline that follows <textarea>.
            text = self._textarea["text"]
            self.pairs.append((self._textarea["name"], text[1:] if text.startswith("\n") else text))
            self._textarea = None
        elif tag == "option" and self._option is not None:
            self._close_option()
        elif tag == "select" and self._select is not None:
            if self._option is not None:
                self._close_option()
            select = self._select
            chosen = select["selected"] or ([] if select["multiple"] or select["first"] is None else [select["first"]])
            self.pairs.extend((select["name"], value) for value in chosen)
            self._select = None

    def _close_option(self):
        option, self._option = self._option, None
        value = option["value"] if option["value"] is not None else option["text"].strip()
        if self._select["first"] is None:
            self._select["first"] = value
        if option["selected"]:
            self._select["selected"].append(value)


def form_data(response, form_id: str | None = None) -> dict[str, str | list[str]]:
    """What submitting the page's admin form unchanged would send (the inline templates left out)."""
    if form_id is None:
        form_id = f"{response.context['opts'].model_name}_form"
    reader = _FormReader(form_id)
    reader.feed(response.content.decode())
    data: dict[str, list[str]] = {}
    for name, value in reader.pairs:
        if "__prefix__" not in name:
            data.setdefault(name, []).append(value)
    assert data, f"no <form id={form_id}> on the page"
    return {name: values[0] if len(values) == 1 else values for name, values in data.items()}


def error_text(response) -> str:
    """Every error the admin form page shows (form, fields, inline formsets), as one string."""
    parts = []
    adminform = response.context.get("adminform")
    if adminform is not None:
        form = adminform.form
        parts += [str(e) for e in form.non_field_errors()]
        parts += [f"{field}: {message}" for field, messages in form.errors.items() for message in messages]
    for inline in response.context.get("inline_admin_formsets") or []:
        formset = inline.formset
        parts += [str(e) for e in formset.non_form_errors()]
        parts += [str(message) for errors in formset.errors for messages in errors.values() for message in messages]
    return "\n".join(parts)
