"""Take names, their reservation on the filesystem (also between processes), sidecars, and what formats names mean."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from v2vz.api import takes
from v2vz.api.errors import InvalidArgument
from v2vz.api.formats import accepted, frame_path, output_format
from v2vz.api.job import EditJob


def job(tmp_path: Path, **changes) -> EditJob:
    fields = dict(source=tmp_path / "shot.mov", prompt="a jeep on snow", source_prompt="a car on a road")
    return EditJob(**(fields | changes))


def test_takes_are_numbered_one_after_another_beside_other_files(tmp_path):
    (tmp_path / "shot.mov").write_bytes(b"source")
    (tmp_path / "other-v2vz-t7.mp4").write_bytes(b"another clip's take")
    (tmp_path / "shot-v2vz-t2x.mp4").write_bytes(b"not a take name")
    made = [takes.reserve_take(tmp_path, "shot", "mp4") for _ in range(3)]
    assert [take.number for take in made] == [1, 2, 3]
    assert [take.output.name for take in made] == ["shot-v2vz-t1.mp4", "shot-v2vz-t2.mp4", "shot-v2vz-t3.mp4"]
    assert [take.sidecar.name for take in made] == [f"shot-v2vz-t{n}.mp4.v2vz.json" for n in (1, 2, 3)]
    assert all(take.sidecar.exists() and not take.output.exists() for take in made)
    (tmp_path / "shot-v2vz-t9.mov").write_bytes(b"a take in another format")
    assert takes.reserve_take(tmp_path, "shot", "mp4").number == 10  # after the highest, whatever its format


def _reserve_many(folder: str, count: int) -> list[int]:
    return [takes.reserve_take(Path(folder), "shot", "mov").number for _ in range(count)]


def test_processes_reserving_at_once_never_share_a_number(tmp_path):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        numbers = [n for batch in pool.map(_reserve_many, [str(tmp_path)] * 8, [6] * 8) for n in batch]
    assert sorted(numbers) == list(range(1, 49))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"shot-v2vz-t{n}.mov.v2vz.json" for n in range(1, 49))


def test_a_preview_holds_its_number_and_its_final_takes_the_same(tmp_path):
    preview = takes.reserve_take(tmp_path, "shot", "mp4", preview=True)
    assert (preview.number, preview.output.name) == (1, "shot-v2vz-t1-preview.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot-v2vz-t1-preview.mp4.v2vz.json"]  # the claim went
    assert takes.reserve_take(tmp_path, "shot", "mp4").number == 2  # a new edit does not take the preview's number
    final = takes.reserve_take(tmp_path, "shot", "mp4", number=1)
    assert (final.number, final.output.name, final.sidecar.name) == (
        1,
        "shot-v2vz-t1.mp4",
        "shot-v2vz-t1.mp4.v2vz.json",
    )
    with pytest.raises(InvalidArgument, match="take 1 of shot exists already"):
        takes.reserve_take(tmp_path, "shot", "mp4", number=1)
    (tmp_path / "shot-v2vz-t2.mov").write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="exists already|in use"):
        takes.reserve_take(tmp_path, "shot", "mp4", number=2)


def test_frame_takes_get_a_folder_each(tmp_path):
    take = takes.reserve_take(tmp_path, "shot", "exr")
    assert take.output == tmp_path / "shot-v2vz-t1" / "shot-v2vz-t1.%04d.exr"
    assert take.output.parent.is_dir()
    assert take.sidecar == tmp_path / "shot-v2vz-t1" / "shot-v2vz-t1.####.exr.v2vz.json"
    assert frame_path(take.output, 12).name == "shot-v2vz-t1.0012.exr"
    assert takes.reserve_take(tmp_path, "shot", "tiff").output.name == "shot-v2vz-t2.%04d.tif"
    preview = takes.reserve_take(tmp_path, "shot", "png", preview=True)
    assert preview.output == tmp_path / "shot-v2vz-t3-preview" / "shot-v2vz-t3-preview.%04d.png"
    assert not (tmp_path / "shot-v2vz-t3").exists()


def test_sidecar_paths_and_what_a_user_may_point_at(tmp_path):
    assert takes.sidecar_path(tmp_path / "a.mov") == tmp_path / "a.mov.v2vz.json"
    assert takes.sidecar_path(tmp_path / "a.mp4") == tmp_path / "a.mp4.v2vz.json"  # a.mp4 and a.mov: one record each
    assert takes.sidecar_path(tmp_path / "shot_%04d.exr") == tmp_path / "shot_####.exr.v2vz.json"
    assert takes.sidecar_path(tmp_path / "%06d.png") == tmp_path / "######.png.v2vz.json"
    assert takes.sidecar_path(None, tmp_path / "frames") == tmp_path / "frames" / "v2vz.json"
    (tmp_path / "a.mov.v2vz.json").write_text("{}")
    assert takes.sidecar_of(tmp_path / "a.mov") == tmp_path / "a.mov.v2vz.json"
    assert takes.sidecar_of(tmp_path / "shot_0012.exr") == tmp_path / "shot_####.exr.v2vz.json"
    assert takes.sidecar_of(tmp_path / "a.mov.v2vz.json") == tmp_path / "a.mov.v2vz.json"


def test_a_record_remakes_the_job_exactly_and_old_records_still_load(tmp_path):
    original = job(tmp_path, output=tmp_path / "x.mov", codec="prores_4444", audio=False, take=3, preview=True)
    path = takes.write_sidecar(tmp_path / "x.mov.v2vz.json", takes.take_record(original, "done", seconds=1.5))
    record = takes.read_sidecar(path)
    assert (record["state"], record["take"], record["preview"], record["seconds"]) == ("done", 3, True, 1.5)
    assert takes.job_from_record(record) == original
    final = takes.final_of(original)
    assert (final.preview, final.take, final.output, final.options) == (False, 3, None, original.options)
    old = original.to_dict()
    old["out_mp4"] = str(tmp_path / "old.mp4")
    del old["output"]
    assert EditJob.from_dict(old).output == tmp_path / "old.mp4"  # a journal of protocol 4
    (tmp_path / "foreign.v2vz.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(InvalidArgument, match="not a v2vz take record"):
        takes.read_sidecar(tmp_path / "foreign.v2vz.json")


def test_releasing_gives_back_only_a_reservation(tmp_path):
    reserved = takes.reserve_take(tmp_path, "shot", "mp4", record=takes.take_record(job(tmp_path), "reserved"))
    takes.release_take(reserved)
    assert not reserved.sidecar.exists()
    done = takes.reserve_take(tmp_path, "shot", "mp4")
    takes.write_sidecar(done.sidecar, takes.take_record(job(tmp_path), "done"))
    takes.release_take(done)
    assert done.sidecar.exists()
    frames = takes.reserve_take(tmp_path, "shot", "exr", record=takes.take_record(job(tmp_path), "reserved"))
    takes.release_take(frames)
    assert not frames.output.parent.exists()


def test_removing_a_preview_removes_only_the_files_its_record_names(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        (folder / f"frame_{index:06d}.png").write_bytes(b"png")
    (folder / "frame_000003.png").write_bytes(b"not this job's")
    (folder / "notes.txt").write_text("the user's")
    video = tmp_path / "p.mp4"
    video.write_bytes(b"mp4")
    sidecar = takes.write_sidecar(tmp_path / "p.mp4.v2vz.json", {"format": "v2vz-take", "job": {}})
    record = {"output": str(video), "frames_dir": str(folder), "frame_count": 3, "files": [str(video)]}
    removed = takes.remove_take_files(record, sidecar)
    assert sorted(p.name for p in removed) == sorted(
        ["p.mp4", "p.mp4.v2vz.json", "frame_000000.png", "frame_000001.png", "frame_000002.png"]
    )
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000003.png", "notes.txt"]


@pytest.mark.parametrize(
    ("name", "codec", "expected"),
    [
        ("a.mp4", None, ("mp4", "h264", False)),
        ("a.MP4", "h265", ("mp4", "h265", False)),
        ("a.mov", None, ("mov", "prores_422hq", False)),
        ("a.mov", "dnxhr_hq", ("mov", "dnxhr_hq", False)),
        ("shot_%04d.exr", None, ("exr", "exr_half", True)),
        ("shot.%06d.tif", None, ("tiff", "tiff16", True)),
        ("s%d.png", None, ("png", "png16", True)),
    ],
)
def test_output_names_and_their_formats(name, codec, expected):
    fmt = output_format(Path(name), codec)
    assert (fmt.container, fmt.codec, fmt.sequence) == expected


@pytest.mark.parametrize(
    ("name", "codec", "message"),
    [
        ("a.mkv", None, "does not write the extension .mkv; it writes .mp4"),
        ("a.avi", None, "shot_%04d.exr"),
        ("a.mp4", "prores_422hq", "cannot be written to a.mp4: .mp4 files hold h264, h265"),
        ("a.mov", "vp9", "known codecs: h264, h265, prores_422hq"),
        ("shot.exr", None, "need a frame number in the name, e.g. shot_%04d.exr"),
        ("a_%04d.mov", None, "is one file; drop the frame number"),
        ("a_%04d_%02d.png", None, "has one frame number"),
    ],
)
def test_names_without_a_meaning_are_refused_with_what_is_accepted(name, codec, message):
    with pytest.raises(InvalidArgument) as error:
        output_format(Path(name), codec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
    if codec is None and Path(name).suffix in (".mkv", ".avi"):
        assert str(error.value).endswith(accepted())  # every accepted name is listed
