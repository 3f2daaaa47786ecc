"""Issue 23 item 6, media: a turned source (display matrix) reads upright and its edit shows as the source does; the
timecode of Matroska (TIMECODE), MOV/MP4 (tmcd) and MXF sources, a label past 24 hours; the frame sizes each output
codec cannot write, refused at submit (daemon, `edit --local`, `media.resolve`) in one line that names the limit."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from v2vz.api.errors import InvalidArgument, MediaError
from v2vz.api.formats import SIZE_LIMITS, check_size, frame_path, output_format
from v2vz.api.job import EditJob
from v2vz.api.v1 import editor_pb2 as pb
from v2vz_engine import media
from v2vz_engine.media import iter_frames, open_writer, probe
from v2vz_engine.media.timecode import add
from v2vz_engine.media.video import upright_turn

from ..daemon_kit import connect, request, watch
from ..media_kit import make_clip

# A stored picture no turn or mirror leaves as it was: red top-left, green top-right, blue bottom-left blocks.
STORED = np.full((48, 64, 3), 90, dtype=np.uint8)
STORED[:12, :12], STORED[:12, -12:], STORED[-12:, :12] = (230, 30, 30), (30, 230, 30), (30, 30, 230)


def turned_clip(path: Path, degrees: int, *, hflip: bool = False, frames: int = 3, codec: str = "libx264") -> Path:
    """A clip of STORED frames whose display matrix turns them `degrees` counter-clockwise (PyAV's and the
    MP4/MOV/MKV `rotate` convention), then mirrors them left-right with `hflip`."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=24, options={"crf": "0"} if codec == "libx264" else {})
        stream.width, stream.height = STORED.shape[1], STORED.shape[0]
        stream.pix_fmt = "yuv444p"
        if degrees or hflip:
            stream.set_display_rotation(degrees, hflip=hflip)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(STORED, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def as_displayed(degrees: int, hflip: bool = False) -> np.ndarray:
    """What a player shows of STORED under that display matrix: turned counter-clockwise, then mirrored."""
    shown = np.rot90(STORED, degrees // 90)
    return shown[:, ::-1] if hflip else shown


def display_rotation(path: Path) -> int | None:
    """The turn a player applies to a file's first frame (its display matrix, as PyAV reads it; None without one)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        matrices = [data for data in frame.side_data if data.type.name == "DISPLAYMATRIX"]
        return round(frame.rotation) if matrices else None


TURNS = [(90, False), (-90, False), (180, False), (0, True), (90, True)]


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
@pytest.mark.parametrize(("degrees", "hflip"), TURNS, ids=["cclock", "clock", "180", "mirror", "cclock-mirror"])
def test_a_turned_source_is_read_as_displayed(tmp_path: Path, suffix: str, degrees: int, hflip: bool) -> None:
    source = turned_clip(tmp_path / f"turned{suffix}", degrees, hflip=hflip)
    assert display_rotation(source) is not None  # the file has the matrix
    assert hflip or (display_rotation(source) - degrees) % 360 == 0
    shown = as_displayed(degrees, hflip)
    info = probe(source)
    assert (info.height, info.width) == shown.shape[:2]
    frames = np.stack(list(iter_frames(source, 1, 2, info)))
    assert frames.shape == (2, *shown.shape)
    assert np.abs(frames.astype(int) - shown).max() <= 2  # lossless x264: only RGB<->YUV rounding


@pytest.mark.parametrize("out_name", ["take.mp4", "take.mov", "take_%04d.png"])
@pytest.mark.parametrize("degrees", [-90, 90, 180])
def test_the_edit_of_a_turned_source_displays_as_the_source_does(tmp_path: Path, degrees: int, out_name: str) -> None:
    """Written upright, without a display matrix: a player (or an EXR/PNG reader, which knows none) shows the output
    exactly as it shows the source, and the size is the displayed one."""
    source = turned_clip(tmp_path / "phone.mp4", degrees)
    info = probe(source)
    out = tmp_path / out_name
    fmt = output_format(out, "prores_4444" if out.suffix == ".mov" else None)
    frames = np.stack(list(iter_frames(source, 0, 2, info)))
    with open_writer(out, fmt, info.fps, info, first_frame=0, frame_count=2) as writer:
        writer.write(frames)
    written = frame_path(out, 0) if fmt.sequence else out
    assert display_rotation(written) is None  # upright: nothing for a player to turn
    with av.open(str(written)) as container:
        pixels = next(container.decode(video=0)).to_ndarray(format="rgb24")
    shown = as_displayed(degrees)
    assert pixels.shape == shown.shape
    assert np.abs(pixels.astype(int) - shown).mean() < 3 and np.abs(pixels.astype(int) - shown).max() < 60


def test_an_edit_of_a_phone_clip_through_the_daemon_is_upright(daemon, root: Path) -> None:
    source = turned_clip(root / "portrait.mp4", -90, frames=4)  # stored 64x48, shown 48x64 (a phone held upright)
    stub, md = connect(daemon)
    fast = {"steps": "2", "inversion": "direct"}
    reply = stub.SubmitEdit(request(root, source_path=str(source), start=0, frames=2, options=fast), metadata=md)
    done = watch(stub, md, reply.job_id)[-1]
    assert done.WhichOneof("kind") == "done", done
    out = Path(done.done.output)
    written = probe(out)
    assert (written.width, written.height, written.frame_count) == (48, 64, 2)
    assert display_rotation(out) is None and written.upright is None
    with av.open(done.done.frame_paths[0]) as png:  # the 8-bit frames a host places are upright too
        assert (png.streams.video[0].width, png.streams.video[0].height) == (48, 64)


def test_a_matrix_at_an_odd_angle_is_refused_in_one_line(tmp_path: Path) -> None:
    """45 degrees has no lossless turn: refused at probe (so at submit), never edited sideways."""
    turned_45 = [46341, 46341, 0, -46341, 46341, 0, 0, 0, 1 << 30]  # 16.16 cos and sin of 45 degrees
    source = tmp_path / "odd.mp4"
    with av.open(str(source), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_matrix(turned_45)
        for index in range(2):
            frame = av.VideoFrame.from_ndarray(STORED, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(MediaError, match="odd.mp4 is displayed turned by 45 degrees") as raised:
        probe(source)
    assert "\n" not in str(raised.value)
    assert upright_turn((1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30), source) is None  # the identity


# --- timecode -------------------------------------------------------------------------------------------------


def tagged_clip(path: Path, *, container_tags: dict[str, str] | None = None, stream_tags: dict | None = None,
                codec: str = "libx264", fps: Fraction = Fraction(24)) -> Path:  # fmt: skip
    """A 6-frame clip with the given container and video stream tags (Matroska keeps them as written: TIMECODE)."""
    with av.open(str(path), mode="w") as container:
        for key, value in (container_tags or {}).items():
            container.metadata[key] = value
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for key, value in (stream_tags or {}).items():
            stream.metadata[key] = value
        for index in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100, dtype=np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def output_timecode_of(path: Path) -> str | None:
    with av.open(str(path)) as container:
        tracks = [s.metadata.get("timecode") for s in container.streams if s.type == "data"]
        return container.streams.video[0].metadata.get("timecode") or (tracks[0] if tracks else None)


def edit_range(source: Path, out: Path, first: int, count: int = 2) -> Path:
    """The media path of an edit: probe, read the range, write it with the source's timecode moved on."""
    info = probe(source)
    frames = np.stack(list(iter_frames(source, first, count, info)))
    with open_writer(out, output_format(out), info.fps, info, first_frame=first, frame_count=count) as writer:
        writer.write(frames)
    return out


@pytest.mark.parametrize(
    ("container_tags", "stream_tags", "label"),
    [
        ({"TIMECODE": "01:00:00:00"}, None, "01:00:00:00"),  # mkvmerge and FFmpeg write the segment's tag
        (None, {"TIMECODE": "02:00:00:10"}, "02:00:00:10"),  # or the track's
        ({"TIMECODE": "01:00:00:00"}, {"TIMECODE": "03:00:00:00"}, "03:00:00:00"),  # the video track's first
    ],
    ids=["segment", "track", "track-before-segment"],
)
def test_a_matroska_timecode_tag_is_carried_over(tmp_path: Path, container_tags, stream_tags, label: str) -> None:
    source = tagged_clip(tmp_path / "src.mkv", container_tags=container_tags, stream_tags=stream_tags)
    assert probe(source).timecode == label
    out = edit_range(source, tmp_path / "take.mov", first=3)
    assert output_timecode_of(out) == add(label, 3, Fraction(24))
    assert probe(out).timecode == add(label, 3, Fraction(24))


def test_an_mxf_timecode_is_carried_over(tmp_path: Path) -> None:
    source = tagged_clip(tmp_path / "src.mxf", container_tags={"timecode": "10:00:00:00"}, codec="mpeg2video",
                         fps=Fraction(25))  # fmt: skip
    assert probe(source).timecode == "10:00:00:00"
    assert output_timecode_of(edit_range(source, tmp_path / "take.mp4", first=4)) == "10:00:00:04"


@pytest.mark.parametrize(
    ("label", "first", "fps", "expected"),
    [
        ("99:00:00:00", 5, Fraction(24), "99:00:00:05"),  # past a day already: counts on, never 03:00:00:05
        ("24:00:00:00", 0, Fraction(25), "24:00:00:00"),
        ("47:59:59;29", 1, Fraction(30000, 1001), "48:00:00;00"),  # drop-frame past a day
        ("23:59:59:23", 2, Fraction(24), "00:00:00:01"),  # a time of day still wraps at midnight, as a clock does
    ],
)
def test_a_source_timecode_past_24_hours_does_not_wrap(
    tmp_path: Path, label: str, first: int, fps: Fraction, expected: str
) -> None:
    source = make_clip(tmp_path / "src.mov", fps=fps, frames=8, timecode=label)
    assert probe(source).timecode == label
    out = edit_range(source, tmp_path / "take.mov", first=first)
    assert output_timecode_of(out) == expected
    assert probe(out).timecode == expected


def test_a_label_past_99_hours_wraps_at_100() -> None:
    assert add("99:59:59:23", 1, Fraction(24)) == "00:00:00:00"
    assert add("30:00:00:00", 24 * 3600 * 24, Fraction(24)) == "54:00:00:00"


# --- sizes each codec can write ---------------------------------------------------------------------------------

REFUSED = [
    ("h265", "mp4", (1, 1), "H.265 needs frames of at least 16x16"),
    ("h265", "mp4", (7, 3), "H.265 needs frames of at least 16x16"),
    ("h265", "mp4", (17, 9), "H.265 needs frames of at least 16x16"),
    ("h265", "mov", (4097, 8), "H.265 needs frames of at least 16x16"),
    ("h265", "mp4", (15, 64), "H.265 needs frames of at least 16x16"),
    ("h265", "mp4", (4217, 16), "H.265 frames under 32 pixels on a side can be at most 4216 on the other"),
    ("h265", "mov", (31, 6144), "H.265 frames under 32 pixels on a side can be at most 4216 on the other"),
    ("h264", "mp4", (16385, 16), "H.264 frames can be at most 16384x16384"),
    ("h264", "mov", (16, 16385), "H.264 frames can be at most 16384x16384"),
    ("dnxhr_hq", "mov", (255, 120), "DNxHR needs frames of at least 256x120"),
    ("dnxhr_hq", "mov", (256, 8193), "DNxHR frames can be at most 16384x8192"),
    ("prores_422hq", "mov", (65, 48), "ProRes 422 cannot be written 65 pixels wide"),
]


@pytest.mark.parametrize(("codec", "container", "size", "message"), REFUSED)
def test_sizes_a_codec_cannot_write_are_refused_in_one_line(codec, container, size, message) -> None:
    width, height = size
    with pytest.raises(InvalidArgument, match=message) as raised:
        check_size(output_format(f"take.{container}", codec), width, height, Path(f"/x/take.{container}"))
    said = str(raised.value)
    assert "\n" not in said and f"{width}x{height}" in said and f"take.{container}" in said and "--codec" in said


@pytest.mark.parametrize(
    ("codec", "container", "size"),
    [
        ("h265", "mp4", (16, 16)),
        ("h265", "mp4", (17, 33)),  # odd sizes are 4:4:4
        ("h265", "mp4", (4216, 16)),
        ("h265", "mp4", (32, 8705)),
        ("h264", "mp4", (1, 1)),
        ("h264", "mov", (7, 3)),
        ("h264", "mp4", (16384, 16)),
        ("dnxhr_hq", "mov", (257, 121)),
        ("dnxhr_hq", "mov", (256, 8192)),
        ("prores_422hq", "mov", (18, 9)),
        ("prores_4444", "mov", (65, 9)),
        ("prores_4444", "mov", (16385, 16)),  # no limit found: wider than H.264 may be
    ],
)
def test_the_limits_are_the_encoders_own(tmp_path: Path, codec: str, container: str, size: tuple[int, int]) -> None:
    """Each size at a limit's edge passes the check, and really writes and decodes at that size."""
    width, height = size
    out = tmp_path / f"edge.{container}"
    fmt = output_format(out, codec)
    check_size(fmt, width, height, out)
    source = media.MediaInfo(tmp_path / "none", width, height, Fraction(24), 2, has_audio=False)
    with open_writer(out, fmt, Fraction(24), source, first_frame=0, frame_count=2) as writer:
        writer.write(np.full((2, height, width, 3), 120, dtype=np.uint8))
    with av.open(str(out)) as written:
        decoded = [frame.to_ndarray(format="rgb24").shape for frame in written.decode(video=0)]
    assert decoded == [(height, width, 3)] * 2


def test_every_video_codec_has_its_limits() -> None:
    from v2vz_engine.media.writers import VIDEO_CODECS

    assert set(SIZE_LIMITS) == set(VIDEO_CODECS)


def source_of(tmp_path: Path, size: tuple[int, int]) -> Path:
    """A 3-frame source of that size: H.264 where x264 writes it, else ProRes 4444 (any size up to 16385 wide)."""
    width, height = size
    if max(width, height) <= 16384:
        return make_clip(tmp_path / "src.mp4", size=size, frames=3)
    path = tmp_path / "src.mov"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("prores_ks", rate=24, options={"profile": "4444"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p10le"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 80, dtype=np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv444p10le")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(
    ("codec", "container", "size", "message"),
    [REFUSED[2], REFUSED[3], REFUSED[6], REFUSED[8]],
    ids=["h265-17x9", "h265-4097x8", "h264-16385x16", "dnxhr-255x120"],
)
def test_the_daemon_refuses_such_a_size_at_submit(daemon, root: Path, codec, container, size, message) -> None:
    source = source_of(root, size)
    stub, md = connect(daemon)
    out = root / f"take.{container}"
    with pytest.raises(grpc.RpcError) as raised:
        stub.SubmitEdit(request(root, source_path=str(source), start=0, frames=2, output=str(out), codec=codec),
                        metadata=md)  # fmt: skip
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details() and "\n" not in raised.value.details()
    assert stub.ListJobs(pb.ListJobsRequest(), metadata=md).jobs == []  # no job, no work
    assert not out.exists()


def test_resolve_checks_the_displayed_size(tmp_path: Path) -> None:
    """A clip stored 300x130 but shown 130x300 (turned) is written 130x300: too narrow for DNxHR, which the stored
    size is not."""
    stored_wide = tmp_path / "wide.mp4"
    with av.open(str(stored_wide), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 300, 130, "yuv420p"
        stream.set_display_rotation(90)
        for index in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((130, 300, 3), dtype=np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    job = EditJob(source=stored_wide, prompt="p", source_prompt="s", start=0, frames=2,
                  output=tmp_path / "take.mov", codec="dnxhr_hq")  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"DNxHR needs frames of at least 256x120, take.mov would be 130x300"):
        media.resolve(job)
    assert not (tmp_path / "take.mov").exists()


def test_a_two_frame_h265_edit_is_always_written(tmp_path: Path) -> None:
    """FFmpeg's libx265 wrapper gives a 2-frame stream's decode times from uninitialised memory now and then; the
    muxer refused them after the whole edit ("Not yet implemented in FFmpeg"). Every try must write."""
    source = media.MediaInfo(tmp_path / "none", 16, 16, Fraction(24), 2, has_audio=False)
    for attempt in range(32):
        out = tmp_path / f"take{attempt}.mp4"
        with open_writer(out, output_format(out, "h265"), Fraction(24), source, first_frame=0, frame_count=2) as w:
            w.write(np.full((2, 16, 16, 3), 120, dtype=np.uint8))
        assert probe(out).frame_count == 2


def test_edit_local_refuses_such_a_size_before_loading_a_model(tmp_path: Path, monkeypatch, model_cache) -> None:
    from typer.testing import CliRunner

    from v2vz.cli.main import app

    source = make_clip(tmp_path / "tiny.mp4", size=(7, 3), frames=3)
    out = tmp_path / "take.mp4"
    monkeypatch.setenv("V2VZ_CACHE", str(model_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["edit", str(source), "-p", "a", "-s", "b", "--frames", "2", "--out", str(out), "--codec", "h265",
            "--local", "--model", "tiny", "--cache-dir", str(model_cache)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == InvalidArgument.exit_code, result.output
    said = [line for line in result.output.splitlines() if line.strip()]
    assert said[-1].startswith("error:") and "H.265 needs frames of at least 16x16" in " ".join(said)
    assert "Traceback" not in result.output and not out.exists()
