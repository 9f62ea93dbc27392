"""Placeholders are filled in the parsed tree: values arrive verbatim, types stay types."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory.templating import (
    UI_FORMAT_HELP,
    InjectionError,
    find_placeholders,
    infer_declarations,
    inject,
    prefix_outputs,
    resolve_values,
    template_problems,
)

TEMPLATE = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "{{INPUT_IMAGE}}"}},
    "2": {
        "class_type": "ImageScale",
        "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": "{{WIDTH}}", "height": "{{HEIGHT}}"},
    },
    "3": {"class_type": "ImageAddNoise", "inputs": {"image": ["2", 0], "seed": "{{SEED}}", "strength": 0.25}},
    "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{PROMPT}}, in the style of {{STYLE}}"}},
    "5": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "mcn/job-{{JOB_ID}}"}},
}
DECLARED = {
    "INPUT_IMAGE": {"type": "image"},
    "WIDTH": {"type": "int", "default": 512},
    "HEIGHT": {"type": "int", "default": 512},
    "SEED": {"type": "int"},
    "PROMPT": {"type": "string"},
    "STYLE": {"type": "string", "default": "film"},
    "JOB_ID": {"type": "int"},
}

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)


@given(value=text)
def test_any_string_value_arrives_verbatim_as_a_whole_value_and_inside_a_longer_string(value):
    workflow = {
        "1": {"class_type": "PreviewAny", "inputs": {"source": "{{TEXT}}"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "before {{TEXT}} after"}},
    }
    filled = inject(workflow, {"TEXT": value})
    # What ComfyUI parses is exactly what we meant: serialise once, read back.
    parsed = json.loads(json.dumps(filled))
    assert parsed["1"]["inputs"]["source"] == value
    assert parsed["2"]["inputs"]["text"] == f"before {value} after"


@given(
    seed=st.integers(min_value=0, max_value=2**63),
    cfg=st.floats(allow_nan=False, allow_infinity=False),
    flag=st.booleans(),
)
def test_whole_value_placeholders_keep_their_type(seed, cfg, flag):
    workflow = {
        "1": {"class_type": "KSampler", "inputs": {"seed": "{{SEED}}", "cfg": "{{CFG}}", "add_noise": "{{NOISE}}"}}
    }
    values = resolve_values(
        {"SEED": {"type": "int"}, "CFG": {"type": "float"}, "NOISE": {"type": "bool"}},
        {"SEED": seed, "CFG": cfg, "NOISE": flag},
    )
    inputs = json.loads(json.dumps(inject(workflow, values)))["1"]["inputs"]
    assert inputs["seed"] == seed and type(inputs["seed"]) is int
    assert inputs["cfg"] == cfg and type(inputs["cfg"]) is float
    assert inputs["add_noise"] is flag


@pytest.mark.parametrize(
    "value", ['say "hi"', "line one\nline two", "C:\\path\\to", "$& and $1", r"\1 \g<0>", "{{SEED}}", "{{", "}}"]
)
def test_values_that_break_string_replacement_arrive_verbatim(value):
    values = resolve_values(DECLARED, {"INPUT_IMAGE": "face.png", "SEED": 7, "PROMPT": value, "JOB_ID": 1})
    filled = inject(TEMPLATE, values)
    assert filled["4"]["inputs"]["text"] == f"{value}, in the style of film"
    # A value that itself looks like a placeholder is not filled a second time.
    assert filled["3"]["inputs"]["seed"] == 7


def test_a_placeholder_inside_a_longer_string_is_replaced_as_text():
    values = resolve_values(DECLARED, {"INPUT_IMAGE": "face.png", "SEED": 1, "PROMPT": "x", "JOB_ID": 42})
    assert inject(TEMPLATE, values)["5"]["inputs"]["filename_prefix"] == "mcn/job-42"


def test_the_template_itself_is_not_modified():
    before = json.dumps(TEMPLATE, sort_keys=True)
    inject(TEMPLATE, resolve_values(DECLARED, {"INPUT_IMAGE": "a.png", "SEED": 1, "PROMPT": "x", "JOB_ID": 1}))
    assert json.dumps(TEMPLATE, sort_keys=True) == before


def test_a_missing_value_and_an_unknown_parameter_are_both_reported_before_anything_is_sent():
    with pytest.raises(InjectionError) as error:
        resolve_values(DECLARED, {"INPUT_IMAGE": "a.png", "PROMPT": "x", "JOB_ID": 1, "SEEED": 3})
    assert "Parameters that match no placeholder: SEEED." in error.value.problems
    assert "SEED has no value and no default." in error.value.problems


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("int", "forty", "SEED must be a whole number, not 'forty'."),
        ("int", 1.5, "SEED must be a whole number, not 1.5."),
        ("int", True, "SEED must be a whole number, not True."),
        ("float", "fast", "SEED must be a number, not 'fast'."),
        ("bool", "maybe", "SEED must be true or false, not 'maybe'."),
        ("string", {"a": 1}, "SEED must be text, not {'a': 1}."),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_with_its_name(kind, value, message):
    with pytest.raises(InjectionError) as error:
        resolve_values({"SEED": {"type": kind}}, {"SEED": value})
    assert error.value.problems == [message]


@pytest.mark.parametrize(("raw", "expected"), [("40", 40), ("true", True), ("no", False), ("0.5", 0.5)])
def test_command_line_text_is_converted_to_the_declared_type(raw, expected):
    kind = {int: "int", bool: "bool", float: "float"}[type(expected)]
    assert resolve_values({"K": {"type": kind}}, {"K": raw}) == {"K": expected}


def test_node_input_overrides_apply_by_node_id_and_an_unknown_node_is_an_error():
    workflow = {"3": {"class_type": "KSampler", "inputs": {"steps": 20, "cfg": 7.0}}}
    assert inject(workflow, {}, overrides={"3": {"steps": 30}})["3"]["inputs"] == {"steps": 30, "cfg": 7.0}
    with pytest.raises(InjectionError, match=r"Override for node 9: the workflow has no such node\."):
        inject(workflow, {}, overrides={"9": {"steps": 30}})


def test_every_filename_prefix_goes_under_the_jobs_own_folder():
    workflow = {"5": {"class_type": "SaveImage", "inputs": {"filename_prefix": "portrait"}}}
    assert prefix_outputs(workflow, "mcn/job7-2")["5"]["inputs"]["filename_prefix"] == "mcn/job7-2/portrait"


def test_a_ui_format_export_is_refused_with_how_to_export_the_api_format():
    ui_export = {"last_node_id": 5, "nodes": [{"id": 1, "type": "LoadImage"}], "links": []}
    assert template_problems(ui_export, {}) == [UI_FORMAT_HELP]
    assert "Export (API)" in UI_FORMAT_HELP


def test_template_problems_name_undeclared_and_unused_placeholders():
    problems = template_problems(TEMPLATE, {**DECLARED, "EXTRA": {"type": "int"}, "SEED": {"type": "number"}})
    assert "Placeholder SEED: type must be one of string, int, float, bool, image, audio." in problems
    assert "Declared placeholders the workflow never uses: EXTRA." in problems
    declared = dict(DECLARED)
    del declared["STYLE"]
    assert template_problems(TEMPLATE, declared) == ["Placeholders used but not declared: STYLE."]


def test_declarations_are_inferred_from_where_each_placeholder_stands():
    assert find_placeholders(TEMPLATE) == set(DECLARED)
    assert infer_declarations(TEMPLATE) == {
        "HEIGHT": {"type": "int"},
        "INPUT_IMAGE": {"type": "image"},
        "JOB_ID": {"type": "string"},
        "PROMPT": {"type": "string"},
        "SEED": {"type": "int"},
        "STYLE": {"type": "string"},
        "WIDTH": {"type": "int"},
    }
