"""`v2vz sample-clip`: a synthetic clip to try v2vz without any media.

The clip is drawn and written here, the command's own module, since nothing else in v2vz needs it (the tests and the
benchmarks import `make_sample_clip` from here). numpy, PyAV and the engine's writer load inside the functions only,
so importing the command stays light.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from v2vz.api.errors import InvalidArgument, OutputExists, OutputUnwritable, V2vzError
from v2vz.api.formats import OutputFormat
from v2vz.cli.output import refuse, say

if TYPE_CHECKING:
    import numpy as np

    from v2vz.world.scene import Scene, WorldClip

SAMPLE_TIMECODE = "01:00:00:00"
SAMPLE_TAG = "v2vz-sample"  # the container tag that marks a sample clip: `sample-clip` writes over these only
SAMPLE_EXTRAS = f"a stereo tone and timecode {SAMPLE_TIMECODE}"
MP4_H264 = OutputFormat(container="mp4", codec="h264", sequence=False)
WORLD_SIDE = 256  # --world's default size: the 64x64 world drawn 4 times larger (square, as the world is)
TRUTH_FILE = "truth.json"
MASK_NAME = "mask_{:06d}.png"  # --truth's masks, numbered from 0 like the clip's frames (as --save-mask names them)


def sample_clip(
    path: Annotated[Path, typer.Argument(help="Where to write the sample MP4.")] = Path("sample.mp4"),
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 24,
    width: Annotated[int | None, typer.Option(help="Width in pixels (default 320; --world: 256).")] = None,
    height: Annotated[int | None, typer.Option(help="Height in pixels (default 192; --world: 256).")] = None,
    world: Annotated[
        str | None,
        typer.Option(
            metavar="CAPTION",
            help="Draw the toy world instead (what the toyworld model knows), 'a COLOUR OBJECT on BACKGROUND' "
            "such as 'a red ball on green grass'; the size is then square, a multiple of 64.",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="--world: the object's path and size, the ground's grain (default 0).")
    ] = None,
    pan: Annotated[
        float | None,
        typer.Option(help="--world: the camera's pan, world pixels (1/64 of the frame) a frame (default 0)."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="--world: also write each frame's object mask (mask_000000.png, 255 = object) and truth.json "
            "(colour, object, background, centroid, size) to this new or empty folder.",
        ),
    ] = None,
) -> None:
    """Write a small synthetic clip (a ball rolling over grass, a stereo tone, timecode 01:00:00:00) to try v2vz
    without any media, or with --world a clip of the toy world and its truth. It writes over an earlier sample clip,
    never over another file."""
    try:
        if world is None:
            written = _write_plain_sample(path, frames, width, height, given=(seed, pan, truth))
        else:
            written = _write_world_sample(path, world, frames, width, height, seed or 0, pan or 0.0, truth)
    except V2vzError as exc:
        raise refuse(exc) from None
    say(f"wrote {path}: {written}")


def _write_plain_sample(
    path: Path, frames: int, width: int | None, height: int | None, given: tuple[object, ...]
) -> str:
    """The ball-over-grass sample; what was written, for the success line."""
    if any(value is not None for value in given):
        raise InvalidArgument("--seed, --pan and --truth draw the toy world: give --world CAPTION too")
    width = 320 if width is None else width
    height = 192 if height is None else height
    _refuse_overwrite(path)
    make_sample_clip(path, frames=frames, width=width, height=height, audio=True, start_timecode=SAMPLE_TIMECODE)
    return f"{frames} frames at {width}x{height}, 24 fps, with {SAMPLE_EXTRAS}"


def _write_world_sample(
    path: Path, text: str, frames: int, width: int | None, height: int | None, seed: int, pan: float, truth: Path | None
) -> str:
    """A toy-world clip (and its truth under `truth`); everything is checked before anything is written (the
    caption, frames, seed and pan by make_world_clip)."""
    side = world_side(width, height)
    _refuse_overwrite(path)
    if truth is not None:
        _refuse_truth_folder(truth, path)
    clip = make_world_clip(path, text, frames, seed, pan=pan, side=side, audio=True, start_timecode=SAMPLE_TIMECODE)
    written = f"'{clip.scenes[0].caption}', {frames} frames at {side}x{side}, 24 fps, with {SAMPLE_EXTRAS}"
    if truth is None:
        return written
    write_truth(truth, clip, seed=seed, pan=pan)
    return f"{written}; its truth ({frames} masks and {TRUTH_FILE}) in {truth}"


def _refuse_overwrite(path: Path) -> None:
    if path.exists() and not is_sample_clip(path):
        raise OutputExists(f"{path} exists and is not a v2vz sample clip: give another path")


def world_side(width: int | None, height: int | None) -> int:
    """The side of a toy-world clip: square (the world is) and a multiple of its 64 pixels, 256 unless given."""
    from v2vz.world.scene import WORLD_SIZE

    if width is None and height is None:
        return WORLD_SIDE
    width = height if width is None else width
    height = width if height is None else height
    if width != height or width < WORLD_SIZE or width % WORLD_SIZE:
        raise InvalidArgument(
            f"a toy-world clip is square, a multiple of {WORLD_SIZE} pixels a side (e.g. --width 256 --height 256), "
            f"not {width}x{height}"
        )
    return width


def world_caption(text: str) -> tuple[str, str, str]:
    """(colour, object, background) of a caption of the world; InvalidArgument naming the world's words."""
    from v2vz.world.scene import parse_caption

    try:
        return parse_caption(text)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _check_world_motion(frames: int, seed: int, pan: float) -> None:
    if frames < 1:
        raise InvalidArgument(f"sample clip needs at least 1 frame, got {frames}")
    if seed < 0:
        raise InvalidArgument(f"--seed must be 0 or more, got {seed}")
    if not math.isfinite(pan):
        raise InvalidArgument(f"--pan must be a number of world pixels a frame, got {pan}")


def _refuse_truth_folder(folder: Path, clip: Path) -> None:
    """--truth writes into a new or empty folder only: it never writes over (or beside) earlier files."""
    try:
        if folder.exists() and not folder.is_dir():
            raise OutputExists(f"--truth {folder} is a file: give a new or empty folder")
        if folder.is_dir() and any(folder.iterdir()):
            raise OutputExists(f"--truth {folder} has files in it already: give a new or empty folder")
    except OSError as exc:
        raise OutputUnwritable(f"--truth {folder} cannot be read: {exc.strerror or exc}") from None
    if folder.resolve() == clip.resolve():
        raise InvalidArgument(f"--truth {folder} is the clip's own path: give a folder of its own")


def is_sample_clip(path: Path) -> bool:
    """A clip `make_sample_clip` wrote (its container tag says so)."""
    import av

    try:
        with av.open(str(path)) as container:
            return container.metadata.get(SAMPLE_TAG) == "1"
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return False


def make_sample_clip(
    path: str | Path,
    frames: int = 24,
    width: int = 320,
    height: int = 192,
    fps: Fraction = Fraction(24),
    *,
    audio: bool = False,
    start_timecode: str | None = None,
) -> Path:
    """Write a deterministic demo clip (a ball crossing sky and ground): users can try edits without data.

    `audio` adds a stereo tone (440 Hz left, 660 Hz right) and `start_timecode` (e.g. "01:00:00:00") a timecode
    track, so the clip also shows an edit keeping its sound and timecode.
    """
    if frames < 1:
        raise InvalidArgument(f"sample clip needs at least 1 frame, got {frames}")
    if width < 8 or height < 8:
        raise InvalidArgument(f"sample clip size {width}x{height} must be at least 8x8")
    return _write_sample(Path(path), _sample_frames(frames, width, height), fps, audio, start_timecode)


def make_world_clip(
    path: str | Path,
    text: str,
    frames: int = 24,
    seed: int = 0,
    *,
    pan: float = 0.0,
    side: int = WORLD_SIDE,
    fps: Fraction = Fraction(24),
    audio: bool = False,
    start_timecode: str | None = None,
) -> WorldClip:
    """Write a clip of the toy world (`text`, a caption of it, drawn `side` pixels square) and return its truth:
    the same pictures, masks and scenes, so an edit of the clip can be judged against what is really there."""
    from v2vz.world.scene import WORLD_SIZE, world_clip

    world_caption(text)
    _check_world_motion(frames, seed, pan)
    side = world_side(side, side)
    clip = world_clip(text, frames, seed, scale=side // WORLD_SIZE, pan=pan)
    _write_sample(Path(path), clip.frames, fps, audio, start_timecode)
    return clip


def _write_sample(path: Path, pictures: np.ndarray, fps: Fraction, audio: bool, start_timecode: str | None) -> Path:
    """Write `pictures` as a tagged sample MP4 (H.264), with the stereo tone and the timecode when asked: one writer
    for every sample, so each carries the tag that lets `sample-clip` write over it."""
    from v2vz.media.timecode import to_frames
    from v2vz_engine.media.audio import ToneAudio
    from v2vz_engine.media.writers import VideoFileWriter

    fps = Fraction(fps)
    if start_timecode is not None:
        to_frames(start_timecode, fps)  # a label that does not fit the rate fails here, in one line
    tone = [ToneAudio(Fraction(len(pictures)) / fps)] if audio else []
    tags = {SAMPLE_TAG: "1"}  # `v2vz sample-clip` may write over a sample, and over nothing else
    with VideoFileWriter(path, MP4_H264, fps, start_timecode=start_timecode, audio=tone, metadata=tags) as writer:
        writer.write(pictures)
    return writer.path


def write_truth(folder: Path, clip: WorldClip, *, seed: int, pan: float) -> list[Path]:
    """Write a world clip's truth into `folder`: each frame's object mask (8-bit PNG, 255 = object) and truth.json
    (per frame: colour, object, background, the mask's centroid and the object's size, in pixels of the clip)."""
    from PIL import Image

    from v2vz.world.scene import WORLD_SIZE

    side = clip.frames.shape[2]
    scale = side // WORLD_SIZE if side % WORLD_SIZE == 0 else side / WORLD_SIZE
    rows = []
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for index, (mask, scene, (x, y)) in enumerate(zip(clip.masks, clip.scenes, clip.centroids, strict=True)):
            name = MASK_NAME.format(index)
            Image.fromarray(mask.astype("uint8") * 255).save(folder / name)
            written.append(folder / name)
            rows.append(_truth_row(index, name, scene, x, y, scale, int(mask.sum())))
        about = {
            "caption": clip.scenes[0].caption,
            "width": side,
            "height": clip.frames.shape[1],
            "scale": scale,
            "seed": seed,
            "pan": pan,
            "units": "pixels of the clip: x right and y down from its top-left corner; size is the ball's radius or "
            "half the box's side; centroid is the mask's (the mean of its pixel centres); pan is in world pixels "
            "a frame (a world pixel is `scale` pixels of the clip)",
            "frames": rows,
        }
        (folder / TRUTH_FILE).write_text(json.dumps(about, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputUnwritable(f"cannot write the truth in {folder}: {exc.strerror or exc}") from None
    return [*written, folder / TRUTH_FILE]


def _truth_row(index: int, mask: str, scene: Scene, x: float, y: float, scale: float, area: int) -> dict:
    return {
        "frame": index,
        "mask": mask,
        "colour": scene.colour,
        "object": scene.object,
        "background": scene.background,
        "centroid": {"x": round(x, 3), "y": round(y, 3)},
        "size": round(scene.size * scale, 3),
        "area": area,
    }


def _sample_frames(frames: int, width: int, height: int) -> np.ndarray:
    """The sample's pictures as uint8 RGB (frames, height, width, 3): a red ball bouncing left to right over a sky
    and a field, the same pixels every time."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = 0.65 * height
    sky_t = (y / horizon)[..., None]
    sky = (1 - sky_t) * np.array([40, 90, 200]) + sky_t * np.array([170, 210, 250])
    ground_t = ((y - horizon) / max(height - horizon, 1))[..., None]
    ground = (1 - ground_t) * np.array([90, 170, 70]) + ground_t * np.array([40, 100, 30])
    background = np.where((y < horizon)[..., None], sky, ground)
    radius = 0.12 * min(width, height)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        cx = radius + t * (width - 2 * radius)
        cy = horizon - radius - abs(np.sin(t * 2 * np.pi)) * 0.4 * horizon
        inside = ((x - cx) ** 2 + (y - cy) ** 2 <= radius**2)[..., None]
        shade = 1 - 0.4 * np.clip(((x - cx) + (y - cy)) / (2 * radius) + 0.5, 0, 1)[..., None]
        out[i] = np.where(inside, shade * np.array([230, 60, 40]), background).round().astype(np.uint8)
    return out
