"""EditOptions presets, overrides and validation; EditJob validation; what an inversion's cache key depends on."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest

from v2vz.api.errors import InvalidArgument, RangeError, V2vzError
from v2vz.api.job import ATTENTION_LAYOUTS, PRESETS, EditJob, EditOptions, parse_fps
from v2vz.api.wire import job_from_request, job_to_request

PUBLISHED = {
    "inversion": "null-text",
    "inversion_prompt": "empty",
    "null_inner_steps": 1,
    "null_lr_decay": "published",
    "null_start": 0.5,
    "attention": "published",
    "joint_groupnorm": True,
    "refine_cross_replace": 0.4,
    "cross_replace_cutoff": "published",
    "refine_padding": "identity",
    "vae_encode": "sample",
}
# Where our default deliberately differs from the published code: the table of docs/method-differences.md.
DEFAULT_DIFFERS = {
    "inversion": "direct",
    "inversion_prompt": "source",
    "null_lr_decay": "steps",
    "null_start": 0.0,
    "attention": "dense",
    "joint_groupnorm": False,
    "refine_cross_replace": 0.8,
    "cross_replace_cutoff": "nearest",
    "refine_padding": "aligned",
    "vae_encode": "mean",
}
METHOD_DIFFERENCES = Path(__file__).resolve().parents[2] / "docs" / "method-differences.md"
# method.md section 1: SD v1-4 set-up shared by both.
SHARED = {"steps": 50, "guidance": 7.5, "seed": 33, "cross_replace": 0.8, "null_inner_steps": 1}


def as_dict(options: EditOptions) -> dict:
    return dataclasses.asdict(options)


def job(**changes) -> EditJob:
    base = dict(
        source=Path("clip.mp4"),
        prompt="a jeep on snow",
        source_prompt="a car on a road",
        start=0,
        frames=8,
        output=Path("out.mp4"),
    )
    return EditJob(**{**base, **changes})


# ---------------------------------------------------------------------------------------------------------------
# Presets and overrides


def test_published_preset_has_the_published_values() -> None:
    published = as_dict(EditOptions.preset("published"))
    for name, value in {**PUBLISHED, **SHARED}.items():
        assert published[name] == value, name
    assert type(published["null_start"]) is float and type(published["refine_cross_replace"]) is float


def test_default_differs_from_published_exactly_where_documented() -> None:
    default, published = as_dict(EditOptions()), as_dict(EditOptions.preset("published"))
    assert as_dict(EditOptions.preset("default")) == default
    differing = {name for name in default if default[name] != published[name]}
    assert differing == set(DEFAULT_DIFFERS)
    for name, value in {**DEFAULT_DIFFERS, **SHARED}.items():
        assert default[name] == value, name
    assert default["size"] is None and default["fast"] is False and default["joint_groupnorm"] is False


def test_every_difference_has_its_row_in_method_differences() -> None:
    table = [line for line in METHOD_DIFFERENCES.read_text().splitlines() if line.startswith("| ")]
    for name in DEFAULT_DIFFERS:
        rows = [line for line in table if f"(`{name}`)" in line]
        assert len(rows) == 1, name
        assert rows[0].count("|") >= 5 and len(rows[0].split("|")[4].strip()) > 40, rows[0]  # it says why


def test_fast_is_the_old_name_of_direct_inversion() -> None:
    assert EditOptions(fast=True) == EditOptions(inversion="direct")
    published = EditOptions.preset("published", fast=True)
    assert published.inversion == "direct" and published.fast is False
    assert published.replace(inversion="null-text").inversion == "null-text"  # fast does not stick
    with pytest.raises(InvalidArgument, match="fast is the old name of inversion = direct"):
        EditOptions(fast=True, inversion="negative-prompt")


def test_journal_records_of_older_versions_still_load() -> None:
    old = job().to_dict()
    old["options"] = {**old["options"], "fast": True, "fast_mode": "negative_prompt"}
    del old["options"]["inversion"]
    loaded = EditJob.from_dict(old)
    assert loaded.options == EditOptions(inversion="direct")
    assert EditJob.from_dict(job().to_dict()) == job()


def test_presets_tuple_names_every_preset() -> None:
    for name in PRESETS:
        EditOptions.preset(name).validate()
    assert set(PRESETS) == {"default", "published"}


def test_overrides_apply_on_top_of_the_preset_and_none_keeps_the_preset_value() -> None:
    options = EditOptions.preset("published", steps=7, guidance=3.0, attention="dense", size=256, inversion=None)
    assert (options.steps, options.guidance, options.attention, options.size) == (7, 3.0, "dense", 256)
    assert options.inversion == "null-text"  # None means "not given"
    assert options.vae_encode == "sample" and options.null_start == 0.5  # the rest stays published
    again = EditOptions.preset("published", attention=None, seed=None)
    assert again == EditOptions.preset("published")


def test_replace_returns_a_copy() -> None:
    base = EditOptions()
    changed = base.replace(steps=10)
    assert changed.steps == 10 and base.steps == 50
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.steps = 3  # type: ignore[misc]


def test_unknown_preset_names_it() -> None:
    with pytest.raises(InvalidArgument, match="'paper'") as raised:
        EditOptions.preset("paper")
    assert "default" in str(raised.value) and "published" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("preset", ["default", "published"])
def test_unknown_option_names_are_invalid_argument_not_type_error(preset: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        EditOptions.preset(preset, stepz=10, steps=5)
    assert "stepz" in str(raised.value)
    with pytest.raises(InvalidArgument, match="warp_speed"):
        EditOptions().replace(warp_speed=True)
    assert issubclass(InvalidArgument, V2vzError)


# ---------------------------------------------------------------------------------------------------------------
# EditOptions.validate


@pytest.mark.parametrize(
    "field, bad",
    [
        ("steps", 0),
        ("steps", -5),
        ("steps", 1001),
        ("guidance", 0.5),
        ("guidance", 50.5),
        ("guidance", float("nan")),
        ("size", 7),
        ("size", 0),
        ("size", 4097),
        ("null_inner_steps", 0),
        ("null_lr", 0.0),
        ("null_lr", -1e-3),
        ("null_start", -0.1),
        ("null_start", 1.5),
        ("cross_replace", -0.01),
        ("cross_replace", 1.01),
        ("refine_cross_replace", 2.0),
        ("refine_cross_replace", -1.0),
        ("attention", "sideways"),
        ("inversion_prompt", "target"),
        ("inversion", "fast"),
        ("null_lr_decay", "linear"),
        ("cross_replace_cutoff", "floor"),
        ("refine_padding", "shifted"),
        ("vae_encode", "mode"),
    ],
)
def test_validate_rejects_each_out_of_range_field(field: str, bad) -> None:
    options = EditOptions().replace(**{field: bad})
    with pytest.raises(InvalidArgument) as raised:
        options.validate()
    message = str(raised.value)
    assert field in message and "\n" not in message
    # The same value through a preset: the published base must not mask it.
    with pytest.raises(InvalidArgument):
        EditOptions.preset("published", **{field: bad}).validate()


@pytest.mark.parametrize(
    "changes",
    [
        {"steps": 1},
        {"steps": 1000},
        {"guidance": 1.0},
        {"guidance": 50.0},
        {"size": 8},
        {"size": 4096},
        {"null_start": 0.0, "cross_replace": 1.0, "refine_cross_replace": 0.0},
        {"null_start": 1.0},
        *({"attention": layout} for layout in ATTENTION_LAYOUTS),
        {"inversion_prompt": "empty", "vae_encode": "sample", "fast": True},
        *({"inversion": method} for method in ("direct", "null-text", "negative-prompt")),
        {"null_lr_decay": "published", "cross_replace_cutoff": "published", "refine_padding": "identity"},
    ],
)
def test_validate_accepts_the_edges(changes: dict) -> None:
    EditOptions().replace(**changes).validate()


# ---------------------------------------------------------------------------------------------------------------
# EditJob.validate


def test_a_good_job_validates() -> None:
    job().validate()
    job(output=None, out_frames_dir=Path("frames")).validate()
    job(start=0, frames=1).validate()


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"prompt": ""}, ["prompt is empty", "--prompt"]),
        ({"prompt": "  \t\n "}, ["prompt is empty"]),
        ({"source_prompt": ""}, ["source prompt is empty", "--source-prompt"]),
        ({"source_prompt": "   "}, ["source prompt is empty"]),
        ({"start": -1}, ["start", "-1"]),
        ({"frames": -1}, ["frames", "-1"]),
        ({"frames": -3}, ["frames", "-3"]),
        ({"output": None, "out_frames_dir": None}, ["no output"]),
        ({"options": EditOptions(steps=0)}, ["steps"]),
        ({"options": EditOptions(attention="sideways")}, ["attention"]),  # type: ignore[arg-type]
    ],
)
def test_job_validate_rejects(changes: dict, words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        job(**changes).validate()
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_source_prompt_is_checked_separately_from_the_prompt() -> None:
    with pytest.raises(InvalidArgument, match="^the source prompt"):
        job(source_prompt=" ").validate()
    with pytest.raises(InvalidArgument, match="^the prompt"):
        job(prompt=" ").validate()


# ---------------------------------------------------------------------------------------------------------------
# inversion_key: what a cached inversion may be reused for


def test_inversion_key_ignores_everything_that_only_affects_the_edit() -> None:
    base = EditOptions()
    key = base.inversion_key()
    for changes in (
        {"attention": "sparse_causal"},
        {"attention": "published"},
        {"cross_replace": 0.3},
        {"refine_cross_replace": 0.1},
        {"null_start": 0.5},
        {"cross_replace_cutoff": "published"},
        {"refine_padding": "identity"},
        {"window": 4},  # windows are cached one by one under their own frames (run.py), so the window size
        {"anchors": 0},  # and the anchors (edit only) never change what one window's inversion is
    ):
        assert base.replace(**changes).inversion_key() == key, changes
    # The target prompt is not an option at all: two jobs that differ only in it share the key.
    assert job(prompt="a jeep").options.inversion_key() == job(prompt="a boat on water").options.inversion_key()
    assert not any("prompt" in name and name != "inversion_prompt" for name in key)


NULL_TEXT = {"inversion": "null-text"}


@pytest.mark.parametrize(
    "base, changes",
    [
        ({}, {"steps": 10}),
        (NULL_TEXT, {"guidance": 5.0}),
        ({}, {"inversion": "null-text"}),
        ({}, {"inversion": "negative-prompt"}),
        (NULL_TEXT, {"inversion": "direct"}),
        ({}, {"inversion_prompt": "empty"}),
        (NULL_TEXT, {"null_inner_steps": 3}),
        (NULL_TEXT, {"null_lr": 0.1}),
        (NULL_TEXT, {"null_lr_decay": "published"}),
        (NULL_TEXT, {"null_early_stop": False}),
        ({}, {"vae_encode": "sample"}),
        ({"vae_encode": "sample"}, {"seed": 7}),
        ({"inversion": "negative-prompt"}, {"steps": 20}),
        ({}, {"joint_groupnorm": True}),
    ],
)
def test_inversion_key_changes_with_the_inversion_settings(base: dict, changes: dict) -> None:
    options = EditOptions().replace(**base)
    assert options.replace(**changes).inversion_key() != options.inversion_key()


@pytest.mark.parametrize(
    "base, changes",
    [
        ({}, {"seed": 7}),  # the VAE mean does not use the seed
        *(
            ({"inversion": method}, {"null_inner_steps": 5, "null_lr": 0.5, "null_early_stop": False})
            for method in ("direct", "negative-prompt")  # no null-text optimization
        ),
        ({}, {"null_lr_decay": "published"}),
        ({}, {"guidance": 5.0}),  # direct inversion is plain DDIM inversion: guidance acts in the edit only
        ({"inversion": "negative-prompt"}, {"guidance": 5.0}),
        ({}, {"fast": True}),  # the default is direct already
    ],
)
def test_inversion_key_ignores_settings_that_are_not_used(base: dict, changes: dict) -> None:
    options = EditOptions().replace(**base)
    assert options.replace(**changes).inversion_key() == options.inversion_key()


@pytest.mark.parametrize("changes", [{"size": 256}, {"joint_groupnorm": True}])
def test_inversion_key_changes_with_what_the_inverted_latents_depend_on(changes: dict) -> None:
    assert EditOptions().replace(**changes).inversion_key() != EditOptions().inversion_key()


# ---------------------------------------------------------------------------------------------------------------
# source_fps: an image sequence's frame rate, exact from the CLI through the wire and the journal


@pytest.mark.parametrize(
    ("text", "fps"), [("24", Fraction(24)), ("23.976", Fraction(2997, 125)), ("24000/1001", Fraction(24000, 1001))]
)
def test_frame_rates_parse_exactly(text: str, fps: Fraction) -> None:
    assert parse_fps(text) == fps


@pytest.mark.parametrize(
    ("text", "words"), [("fast", "not a number"), ("0", "above 0"), ("-25", "above 0"), ("1/0", "not a number")]
)
def test_bad_frame_rates_are_refused_in_one_line(text: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        parse_fps(text)


def test_source_fps_survives_the_journal_and_the_wire() -> None:
    original = job(source_fps=Fraction(30000, 1001))
    assert original.to_dict()["source_fps"] == "30000/1001"
    assert EditJob.from_dict(original.to_dict()) == original
    request = job_to_request(original)
    assert request.source_fps == "30000/1001"
    assert job_from_request(request, original.model).source_fps == Fraction(30000, 1001)
    assert job_from_request(job_to_request(job()), "tiny").source_fps is None
    with pytest.raises(InvalidArgument, match="at most 1000 fps"):
        job(source_fps=Fraction(5000)).validate()


def test_frames_0_means_through_the_end_of_the_clip() -> None:
    whole = job(start=10, frames=0)
    whole.validate()
    assert whole.through_end(250).frames == 240 and whole.through_end(250).start == 10
    assert job(frames=5).through_end(250).frames == 5  # an explicit count is kept (and range-checked elsewhere)
    with pytest.raises(RangeError, match=r"start frame 250 is past the end of .* \(250 frames, 0\.\.249\)"):
        job(start=250, frames=0).through_end(250)
    with pytest.raises(InvalidArgument, match=r"frames must be 1 or more \(0: through the end of the clip\)"):
        job(frames=-1).validate()
