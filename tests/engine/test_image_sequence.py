"""Image-sequence sources (engine/image_sequence.py): which files make the sequence, and their pixels as uint8 RGB."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from v2vz.api.errors import InvalidArgument, MediaError, MediaNotFound, RangeError
from v2vz_engine.media.image_sequence import (
    IMAGE_SUFFIXES,
    is_image_source,
    iter_sequence_frames,
    probe_sequence,
    read_image,
    sequence_files,
)


def frame(path: Path, value: int, size: tuple[int, int] = (6, 4)) -> Path:
    """A solid RGB image (width, height) whose red channel says which frame it is."""
    Image.new("RGB", size, (value, 255 - value, 7)).save(path)
    return path


def names(files: list[Path]) -> list[str]:
    return [file.name for file in files]


def test_suffixes_and_sources(tmp_path):
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
    assert is_image_source(tmp_path)  # a folder
    for name in ("a.png", "B.PNG", "c.Jpeg", "d.TIF", "e.tiff", "f.bmp", "g.WebP", "h_0001.jpg"):
        assert is_image_source(tmp_path / name), name  # by suffix alone: the file need not exist yet
    for name in ("clip.mp4", "clip.mov", "notes.txt", "png", "frame.png.bak"):
        assert not is_image_source(tmp_path / name), name


def test_folder_in_natural_order(tmp_path):
    for number in (10, 2, 1, 9, 100):
        frame(tmp_path / f"frame_{number}.png", number)
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()
    frame(tmp_path / "sub" / "frame_3.png", 3)  # subfolders are not read
    assert names(sequence_files(tmp_path)) == [
        "frame_1.png",
        "frame_2.png",
        "frame_9.png",
        "frame_10.png",
        "frame_100.png",
    ]


def test_folder_natural_order_with_several_digit_runs(tmp_path):
    for name in ("shot10_2.png", "shot2_10.png", "shot2_9.png", "Shot10_1.png"):
        frame(tmp_path / name, 1)
    assert names(sequence_files(tmp_path)) == ["shot2_9.png", "shot2_10.png", "Shot10_1.png", "shot10_2.png"]


def test_folder_suffix_case_is_one_kind(tmp_path):
    frame(tmp_path / "a_1.png", 1)
    frame(tmp_path / "a_2.PNG", 2)
    assert names(sequence_files(tmp_path)) == ["a_1.png", "a_2.PNG"]


def test_folder_with_mixed_suffixes_is_refused(tmp_path):
    frame(tmp_path / "a_1.png", 1)
    frame(tmp_path / "a_2.jpg", 2)
    frame(tmp_path / "a_3.jpeg", 3)
    with pytest.raises(MediaError) as caught:
        sequence_files(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} holds images of more than one kind (.jpeg, .jpg, .png); keep one sequence per folder"
    )


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MediaError) as caught:
        sequence_files(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} holds no image files (.png, .jpg, .jpeg, .tif, .tiff, .bmp, .webp); "
        "give a folder of frames or a video file"
    )


def test_file_starts_the_sequence_at_itself(tmp_path):
    """Like FFmpeg's -start_number: the given file is frame 0; lower numbers, other prefixes or suffixes are out."""
    for number in (1, 3, 5, 6, 10):
        frame(tmp_path / f"shot_{number:04d}.png", number)
    frame(tmp_path / "shot_12.png", 12)  # another width, same prefix and suffix: a higher number, so in
    frame(tmp_path / "shot_0007.jpg", 7)  # another suffix
    frame(tmp_path / "take_0008.png", 8)  # another prefix
    frame(tmp_path / "shot_0009_v2.png", 9)  # last digit run is "2": prefix "shot_0009_v"
    (tmp_path / "shot_0011.png").mkdir()  # a folder, not a frame
    assert names(sequence_files(tmp_path / "shot_0003.png")) == [
        "shot_0003.png",
        "shot_0005.png",
        "shot_0006.png",
        "shot_0010.png",
        "shot_12.png",
    ]
    assert names(sequence_files(tmp_path / "shot_12.png")) == ["shot_12.png"]  # the last one: a single frame
    assert names(sequence_files(tmp_path / "shot_0007.jpg")) == ["shot_0007.jpg"]


def test_file_uses_the_last_digit_run(tmp_path):
    for name in ("cam2_take_0001.png", "cam2_take_0002.png", "cam3_take_0003.png", "cam2_take_0004.png"):
        frame(tmp_path / name, 1)
    assert names(sequence_files(tmp_path / "cam2_take_0001.png")) == [
        "cam2_take_0001.png",
        "cam2_take_0002.png",
        "cam2_take_0004.png",
    ]


def test_file_suffix_must_match_exactly(tmp_path):
    frame(tmp_path / "f_1.png", 1)
    frame(tmp_path / "f_2.PNG", 2)  # a different suffix in a name pattern (as with FFmpeg's f_%d.png)
    frame(tmp_path / "f_3.png", 3)
    assert names(sequence_files(tmp_path / "f_1.png")) == ["f_1.png", "f_3.png"]


def test_two_files_with_one_number_are_refused(tmp_path):
    frame(tmp_path / "f_01.png", 1)
    frame(tmp_path / "f_02.png", 2)
    frame(tmp_path / "f_002.png", 2)
    with pytest.raises(MediaError) as caught:
        sequence_files(tmp_path / "f_01.png")
    assert str(caught.value) == f"{tmp_path} holds two frames numbered 2 (f_002.png and f_02.png); rename or remove one"


def test_a_name_without_digits_is_a_still(tmp_path):
    frame(tmp_path / "poster.png", 1)
    frame(tmp_path / "poster1.png", 2)
    assert sequence_files(tmp_path / "poster.png") == [tmp_path / "poster.png"]
    files, width, height = probe_sequence(tmp_path / "poster.png")
    assert (files, width, height) == ([tmp_path / "poster.png"], 6, 4)
    (only,) = iter_sequence_frames(files, 0, 1, width, height)
    assert only.shape == (4, 6, 3) and only[0, 0].tolist() == [1, 254, 7]


def test_missing_path(tmp_path):
    for missing in (tmp_path / "frame_0001.png", tmp_path / "nowhere"):
        with pytest.raises(MediaNotFound) as caught:
            sequence_files(missing)
        assert str(caught.value) == f"{missing} does not exist; check the path"
    with pytest.raises(MediaNotFound) as caught:
        probe_sequence(tmp_path / "gone_7.png")
    assert str(caught.value) == f"{tmp_path / 'gone_7.png'} does not exist; check the path"
    with pytest.raises(MediaNotFound) as caught:
        read_image(tmp_path / "gone_7.png")
    assert str(caught.value) == f"{tmp_path / 'gone_7.png'} does not exist; check the path"


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    clip = tmp_path / "clip_0001.mp4"
    clip.write_bytes(b"\0" * 16)
    with pytest.raises(MediaError) as caught:
        sequence_files(clip)
    assert str(caught.value) == (
        f"{clip} is not an image (.png, .jpg, .jpeg, .tif, .tiff, .bmp, .webp); "
        "give an image file, a folder of frames or a video"
    )


def save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


@pytest.mark.parametrize(
    ("mode", "value", "rgb"),
    [
        ("L", 77, [77, 77, 77]),
        ("LA", (200, 0), [200, 200, 200]),  # alpha dropped, not multiplied in
        ("RGBA", (10, 20, 30, 0), [10, 20, 30]),
        ("RGB", (1, 2, 3), [1, 2, 3]),
        ("1", 1, [255, 255, 255]),
    ],
)
def test_modes_converted_to_rgb(tmp_path, mode, value, rgb):
    path = save(Image.new(mode, (3, 2), value), tmp_path / "x.png")
    assert Image.open(path).mode == mode
    pixels = read_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (2, 3, 3) and pixels.flags.c_contiguous
    assert np.all(pixels == np.array(rgb, dtype=np.uint8))


def test_palette_image(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 250, 100, 5])
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0  # the transparent entry keeps its colour: alpha is dropped
    path = save(image, tmp_path / "p.png")
    assert Image.open(path).mode == "P"
    assert read_image(path).tolist() == [[[0, 0, 0], [250, 100, 5]]]


def test_cmyk_image(tmp_path):
    image = Image.new("CMYK", (3, 1))
    image.putpixel((0, 0), (0, 0, 0, 0))  # white
    image.putpixel((1, 0), (255, 0, 0, 0))  # cyan
    image.putpixel((2, 0), (0, 0, 0, 255))  # black
    path = save(image, tmp_path / "c.tif")
    assert Image.open(path).mode == "CMYK"
    assert read_image(path).tolist() == [[[255, 255, 255], [0, 255, 255], [0, 0, 0]]]


SIXTEEN = np.array([[65535, 32768, 0, 257, 256, 128]], dtype=np.uint16)
EIGHT = [255, 128, 0, 1, 1, 0]  # round(v * 255 / 65535): 32768 -> 127.5 -> 128, 256 -> 0.996 -> 1, 128 -> 0.498 -> 0


@pytest.mark.parametrize("name", ["g16.png", "g16.tif"])
def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path, name):
    path = save(Image.fromarray(SIXTEEN), tmp_path / name)
    assert Image.open(path).mode.startswith("I;16")
    pixels = read_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (1, 6, 3)
    assert pixels[..., 0].tolist() == [EIGHT] and np.all(pixels[..., 0] == pixels[..., 2])


def test_sixteen_bit_big_endian_tiff(tmp_path):
    image = Image.frombytes("I;16B", (6, 1), SIXTEEN.astype(">u2").tobytes())  # (Pillow's convert would clip)
    path = save(image, tmp_path / "g16b.tif")
    assert Image.open(path).mode == "I;16B"
    assert read_image(path)[..., 1].tolist() == [EIGHT]


def test_thirty_two_bit_int_image_is_read_as_sixteen_bit_values(tmp_path):
    path = save(Image.fromarray(SIXTEEN.astype(np.int32)), tmp_path / "i32.tif")
    assert Image.open(path).mode == "I"
    assert read_image(path)[..., 0].tolist() == [EIGHT]


@pytest.mark.parametrize("name", ["x.bmp", "x.webp", "x.tiff"])
def test_lossless_formats_keep_exact_pixels(tmp_path, name):
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4
    options = {"lossless": True} if name.endswith(".webp") else {}
    path = tmp_path / name
    Image.fromarray(pixels).save(path, **options)
    assert np.array_equal(read_image(path), pixels)


def test_jpeg_is_read(tmp_path):
    path = save(Image.new("RGB", (8, 8), (200, 40, 40)), tmp_path / "x.jpg")
    pixels = read_image(path)
    assert pixels.shape == (8, 8, 3) and np.abs(pixels.astype(int) - [200, 40, 40]).max() <= 3


def test_corrupt_file(tmp_path):
    garbage = tmp_path / "frame_0001.png"
    garbage.write_bytes(b"this is not a png at all")
    with pytest.raises(MediaError) as caught:
        read_image(garbage)
    assert str(caught.value) == (
        f"{garbage} cannot be read as an image (not a known image format, or damaged); export it again"
    )

    whole = save(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), tmp_path / "whole.png"
    )
    truncated = tmp_path / "frame_0002.png"
    truncated.write_bytes(whole.read_bytes()[:400])
    with pytest.raises(MediaError) as caught:
        read_image(truncated)
    message = str(caught.value)
    assert message.startswith(f"{truncated} cannot be read as an image (") and message.endswith("); export it again")
    assert "\n" not in message


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(MediaError) as caught:
        read_image(tmp_path)
    assert str(caught.value) == f"{tmp_path} is not a file; give an image file"


def test_probe_and_read_a_range(tmp_path):
    for number in range(20, 30, 2):  # 20, 22, ..., 28: gaps in the numbering
        frame(tmp_path / f"f_{number:03d}.png", number, size=(10, 6))
    files, width, height = probe_sequence(tmp_path / "f_022.png")
    assert names(files) == ["f_022.png", "f_024.png", "f_026.png", "f_028.png"] and (width, height) == (10, 6)
    frames = list(iter_sequence_frames(files, 1, 3, width, height))
    assert [int(f[0, 0, 0]) for f in frames] == [24, 26, 28]
    assert all(f.shape == (6, 10, 3) and f.dtype == np.uint8 for f in frames)
    assert np.all(frames[0] == np.array([24, 231, 7], dtype=np.uint8))


def test_probe_folder(tmp_path):
    for number in (3, 1, 2):
        frame(tmp_path / f"{number}.jpg", 100, size=(9, 5))
    files, width, height = probe_sequence(tmp_path)
    assert names(files) == ["1.jpg", "2.jpg", "3.jpg"] and (width, height) == (9, 5)


def test_range_outside_the_sequence(tmp_path):
    files = [frame(tmp_path / f"f_{n}.png", n) for n in range(3)]
    with pytest.raises(RangeError) as caught:
        list(iter_sequence_frames(files, 1, 3, 6, 4))
    assert str(caught.value) == f"frames 1..3 are outside the image sequence from {files[0]} (3 frames, 0..2)"
    with pytest.raises(InvalidArgument) as caught:
        list(iter_sequence_frames(files, -1, 2, 6, 4))
    assert str(caught.value) == "start frame -1 is negative; frames are numbered from 0"
    with pytest.raises(InvalidArgument) as caught:
        list(iter_sequence_frames(files, 0, 0, 6, 4))
    assert str(caught.value) == "frame count 0 must be at least 1"


def test_a_frame_of_another_size(tmp_path):
    frame(tmp_path / "f_1.png", 1)
    frame(tmp_path / "f_2.png", 2)
    odd = frame(tmp_path / "f_3.png", 3, size=(7, 4))
    files, width, height = probe_sequence(tmp_path / "f_1.png")
    frames = iter_sequence_frames(files, 0, 3, width, height)
    assert int(next(frames)[0, 0, 0]) == 1 and int(next(frames)[0, 0, 0]) == 2  # frames before it are given
    with pytest.raises(MediaError) as caught:
        next(frames)
    assert str(caught.value) == f"{odd} is 7x4 but the sequence is 6x4; give frames of one size"


def test_float_image_is_refused(tmp_path):
    path = save(Image.fromarray(np.zeros((2, 2), dtype=np.float32)), tmp_path / "f.tif")
    assert Image.open(path).mode == "F"
    with pytest.raises(MediaError) as caught:
        read_image(path)
    assert str(caught.value) == f"{path} holds 32-bit float pixels; export it as 8- or 16-bit PNG or TIFF"


def test_does_not_import_the_video_module():
    import ast

    import v2vz_engine.media.image_sequence as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any("video" in name or name.startswith(("av", "torch")) for name in imported), imported


# ---------------------------------------------------------------------------------------------------------------
# A sequence as the source of a whole job


def test_a_png_sequence_is_edited_into_an_mp4_at_the_given_frame_rate(pipeline, tmp_path):
    from fractions import Fraction

    from v2vz.api.job import EditJob, EditOptions
    from v2vz_engine import media
    from v2vz_engine.run import run_job

    folder = tmp_path / "shot"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for number in range(1, 8):  # shot_0001 .. shot_0007; the job starts at shot_0002, frame 1 from there
        Image.fromarray(rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)).save(folder / f"shot_{number:04d}.png")
    job = EditJob(
        source=folder / "shot_0002.png",
        prompt="a blue ball",
        source_prompt="a red ball",
        start=1,
        frames=5,
        options=EditOptions(steps=2, size=64, fast=True, window=3),
        output=tmp_path / "out.mp4",
        out_frames_dir=tmp_path / "frames",
        source_fps=Fraction(24000, 1001),
    )
    result = run_job(job, pipeline)
    info = media.probe(result.output)
    assert (info.frame_count, info.width, info.height, info.fps) == (5, 72, 40, Fraction(24000, 1001))
    assert [len(w) for w in result.windows] == [3, 2] and len(result.frame_paths) == 5
    with pytest.raises(RangeError, match=r"frames 3\.\.7 are outside .*shot_0002.png \(6 frames, 0\.\.5\)"):
        run_job(dataclasses.replace(job, start=3), pipeline)  # shot_0002 is frame 0: 3..7 runs past shot_0007


def test_a_frame_rate_for_a_video_source_is_refused(pipeline, tmp_path):
    from fractions import Fraction

    from v2vz.api.job import EditJob, EditOptions
    from v2vz.cli.sample import make_sample_clip
    from v2vz_engine.run import run_job

    clip = make_sample_clip(tmp_path / "clip.mp4", frames=4, width=64, height=64)
    job = EditJob(
        source=clip,
        prompt="a blue ball",
        source_prompt="a red ball",
        frames=2,
        options=EditOptions(steps=2, size=64, fast=True),
        out_frames_dir=tmp_path / "frames",
        source_fps=Fraction(25),
    )
    refused = r"a source frame rate is for image sequences; .*clip.mp4 is a video at 24 fps"
    with pytest.raises(InvalidArgument, match=refused):
        run_job(job, pipeline)
