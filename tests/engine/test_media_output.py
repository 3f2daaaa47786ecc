"""Editor-grade outputs (media/writers.py): codecs and depths, audio for exactly the edited range, timecode moved on
to the range's first frame, colour tags, metadata, atomic frames, and timecode arithmetic; all read back with PyAV."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from v2vz.api.errors import InvalidArgument, OutputUnwritable
from v2vz.api.formats import frame_path, output_format
from v2vz.cli.sample import make_sample_clip
from v2vz_engine.media import ColourTags, MediaInfo, iter_frames, open_writer, probe
from v2vz_engine.media.timecode import add, from_frames, parse, to_frames
from v2vz_engine.media.writers import sequence_audio_path

from ..media_kit import CLICKS, CLIP_RGB, AudioSpec, audio_signal, exr_channel_types, make_clip, read_audio

NTSC, FILM = Fraction(30000, 1001), Fraction(24000, 1001)


def frames_of(count: int, width: int = 64, height: int = 48, dtype: type = np.uint8) -> np.ndarray:
    """A horizontal grey ramp (neutral chroma) with a moving bright column, uint8 or float32 in [0, 1]."""
    ramp = np.linspace(0.1, 0.9, width, dtype=np.float32)
    frames = np.repeat(np.repeat(ramp[None, None, :, None], height, axis=1), count, axis=0).repeat(3, axis=3)
    for index in range(count):
        frames[index, :, (index * 5) % width] = 1.0
    return frames if dtype == np.float32 else np.round(frames * 255).astype(np.uint8)


def untagged(width: int = 64, height: int = 48, fps: Fraction = Fraction(24), path: Path = Path("none")) -> MediaInfo:
    return MediaInfo(path, width, height, fps, 8, has_audio=False)


def write(path: Path, source: MediaInfo, frames: np.ndarray, *, codec: str | None = None, first: int = 0, **kw):
    """Write `frames` as one edit of `source` from frame `first`, in two calls as run_job's windows do."""
    fmt = output_format(path, codec)
    with open_writer(path, fmt, source.fps, source, first_frame=first, frame_count=len(frames), **kw) as writer:
        written = writer.write(frames[:2])
        if len(frames) > 2:
            written += writer.write(frames[2:])
    return writer, written


def video_stream(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    container = av.open(str(path))
    return container, container.streams.video[0]


# --- timecode arithmetic -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "fps", "frame"),
    [
        ("00:00:00:00", Fraction(24), 0),
        ("01:00:00:00", Fraction(24), 86400),
        ("01:00:00:00", Fraction(25), 90000),
        ("01:00:00:00", FILM, 86400),  # 23.976 counts 24 labels a second, never drops
        ("01:00:00:00", NTSC, 108000),  # non-drop at 29.97
        ("00:00:59;29", NTSC, 1799),
        ("00:01:00;02", NTSC, 1800),  # ;00 and ;01 are skipped
        ("00:10:00;00", NTSC, 17982),  # every tenth minute keeps them
        ("01:00:00;00", NTSC, 107892),
        ("23:59:59;29", NTSC, 2589407),
        ("00:01:00;04", Fraction(60000, 1001), 3600),  # 59.94 skips four: ;59 is followed by ;04
        ("00:10:00;00", Fraction(60000, 1001), 35964),
    ],
)
def test_timecode_frames_both_ways(label: str, fps: Fraction, frame: int) -> None:
    assert to_frames(label, fps) == frame
    assert str(from_frames(frame, fps, drop=parse(label).drop)) == label


@pytest.mark.parametrize(
    ("label", "frames", "fps", "expected"),
    [
        ("00:00:59;28", 2, NTSC, "00:01:00;02"),
        ("00:00:59.28", 2, NTSC, "00:01:00;02"),  # "." is drop-frame too
        ("00:00:59:28", 2, NTSC, "00:01:00:00"),  # non-drop at 29.97 just counts
        ("00:09:59;29", 1, NTSC, "00:10:00;00"),
        ("00:00:00:23", 1, Fraction(24), "00:00:01:00"),
        ("00:59:59:20", 6, FILM, "01:00:00:02"),
        ("23:59:59:24", 1, Fraction(25), "00:00:00:00"),  # a day wraps, as FFmpeg's timecodes do
    ],
)
def test_timecode_add(label: str, frames: int, fps: Fraction, expected: str) -> None:
    assert add(label, frames, fps) == expected


def test_drop_frame_labels_round_trip_over_an_hour() -> None:
    labels = [from_frames(frame, NTSC, drop=True) for frame in range(0, 107892 + 1, 7)]
    assert [to_frames(label, NTSC) for label in labels] == list(range(0, 107892 + 1, 7))
    assert not any(label.seconds == 0 and label.frames < 2 and label.minutes % 10 for label in labels)


@pytest.mark.parametrize(
    ("label", "fps", "message"),
    [
        ("00:01:00;00", NTSC, "does not exist in drop-frame"),
        ("00:00:10;00", Fraction(25), "30000/1001 and 60000/1001"),
        ("00:00:00:24", Fraction(24), "a second has 24"),
        ("1:2:3", Fraction(24), "is not HH:MM:SS:FF"),
        ("00:61:00:00", Fraction(24), "above 59"),
    ],
)
def test_timecode_errors_are_one_line(label: str, fps: Fraction, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        to_frames(label, fps)


# --- codecs, depths, sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec", "size", "decoder", "pix_fmt", "profile"),
    [
        ("a.mp4", None, (64, 48), "h264", "yuv420p", None),
        ("a.mp4", None, (65, 49), "h264", "yuv444p", None),  # odd sizes keep every pixel
        ("a.mp4", "h265", (64, 48), "hevc", "yuv420p10le", "Main 10"),
        ("a.mov", "h265", (63, 47), "hevc", "yuv444p10le", None),
        ("a.mov", None, (63, 47), "prores", "yuv422p10le", "HQ"),
        ("a.mov", "prores_4444", (64, 48), "prores", "yuv444p12le", "4444"),  # FFmpeg decodes 4444 as 12-bit
        ("a.mov", "dnxhr_hq", (257, 121), "dnxhd", "yuv422p", "DNXHR HQ"),
        ("a.mov", "h264", (64, 48), "h264", "yuv420p", None),
    ],
)
def test_video_codecs(tmp_path: Path, name: str, codec: str | None, size: tuple[int, int], decoder: str,
                      pix_fmt: str, profile: str | None) -> None:  # fmt: skip
    source = untagged(*size, fps=FILM)
    frames = frames_of(3, *size, dtype=np.float32)
    writer, written = write(tmp_path / name, source, frames, codec=codec)
    assert written == [] and writer.frames == 3
    container, stream = video_stream(tmp_path / name)
    with container:
        assert stream.codec_context.name == decoder and stream.format.name == pix_fmt
        assert (stream.width, stream.height, stream.frames, stream.average_rate) == (*size, 3, FILM)
        if profile:
            assert stream.codec_context.profile == profile
        if decoder == "hevc":
            assert stream.codec_tag == "hvc1"  # what QuickTime and Final Cut look for
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 3
    assert np.abs(decoded[1].astype(int) - np.round(frames[1] * 255)).mean() < 3
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_float_frames_keep_more_than_8_bits_in_prores(tmp_path: Path) -> None:
    fine = np.linspace(0.3, 0.3 + 8 / 255, 64, dtype=np.float32)  # 64 steps within 8 of 8-bit's 255
    frames = np.repeat(np.repeat(fine[None, None, :, None], 48, axis=1), 2, axis=0).repeat(3, axis=3)
    write(tmp_path / "fine.mov", untagged(), frames)
    with av.open(str(tmp_path / "fine.mov")) as container:
        back = next(container.decode(video=0)).to_ndarray(format="rgb48le")[24, :, 1] / 65535
    assert np.abs(back - fine).mean() < 0.4 / 255  # 8 bits first would be 1/4 of a step off on average
    assert len(np.unique(np.round(back * 65535))) > 16  # more levels than 8 bits have in this range (9)


@pytest.mark.parametrize(
    ("codec", "size", "message"),
    [
        ("dnxhr_hq", (64, 48), r"DNxHR needs frames of at least 256x120.*64x48"),
        ("dnxhr_hq", (300, 100), r"DNxHR needs frames of at least 256x120.*300x100"),
        ("prores_422hq", (65, 48), r"ProRes 422 cannot be written 65 pixels wide.*prores_4444"),
    ],
)
def test_sizes_a_codec_cannot_encode_are_refused_at_open(
    tmp_path: Path, codec: str, size: tuple[int, int], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as raised:
        open_writer(tmp_path / "a.mov", output_format("a.mov", codec), Fraction(24), untagged(*size),
                    first_frame=0, frame_count=2)  # fmt: skip
    assert "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize(("name", "pix_fmt"), [("shot_%04d.png", "rgb48be"), ("shot_%04d.tif", "rgb48le")])
def test_png_and_tiff_are_16_bit(tmp_path: Path, name: str, pix_fmt: str, dtype: type) -> None:
    frames = frames_of(3, 33, 21, dtype=dtype)
    pattern = tmp_path / name
    writer, written = write(pattern, untagged(33, 21), frames, first=7)
    assert written == [frame_path(pattern, number) for number in (7, 8, 9)]
    assert sorted(tmp_path.iterdir()) == written
    expected = frames.astype(np.uint16) * 257 if dtype == np.uint8 else np.round(frames * 65535).astype(np.uint16)
    for path, want in zip(written, expected, strict=True):
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            assert frame.format.name == pix_fmt and (frame.width, frame.height) == (33, 21)
            assert np.array_equal(frame.to_ndarray(format="rgb48le"), want)  # lossless, every bit kept


@pytest.mark.parametrize(
    ("transfer", "value", "linear"),
    [
        (None, 0.5, 0.21404),  # no tag: the sRGB curve
        ("iec61966-2-1", 128 / 255, 0.21586),
        ("bt709", 0.5, 0.25958),  # the inverse of the BT.709 camera curve
        ("linear", 0.5, 0.5),
    ],
)
def test_exr_is_half_float_linear_light(tmp_path: Path, transfer: str | None, value: float, linear: float) -> None:
    source = MediaInfo(Path("none"), 16, 8, Fraction(25), 4, False, colour=ColourTags(transfer=transfer))
    frames = np.full((2, 8, 16, 3), value, dtype=np.float32)
    if transfer == "iec61966-2-1":
        frames = np.full((2, 8, 16, 3), 128, dtype=np.uint8)
    frames[:, 0, 0] = (frames[0, 0, 0, 0], 0, 0)  # a red corner: the channels keep their names
    _, written = write(tmp_path / "plate.%03d.exr", source, frames, first=3)
    assert [p.name for p in written] == ["plate.003.exr", "plate.004.exr"]
    assert exr_channel_types(written[0]) == {"B": 1, "G": 1, "R": 1}  # 1: HALF
    pixels = read_half_exr(written[0])
    assert np.allclose(pixels[1:], linear, rtol=2e-3)
    assert np.allclose(pixels[0, 0], (linear, 0, 0), rtol=2e-3)


def read_half_exr(path: Path) -> np.ndarray:
    """An EXR's pixels exactly as stored (half floats, as FFmpeg decodes them: planes G, B, R), as (H, W, RGB)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert frame.format.name == "gbrpf16le"
    planes = [
        np.frombuffer(bytes(plane), np.float16).reshape(frame.height, -1)[:, : frame.width] for plane in frame.planes
    ]
    green, blue, red = planes
    return np.stack([red, green, blue], axis=-1).astype(np.float32)


# --- audio -----------------------------------------------------------------------------------------------


def test_mov_keeps_every_audio_stream_sample_exact(tmp_path: Path) -> None:
    specs = (AudioSpec(48000, 2), AudioSpec(44100, 1))
    clip = make_clip(tmp_path / "src.mov", fps=FILM, frames=8, audio=specs)
    source = probe(clip)
    first, count = 3, 4
    write(tmp_path / "out.mov", source, frames_of(count), first=first)
    with av.open(str(tmp_path / "out.mov")) as container:
        assert [s.codec_context.name for s in container.streams.audio] == ["pcm_s16le", "pcm_s16le"]  # its depth
    for index, spec in enumerate(specs):
        start = round(Fraction(first) / FILM * spec.rate)
        stop = round(Fraction(first + count) / FILM * spec.rate)
        got, rate = read_audio(tmp_path / "out.mov", index)
        assert rate == spec.rate and got.shape == (spec.channels, stop - start)
        assert np.array_equal(got, audio_signal(spec, stop)[:, start:stop])  # the very samples, from the start


def test_a_range_far_into_the_clip_seeks_and_stays_sample_exact(tmp_path: Path) -> None:
    spec = AudioSpec(48000, 2)
    clip = make_clip(tmp_path / "src.mov", fps=Fraction(1), frames=8, audio=(spec,))  # 8 s of sound
    write(tmp_path / "out.mov", probe(clip), frames_of(3), first=5)  # from 5 s: the audio is sought, not decoded
    got, _ = read_audio(tmp_path / "out.mov")
    assert np.array_equal(got, audio_signal(spec, 384000)[:, 240000:384000])


@pytest.mark.parametrize(("first", "silent"), [(0, 4800), (2, 800), (3, 0)])
def test_audio_that_starts_late_keeps_its_place(tmp_path: Path, first: int, silent: int) -> None:
    spec = AudioSpec(48000, 2, delay=4800)  # the sound starts 0.1 s (MOV edit lists count in ms) after frame 0
    clip = make_clip(tmp_path / "src.mov", frames=8, audio=(spec,))
    write(tmp_path / "out.mov", probe(clip), frames_of(4), first=first)
    got, _ = read_audio(tmp_path / "out.mov")
    start = first * 2000 - 4800  # the output's first sample, on the audio's own clock
    assert got.shape == (2, 8000) and not got[:, :silent].any()
    assert np.array_equal(got[:, silent:], audio_signal(spec, 16000)[:, start + silent : start + 8000])


def test_mp4_audio_is_aac_aligned_with_the_first_frame(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "src.mp4", frames=8, audio=(AudioSpec(48000, 2, "aac", "clicks"),))
    first, count = 2, 4  # samples 4000..12000 of the source: only the click at 7000 is inside
    write(tmp_path / "out.mp4", probe(clip), frames_of(count), first=first)
    with av.open(str(tmp_path / "out.mp4")) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac" and stream.codec_context.layout.name == "stereo"
        assert abs(stream.duration * stream.time_base - Fraction(count, 24)) < Fraction(1024, 48000)
    got, _ = read_audio(tmp_path / "out.mp4")
    assert abs(got.shape[1] - 8000) < 1024  # within one AAC frame
    loud = np.flatnonzero(np.abs(got[0]) > 0.3)
    assert len(loud) and abs(int(np.argmax(np.abs(got[0]))) - (CLICKS[1] - 4000)) <= 2
    assert loud.min() > 2900 and loud.max() < 3100  # the clicks outside the range are gone


def test_aac_source_becomes_24_bit_pcm_in_mov(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "src.mp4", frames=8, audio=(AudioSpec(48000, 2, "aac", "clicks"),))
    write(tmp_path / "out.mov", probe(clip), frames_of(4), first=2)
    with av.open(str(tmp_path / "out.mov")) as container:
        assert container.streams.audio[0].codec_context.name == "pcm_s24le"
    got, _ = read_audio(tmp_path / "out.mov")
    assert got.shape[1] == 8000 and abs(int(np.argmax(np.abs(got[0]))) - 3000) <= 2


def test_sequence_audio_goes_to_a_wav_per_stream(tmp_path: Path) -> None:
    specs = (AudioSpec(48000, 2), AudioSpec(48000, 1))
    clip = make_clip(tmp_path / "src.mov", fps=Fraction(25), frames=6, audio=specs)
    out = tmp_path / "out"
    writer, written = write(out / "shot_%04d.png", probe(clip), frames_of(3), first=2)
    files = writer.close()  # closing twice is harmless: the files are in place already
    assert written == [out / f"shot_{n:04d}.png" for n in (2, 3, 4)]
    assert files == [*written, out / "shot_####.wav", out / "shot_####.2.wav"]
    assert sorted(out.iterdir()) == sorted(files)
    for index, spec in enumerate(specs):
        got, _ = read_audio(out / ("shot_####.wav" if index == 0 else "shot_####.2.wav"))
        assert np.array_equal(got, audio_signal(spec, 9600)[:, 3840:9600])  # frames 2..4 at 25 fps


def test_wav_names_come_from_the_pattern() -> None:
    assert sequence_audio_path(Path("a/shot_%04d.exr")).name == "shot_####.wav"
    assert sequence_audio_path(Path("a/shot.%04d.exr"), 2).name == "shot.####.2.wav"  # shot_ and shot. differ
    assert sequence_audio_path(Path("a/shot_%04d_v2.tif")).name == "shot_####_v2.wav"
    assert sequence_audio_path(Path("a/%06d.png")).name == "######.wav"


def test_no_audio_when_asked_or_when_there_is_none(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "src.mov", frames=4, audio=(AudioSpec(),))
    write(tmp_path / "quiet.mov", probe(clip), frames_of(2), audio=False)
    silent = make_clip(tmp_path / "silent.mp4", frames=4)
    write(tmp_path / "none.mp4", probe(silent), frames_of(2))
    _, written = write(tmp_path / "f_%02d.png", probe(silent), frames_of(2))
    for name in ("quiet.mov", "none.mp4"):
        with av.open(str(tmp_path / name)) as container:
            assert not container.streams.audio
    assert not list(tmp_path.glob("*.wav"))


# --- timecode, colour, metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "label", "first", "expected"),
    [
        (Fraction(24), "01:00:00:00", 5, "01:00:00:05"),
        (Fraction(25), "10:00:00:00", 3, "10:00:00:03"),
        (NTSC, "00:00:59;28", 2, "00:01:00;02"),  # drop-frame skips ;00 and ;01
        (NTSC, "00:00:59:28", 2, "00:01:00:00"),
        (FILM, "00:59:59:20", 6, "01:00:00:02"),
    ],
)
@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_timecode_moves_on_to_the_first_frame(tmp_path: Path, fps: Fraction, label: str, first: int, expected: str,
                                              suffix: str) -> None:  # fmt: skip
    clip = make_clip(tmp_path / f"src{suffix}", fps=fps, frames=8, timecode=label)
    source = probe(clip)
    assert source.timecode == label
    write(tmp_path / f"out{suffix}", source, frames_of(2), first=first)
    with av.open(str(tmp_path / f"out{suffix}")) as container:
        assert container.streams.video[0].metadata["timecode"] == expected
        (track,) = [s for s in container.streams if s.type == "data"]  # the tmcd track
        assert track.metadata["timecode"] == expected
    assert probe(tmp_path / f"out{suffix}").timecode == expected


def test_no_source_timecode_writes_none(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "src.mov", frames=4)
    assert probe(clip).timecode is None
    write(tmp_path / "out.mov", probe(clip), frames_of(2), first=1)
    with av.open(str(tmp_path / "out.mov")) as container:
        assert "timecode" not in container.streams.video[0].metadata
        assert not [s for s in container.streams if s.type == "data"]


def _tags(stream: av.video.stream.VideoStream) -> tuple[int, int, int, int]:
    context = stream.codec_context
    return context.color_primaries, context.color_trc, context.colorspace, context.color_range


def test_bt709_source_is_decoded_with_its_matrix(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "709.mp4", frames=2, colour="bt709-limited")
    info = probe(clip)
    assert info.colour == ColourTags("bt709", "bt709", "bt709", "limited")
    pixel = next(iter_frames(clip, 0, 1, info))[10, 40].astype(int)
    assert np.abs(pixel - CLIP_RGB).max() <= 3
    with av.open(str(clip)) as container:  # FFmpeg's BT.601 guess would be far off
        guess = next(container.decode(video=0)).to_ndarray(format="rgb24", src_colorspace=5)[10, 40].astype(int)
    assert np.abs(guess - CLIP_RGB).max() > 10


@pytest.mark.parametrize(
    ("name", "codec", "colour", "tags", "range_read"),
    [
        ("out.mp4", None, "bt709-limited", (1, 1, 1, 1), "limited"),
        ("out.mp4", None, "bt709-full", (1, 1, 1, 2), "full"),
        ("out.mov", "h265", "bt709-full", (1, 1, 1, 2), "full"),
        ("out.mov", None, "bt709-limited", (1, 1, 1, 1), "limited"),
        ("out.mov", None, "bt709-full", (1, 1, 1, 1), "limited"),  # ProRes is video range: written limited
        ("out.mov", "prores_4444", "bt601-limited", (6, 6, 6, 1), "limited"),
    ],
)
def test_colour_tags_are_kept_with_their_matrix_and_range(
    tmp_path: Path, name: str, codec: str | None, colour: str, tags: tuple, range_read: str
) -> None:
    clip = make_clip(tmp_path / "src.mp4", frames=3, colour=colour)
    info = probe(clip)
    pictures = np.stack(list(iter_frames(clip, 0, 3, info)))
    write(tmp_path / name, info, pictures, codec=codec)
    with av.open(str(tmp_path / name)) as container:
        assert _tags(container.streams.video[0]) == tags
    out = probe(tmp_path / name)
    assert out.colour.range == range_read and out.colour.matrix == info.colour.matrix
    back = next(iter_frames(tmp_path / name, 0, 1, out))  # read as its tags say: the same picture
    assert np.abs(back[10, 40].astype(int) - CLIP_RGB).max() <= 4


@pytest.mark.parametrize(
    ("name", "tags"),
    [("out.mp4", (2, 2, 2, 0)), ("out.mov", (2, 2, 2, 1))],  # a ProRes decoder always says limited: it is
)
def test_untagged_sources_stay_untagged(tmp_path: Path, name: str, tags: tuple) -> None:
    clip = make_clip(tmp_path / "src.mp4", frames=2)
    info = probe(clip)
    assert info.colour == ColourTags()
    write(tmp_path / name, info, np.stack(list(iter_frames(clip, 0, 2, info))))
    with av.open(str(tmp_path / name)) as container:
        assert _tags(container.streams.video[0]) == tags
    back = next(iter_frames(tmp_path / name, 0, 1))
    assert np.abs(back[10, 40].astype(int) - CLIP_RGB).max() <= 4  # BT.601 both ways: the picture survives


@pytest.mark.parametrize("name", ["take.mp4", "take.mov"])
def test_metadata_is_written_as_container_tags(tmp_path: Path, name: str) -> None:
    record = json.dumps({"prompt": "a blue ball", "take": 3, "ünïcode": "✓"})
    write(tmp_path / name, untagged(), frames_of(2), metadata={"v2vz": record, "comment": "edited"})
    with av.open(str(tmp_path / name)) as container:
        assert json.loads(container.metadata["v2vz"]) == json.loads(record)
        assert container.metadata["comment"] == "edited"


# --- atomicity and errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.mp4", "out.mov", "shot_%04d.exr", "shot_%04d.tif"])
def test_abort_leaves_no_file(tmp_path: Path, name: str) -> None:
    clip = make_clip(tmp_path / "src.mov", frames=4, audio=(AudioSpec(),))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="the model failed"):
        write_then_fail(out / name, probe(clip))
    assert not list(out.iterdir())


def write_then_fail(path: Path, source: MediaInfo) -> None:
    with open_writer(path, output_format(path), source.fps, source, first_frame=0, frame_count=4) as writer:
        writer.write(frames_of(2))
        raise RuntimeError("the model failed")


def test_a_video_replaces_its_target_only_on_close(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"an older take")
    writer = open_writer(target, output_format(target), Fraction(24), untagged(), first_frame=0, frame_count=2)
    writer.write(frames_of(2))
    assert target.read_bytes() == b"an older take"  # the frames went to a hidden temporary beside it
    assert writer.close() == [target]
    assert probe(target).frame_count == 2 and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_unknown_extension_lists_what_is_accepted() -> None:
    with pytest.raises(InvalidArgument) as raised:
        output_format("take.avi")
    message = str(raised.value)
    assert all(part in message for part in (".mp4", ".mov", "prores_422hq", "dnxhr_hq", ".exr", ".png", ".tif"))
    assert "\n" not in message


def test_an_unwritable_place_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    for name in ("file/out.mp4", "file/shot_%04d.png"):
        path = tmp_path / name
        with pytest.raises(OutputUnwritable, match="cannot write") as raised:
            write(path, untagged(), frames_of(2))
        assert "\n" not in str(raised.value)


def test_frames_of_another_size_are_refused(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "a.mov", output_format("a.mov"), Fraction(24), untagged(), first_frame=0,
                         frame_count=2)  # fmt: skip
    with pytest.raises(InvalidArgument, match="frames of 32x32 cannot follow 64x48"):
        writer.write(frames_of(1, 32, 32))
    assert not list(tmp_path.iterdir())


# --- the sample clip --------------------------------------------------------------------------------------


def test_sample_clip_with_tone_and_timecode_passes_both_through(tmp_path: Path) -> None:
    clip = make_sample_clip(tmp_path / "sample.mp4", frames=8, width=64, height=48, fps=NTSC, audio=True,
                            start_timecode="00:59:59;28")  # fmt: skip
    info = probe(clip)
    assert info.has_audio and info.timecode == "00:59:59;28"
    tone, rate = read_audio(clip)
    assert tone.shape[0] == 2 and abs(tone.shape[1] - round(8 / NTSC * 48000)) < 1024 and rate == 48000
    write(tmp_path / "take.mov", info, frames_of(4), first=4)
    assert probe(tmp_path / "take.mov").timecode == "01:00:00;02"  # 59;28 + 4 frames: ;00 and ;01 skipped
    kept, _ = read_audio(tmp_path / "take.mov")
    assert kept.shape == (2, round(Fraction(8) / NTSC * 48000) - round(Fraction(4) / NTSC * 48000))
    assert 0.1 < np.abs(kept).max() < 0.3  # the tone, at its level
