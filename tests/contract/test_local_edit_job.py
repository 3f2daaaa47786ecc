"""A local edit in the contract: its words checked against the prompts, its matte and mask folder on the job, on the
wire and in records, and its options by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditJob, EditOptions, edit_only_words, prompt_words
from v2vz.api.wire import job_from_request, job_to_request, options_from_map


def job(**fields) -> EditJob:
    fields.setdefault("options", EditOptions(edit_only="car"))
    return EditJob(Path("/clips/a.mp4"), "a red car, on snow", "A blue Car on a road", output=Path("/o.mp4"), **fields)


def test_words_are_compared_without_case_or_punctuation():
    assert prompt_words("A blue Car, on (snow)!") == ["a", "blue", "car", "on", "snow"]
    assert edit_only_words("car, Wheels car") == ("car", "wheels")
    job().validate()
    job(options=EditOptions(edit_only="snow road")).validate()  # one word of each prompt


def test_a_word_in_neither_prompt_is_refused_with_the_prompts_words():
    with pytest.raises(InvalidArgument) as refused:
        job(options=EditOptions(edit_only="car dog")).validate()
    message = str(refused.value)
    assert message == (
        "edit-only word(s) 'dog' are in neither prompt; the prompts' words: a, blue, car, on, road, red, snow"
    )
    with pytest.raises(InvalidArgument, match="has no word in it"):
        EditOptions(edit_only=",,").validate()
    with pytest.raises(InvalidArgument, match="at most 100 characters"):
        EditOptions(edit_only="car " * 30).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"options": EditOptions(matte_feather=2.0)}, "matte start and matte feather are for a matte"),
        ({"options": EditOptions(), "matte_start": 3}, "matte start and matte feather are for a matte"),
        ({"options": EditOptions(), "mask_dir": Path("/m")}, "--save-mask saves the mask of a local edit"),
        ({"matte": Path("/m.png"), "matte_start": -1}, "matte start must be between 0 and"),
        ({"options": EditOptions(self_replace=1.5)}, "self_replace must be between 0.0 and 1.0"),
        ({"options": EditOptions(edit_only="car", edit_only_threshold=-0.1)}, "edit_only_threshold must be between"),
        ({"matte": Path("/m\x00.png")}, "the matte has a NUL byte in it"),
    ],
)
def test_local_edit_fields_are_checked(changes, message):
    with pytest.raises(InvalidArgument, match=message):
        job(**changes).validate()


def test_a_local_job_round_trips_through_records_and_the_wire():
    local = job(matte=Path("/mattes/car.mov"), matte_start=12, mask_dir=Path("/masks"), matte_digest="ab" * 32)
    assert local.local and not job(options=EditOptions()).local
    assert EditJob.from_dict(local.to_dict()) == local
    assert EditJob.from_dict({k: v for k, v in local.to_dict().items() if k not in ("matte", "mask_dir")}).matte is None
    request = job_to_request(local)
    assert (request.matte, request.matte_start, request.mask_dir) == ("/mattes/car.mov", 12, "/masks")
    back = job_from_request(request, "tiny")
    assert (back.matte, back.matte_start, back.mask_dir, back.options.edit_only) == (
        Path("/mattes/car.mov"),
        12,
        Path("/masks"),
        "car",
    )
    assert back.matte_digest is None  # the daemon computes it when it resolves the job, never trusts a client's
    options = options_from_map({"edit_only": "car", "self_replace": "0.4", "matte_feather": "1.5"})
    assert (options.edit_only, options.self_replace, options.matte_feather) == ("car", 0.4, 1.5)


def test_the_local_options_are_not_part_of_the_inversion():
    plain = EditOptions()
    local = EditOptions(edit_only="car", edit_only_threshold=0.5, self_replace=0.4, matte_feather=3)
    assert local.inversion_key() == plain.inversion_key()
