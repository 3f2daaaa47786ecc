"""`v2vz timeline` with LoRAs (issue 26): `--lora PATH[:SCALE]` in a marker's options (and `lora:` lines, metadata
`loras`), every occurrence kept in order, paths relative to the timeline's folder, carried into each clip's job;
clips with other LoRA sets are jobs of their own; a missing LoRA leaves its clip alone (docs/timelines.md)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest

from v2vz.api.job import Lora
from v2vz.timeline import prompts

from .test_timeline import clip, error_lines, invoke, make_clip, video_tracks
from .test_timeline_local_edits import BOXES, marked


def test_every_lora_of_the_options_line_and_the_lora_lines_is_kept_in_order():
    found = prompts.from_markers(
        marked(BOXES + "\nlora: styles/ink.safetensors:0.6\noptions: --steps 3 --lora a.safetensors --lora=b:-0.5")
    )
    assert found.loras == ("styles/ink.safetensors:0.6", "a.safetensors", "b:-0.5")
    assert found.options == {"steps": "3"}  # the LoRAs are the job's, not among the name -> value options
    one_line = prompts.from_markers(marked("source: a car; prompt: a jeep; lora: /l/x.safetensors; lora: y:2"))
    assert (one_line.prompt, one_line.loras) == ("a jeep", ("/l/x.safetensors", "y:2"))
    data = {"source": "a car", "prompt": "a jeep", "options": {"steps": 3, "lora": "o.safetensors"}, "loras": ["m:1"]}
    meta = prompts.from_metadata(otio.schema.Clip(name="shot", metadata={"v2vz": data}))
    assert (meta.options, meta.loras) == ({"steps": "3"}, ("o.safetensors", "m:1"))


@pytest.mark.parametrize(
    "text, words",
    [
        ("options: --lora", ["its options: --lora needs a value"]),
        ("options: --lora ink.safetensors:20", ["the scale of LoRA ink.safetensors must be between -10 and 10", "20"]),
        ("lora: ", ["a lora: line needs a path: write `lora: PATH` or PATH:SCALE"]),
        ("options: " + " ".join(f"--lora l{n}" for n in range(17)), ["17 LoRAs given; at most 16"]),
    ],
)
def test_a_lora_that_cannot_be_used_is_the_clips_reason(text: str, words: list[str]):
    with pytest.raises(prompts.BadPrompts) as caught:
        prompts.from_markers(marked(BOXES + "\n" + text))
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_metadata_loras_must_be_a_list_of_texts():
    data = {"source": "a car", "prompt": "a jeep", "loras": "ink.safetensors"}
    with pytest.raises(prompts.BadPrompts, match=r"\"loras\"\] is .* not a list of `PATH\[:SCALE\]` texts"):
        prompts.from_metadata(otio.schema.Clip(name="shot", metadata={"v2vz": data}))


def timeline_with_loras(folder: Path) -> Path:
    """One shot cut five times over the same frames with other LoRA sets; written as `folder/cut.otio`."""
    media = make_clip(folder / "shot.mov", Fraction(24))
    (folder / "loras").mkdir()
    for name in ("ink.safetensors", "grain.safetensors"):
        (folder / "loras" / name).write_bytes(b"not read by the timeline: the daemon checks the weights")
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for name, extra in [
        ("ink", "options: --steps 2 --lora loras/ink.safetensors:0.6 --lora loras/grain.safetensors"),
        ("ink again", "lora: loras/ink.safetensors:0.6\noptions: --steps 2 --lora loras/grain.safetensors"),
        ("swapped", "options: --steps 2 --lora loras/grain.safetensors --lora loras/ink.safetensors:0.6"),
        ("plain", "options: --steps 2"),
        ("gone", "options: --steps 2 --lora loras/gone.safetensors"),
    ]:
        track.append(clip(name, media, "24", 4, 8, f"{BOXES}\n{extra}"))
    timeline = otio.schema.Timeline(name="cut")
    timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(folder / "cut.otio"))
    return folder / "cut.otio"


def test_each_lora_set_is_a_job_of_its_own_and_a_missing_lora_leaves_its_clip_alone(fake, tmp_path: Path):
    cut = timeline_with_loras(tmp_path)
    result = invoke(cut, "--out", tmp_path / "edited.otio")
    assert result.exit_code == 0, result.stderr
    assert not error_lines(result), result.stderr
    missing = f"its LoRA {tmp_path / 'loras' / 'gone.safetensors'} does not exist: fix its `--lora` or put the file"
    assert "left alone: gone (track 'V1' at " in result.stderr and missing in result.stderr, result.stderr
    ink, grain = tmp_path / "loras" / "ink.safetensors", tmp_path / "loras" / "grain.safetensors"
    sets = sorted((entry["job"].loras for entry in fake.jobs.values()), key=len)
    assert sets == [(), (Lora(ink, 0.6), Lora(grain, 1.0)), (Lora(grain, 1.0), Lora(ink, 0.6))]
    # `ink` and `ink again` ask for the same edit (a `lora:` line or `--lora`: the same set): one job; the order of
    # a set is part of the edit (LoRAs stack in it), so `swapped` is a job of its own; `plain` has none
    assert all(job.options.steps == 2 and job.start == 4 for job in (e["job"] for e in fake.jobs.values()))
    out = otio.adapters.read_from_file(str(tmp_path / "edited.otio"))
    edits = [item for item in video_tracks(out)[-1] if isinstance(item, otio.schema.Clip)]
    recorded = {
        edit.metadata["v2vz"]["source_clip"]: [dict(lora) for lora in edit.metadata["v2vz"]["loras"]]
        if "loras" in edit.metadata["v2vz"]
        else None
        for edit in edits
    }
    ink_set = [{"path": str(ink), "scale": 0.6}, {"path": str(grain), "scale": 1.0}]
    assert recorded == {"ink": ink_set, "ink again": ink_set, "swapped": ink_set[::-1], "plain": None}  # none: no key


def test_dry_run_names_each_clips_loras(tmp_path: Path):
    cut = timeline_with_loras(tmp_path)
    result = invoke(cut, "--out", tmp_path / "edited.otio", "--dry-run")
    assert result.exit_code == 0, result.stderr
    said = result.stderr.replace("\n", " ")
    assert "'a red box' -> 'a blue box', LoRAs ink.safetensors:0.6 grain.safetensors:1" in said, result.stderr
    assert "LoRAs grain.safetensors:1 ink.safetensors:0.6" in said and "left alone: gone" in said
