"""The shot workflow admin: a mapping is checked when ops save it, with the template and placeholder named."""

import pytest
from django.urls import reverse

from factory.services import template_import
from mcn_site.lib import roles
from posts.models import ShotKind, ShotWorkflow
from tests.admin import error_text, login
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ADD = reverse("admin:posts_shotworkflow_add")
CHANGELIST = reverse("admin:posts_shotworkflow_changelist")
OLD_STILL = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{POSITIVE_PROMPT}}", "clip": ["1", 1]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "Flux_API_{{TASK_ID}}"}},
}


@pytest.fixture
def ops():
    return login(make_user(role=roles.OPS, username="olga"))


def add(client, **fields):
    data = {"kind": ShotKind.B_ROLL, "step": "picture", "bindings": "{}", **fields}
    return client.post(ADD, data)


def test_a_typo_in_the_template_name_is_shown_on_the_form_and_nothing_is_saved(ops):
    template_import(name="portrait", workflow=OLD_STILL)

    response = add(ops, template_name="portrai")

    assert response.status_code == 200
    assert error_text(response) == "template_name: No active workflow template named “portrai”. Did you mean portrait?"
    assert not ShotWorkflow.objects.exists()


def test_an_unbound_placeholder_is_shown_on_the_bindings_field(ops):
    template_import(name="flux-dev", workflow=OLD_STILL, placeholders={"TASK_ID": {"type": "string", "default": ""}})

    response = add(ops, template_name="flux-dev")

    assert error_text(response) == (
        "bindings: Template “flux-dev” v1: placeholder POSITIVE_PROMPT has no default and is bound to no production "
        'parameter: bind it (e.g. {"POSITIVE_PROMPT": "PROMPT"}) or give it a default.'
    )
    assert not ShotWorkflow.objects.exists()


def test_a_bound_mapping_is_saved_and_listed(ops):
    template_import(name="flux-dev", workflow=OLD_STILL, placeholders={"TASK_ID": {"type": "string", "default": ""}})

    response = add(ops, template_name="flux-dev", bindings='{"POSITIVE_PROMPT": "PROMPT"}')

    assert response.status_code == 302, error_text(response)
    assert ShotWorkflow.objects.get().bindings == {"POSITIVE_PROMPT": "PROMPT"}
    listed = ops.get(CHANGELIST)
    assert listed.status_code == 200
    assert "flux-dev" in listed.content.decode()
    assert "PROMPT" in ops.get(ADD).content.decode()  # the form lists the contract's parameters
