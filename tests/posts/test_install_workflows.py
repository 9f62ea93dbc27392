"""manage.py install_workflows: the library's templates and the default shot mappings, once."""

import io

import pytest
from django.core.management import call_command

from factory.models import WorkflowTemplate
from posts.models import ShotWorkflow
from posts.workflows import LIBRARY_MAPPINGS, PARAMETERS, mapping_problems

pytestmark = pytest.mark.django_db


def install(*args) -> str:
    out = io.StringIO()
    call_command("install_workflows", *args, stdout=out)
    return out.getvalue()


def mappings() -> dict[tuple[str, str], str]:
    return {(m.kind, m.step): m.template_name for m in ShotWorkflow.objects.all()}


def test_installing_maps_each_kind_to_the_real_templates_and_a_rerun_changes_nothing():
    first = install()
    versions = list(WorkflowTemplate.objects.values_list("name", "version"))
    again = install()

    assert mappings() == LIBRARY_MAPPINGS["real"]
    assert (mappings()[("a_roll", "avatar")], mappings()[("b_roll", "motion")]) == ("infinitetalk-avatar", "wan22-i2v")
    assert sorted(versions) == [("infinitetalk-avatar", 1), ("portrait", 1), ("wan22-i2v", 1)]
    assert list(WorkflowTemplate.objects.values_list("name", "version")) == versions
    assert "wan22-i2v v1: imported; motion step on the default pool (its manifest asks for the video pool" in first
    assert "needs 4 model files, 35.6 GB" in first
    assert "WanInfiniteTalkToVideo arrived in ComfyUI after 0.3.64" in first
    assert "A-roll (artist talking) avatar → infinitetalk-avatar: set." in first
    assert "imported" not in again and "set." not in again
    assert again.count("unchanged") == 3 + 6


def test_preview_maps_the_model_free_variants_over_the_real_ones():
    install()
    out = install("--preview")

    assert set(mappings().values()) == {"portrait-preview", "avatar-preview", "motion-preview"}
    assert "avatar-preview v1: imported; avatar step on the default pool; needs no model." in out


@pytest.mark.parametrize("variant", ["real", "preview"])
def test_every_library_template_binds_with_no_bindings(variant):
    install(*(["--preview"] if variant == "preview" else []))

    for mapping in ShotWorkflow.objects.all():
        assert mapping_problems(step=mapping.step, template_name=mapping.template_name, bindings={}) == {}
        template = WorkflowTemplate.objects.get(name=mapping.template_name)
        own = {key for key, spec in template.placeholders.items() if "default" not in spec}
        assert own <= set(PARAMETERS), mapping
