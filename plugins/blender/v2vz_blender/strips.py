"""The strips: which ones v2vz can edit, the source frames a strip shows, and the image strip its edit becomes.

The daemon edits a source range of a movie, or a numbered image sequence read from its first file, so a strip is
refused unless what it shows on the timeline is exactly such a range. `sequence_problem` restates the daemon's
image-sequence rules (`v2vz_engine/media/image_sequence.py`) with the standard library; a test holds them equal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import bpy

from . import compat, v2vz_host

SUPPORTED_TYPES = ("MOVIE", "IMAGE")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # as the daemon's image_sequence.py
_NUMBERED = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")  # prefix, the last run of digits, suffix
MAX_CHANNEL = 128


class ReportError(Exception):
    """A problem the user can act on: reported as it is, never as a traceback."""


def active_strip(context):
    """The active strip of the sequencer the user edits, or None."""
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor if scene is not None else None
    return editor.active_strip if editor is not None else None


def check_strip(scene, strip) -> None:
    """Refuse strips the edit cannot handle, with a message that says why."""
    if strip is None:
        raise ReportError("no active strip: click a movie or image strip first")
    if strip.type in compat.UNSUPPORTED_TYPES:
        raise ReportError(
            f"{strip.name!r} is {compat.UNSUPPORTED_TYPES[strip.type]}: re-prompt works on movie and image strips"
        )
    if strip.type not in SUPPORTED_TYPES:
        raise ReportError(f"{strip.name!r} is a {strip.type.lower()} strip: re-prompt works on movie and image strips")
    speed = compat.speed_effects_on(scene.sequence_editor, strip)
    if speed:
        raise ReportError(f"{strip.name!r} has a speed effect ({speed[0].name!r}): remove it to re-prompt the strip")
    if compat.is_retimed(strip):
        raise ReportError(f"{strip.name!r} is retimed: reset its retiming to re-prompt it")
    if getattr(strip, "use_reverse_frames", False):
        raise ReportError(f"{strip.name!r} plays its frames in reverse: turn that off to re-prompt it")
    if compat.duration(strip) < 1:
        raise ReportError(f"{strip.name!r} shows no frames on the timeline")


def visible_first(strip) -> int:
    """The index of the first visible source frame (movie frame or image element): trims move the handles only,
    source frame 0 (after the hold offset) sits at content_start."""
    return compat.left_handle(strip) - round(compat.content_start(strip)) + compat.hold_offset_start(strip)


def source_range(scene, strip) -> tuple[str, int, int]:
    """The strip's media and its source frames visible on the timeline: (path, first frame, count). For an image
    strip: (the first visible image, 0, count), the daemon reading the numbered images that follow it."""
    check_strip(scene, strip)
    if strip.type == "IMAGE":
        return image_range(strip)
    path = bpy.path.abspath(strip.filepath)
    if not path or not os.path.isfile(path):
        raise ReportError(f"{strip.name!r}: its movie file {path or strip.filepath!r} does not exist")
    movie_fps = float(getattr(strip, "fps", 0.0) or 0.0)
    fps = compat.scene_fps(scene)
    if movie_fps and abs(movie_fps - fps) > 1e-3:
        raise ReportError(
            f"{strip.name!r} is {movie_fps:g} fps and the scene {fps:g} fps: set the scene's frame rate to "
            f"{movie_fps:g} to re-prompt it"
        )
    first = visible_first(strip)
    if first < 0:
        raise ReportError(f"{strip.name!r} starts before its movie's first frame (hold): trim it to its content")
    return path, first, compat.duration(strip)


def image_range(strip) -> tuple[str, int, int]:
    """An image strip's source: (the first visible image's path, 0, visible count), once its visible images are
    checked to be the numbered sequence the daemon reads from that first image (`sequence_problem`)."""
    first, count = visible_first(strip), compat.duration(strip)
    elements = strip.elements
    if first < 0:
        raise ReportError(f"{strip.name!r} starts before its first image (hold): trim it to its images")
    if first + count > len(elements):
        raise ReportError(
            f"{strip.name!r} shows frames after its last image (hold): trim it to its {len(elements)} images"
        )
    files = [
        os.path.normpath(bpy.path.abspath(strip.directory + elements[index].filename))
        for index in range(first, first + count)
    ]
    problem = sequence_problem(files)
    if problem:
        raise ReportError(f"{strip.name!r} cannot be re-prompted: {problem}")
    return files[0], 0, count


def split_numbered(name: str) -> tuple[str, int, str] | None:
    """(prefix, number, suffix) around the last run of digits of a file name, or None when it has no digit."""
    match = _NUMBERED.match(name)
    return (match.group(1), int(match.group(2)), match.group(3)) if match else None


def sequence_problem(paths: list[str]) -> str | None:
    """Why `paths` are not frames 0..n-1 of the image sequence the daemon reads from `paths[0]`, or None if they are.

    The daemon's sequence from a file `<prefix><number><suffix>` is that file, then the files beside it with the
    same prefix and suffix and a higher number, in number order (gaps in the numbering are fine); a name without
    digits is a single still. So the files must exist, be numbered alike in increasing order, and leave out no file
    of the pattern between two of them.
    """
    if not paths:
        return "it shows no images"
    for path in paths:
        if not os.path.isfile(path):
            return f"its image {path} does not exist"
    first = paths[0]
    name = os.path.basename(first)
    if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
        return f"{name} is not an image v2vz reads ({', '.join(IMAGE_SUFFIXES)})"
    pattern = split_numbered(name)
    if pattern is None:
        if len(paths) == 1:
            return None
        return f"{name} has no frame number in its name, so v2vz would read it as a single still image"
    prefix, number, suffix = pattern
    folder = os.path.dirname(first)
    following: dict[int, str] = {}
    try:
        names = os.listdir(folder or ".")
    except OSError as exc:
        return f"its folder {folder} cannot be listed ({exc.strerror or exc})"
    for other in names:
        parts = split_numbered(other)
        if parts is None or parts[0] != prefix or parts[2] != suffix or parts[1] <= number:
            continue
        if not os.path.isfile(os.path.join(folder, other)):
            continue
        if parts[1] in following:
            a, b = sorted((following[parts[1]], other))
            return f"{folder} holds two frames numbered {parts[1]} ({a} and {b}): rename or remove one"
        following[parts[1]] = other
    expected = [name] + [following[key] for key in sorted(following)]
    previous = name
    for index, path in enumerate(paths[1:], start=1):
        current = os.path.basename(path)
        if os.path.normcase(os.path.dirname(os.path.abspath(path))) != os.path.normcase(os.path.abspath(folder)):
            return f"{current} is not in the folder of {name} ({folder})"
        parts = split_numbered(current)
        if parts is None or parts[0] != prefix or parts[2] != suffix:
            return f"{current} is not numbered like {name} ({prefix}<number>{suffix})"
        if parts[1] <= split_numbered(previous)[1]:
            return f"{current} follows {previous} but its number is not higher: the images must go up in number"
        if index >= len(expected):  # cannot happen for an existing file numbered higher: kept for safety
            return f"{current} is not part of the sequence that starts at {name}"
        if expected[index] != current:
            return (
                f"{expected[index]} lies between {previous} and {current} but is not in the strip: v2vz reads "
                "every numbered image in order, so move the strip's images to a folder of their own"
            )
        previous = current
    return None


def free_channel(editor, above: int, start: int, end: int, reserved: set[int] | None = None) -> int:
    """The first channel above `above` where no strip overlaps the timeline frames [start, end), other than the
    `reserved` ones (running jobs' strips to come)."""
    busy: set[int] = set(reserved or ())
    for strip in compat.strips(editor):
        if compat.left_handle(strip) < end and compat.right_handle(strip) > start:
            busy.add(strip.channel)
    channel = above + 1
    while channel in busy:
        channel += 1
    if channel > MAX_CHANNEL:
        raise ReportError(f"no free channel above {above} over frames {start}..{end - 1}")
    return channel


@dataclass
class ResultStrip:
    """The image strip a job's frames become: where it goes, and how many of its frames are on the timeline."""

    scene_name: str
    name: str  # the name asked for ("<source> v2vz")
    channel: int
    start: int  # its first timeline frame: the source strip's
    count: int  # the frames it will have
    appended: int = 0  # the frames on the timeline so far
    strip_name: str = ""  # the name Blender gave it, once it exists

    def strip(self):
        """The strip, or None before the first frame or once the user deleted it."""
        scene = bpy.data.scenes.get(self.scene_name)
        if scene is None or scene.sequence_editor is None or not self.strip_name:
            return None
        return compat.strips_all(scene.sequence_editor).get(self.strip_name)

    def grow(self, frames: dict[int, str]) -> int:
        """Main thread: put the frames that arrived (index -> PNG), in index order, onto the strip. Returns how
        many; the first makes the strip."""
        added = 0
        while self.appended in frames and self.appended < self.count:
            path = frames[self.appended]
            if self.appended == 0:
                scene = bpy.data.scenes.get(self.scene_name)
                if scene is None or scene.sequence_editor is None:
                    return added
                strip = compat.new_image(scene.sequence_editor, self.name, path, self.channel, self.start)
                self.strip_name = strip.name
            else:
                strip = self.strip()
                if strip is None:  # the user deleted it: stop adding
                    return added
                strip.elements.append(os.path.basename(path))
            self.appended += 1
            added += 1
        return added


# ---------------------------------------------------------------------------------------------------------------
# The matte: a strip above the source that says where the edit may change the picture (white: edit)

MATTE_TYPES = ("MOVIE", "IMAGE", "MASK")
MATTE_FILE = "matte_%06d.png"  # a mask strip rendered to PNGs, numbered by timeline frame


def matte_strip(editor, source, name: str):
    """The strip named `name`, checked to be a matte of `source`: a movie, image or mask strip on a channel above
    it. ReportError otherwise (one line, saying what to choose)."""
    matte = compat.strips_all(editor).get(name)
    if matte is None:
        raise ReportError(f"no strip {name!r} for the matte: choose a movie, image or mask strip above the source")
    if matte.type not in MATTE_TYPES:
        raise ReportError(f"the matte {name!r} is a {matte.type.lower()} strip: choose a movie, image or mask strip")
    if matte.channel <= source.channel:
        raise ReportError(
            f"the matte {name!r} is on channel {matte.channel}, not above {source.name!r} (channel "
            f"{source.channel}): move it to a channel above the source"
        )
    if compat.is_retimed(matte) or getattr(matte, "use_reverse_frames", False):
        raise ReportError(f"the matte {name!r} is retimed or reversed: v2vz reads its frames one for one")
    return matte


def matte_source(scene, matte, first: int, count: int, render_folder: str) -> tuple[str, int]:
    """(--matte, --matte-start) for the matte strip over the timeline frames first..first+count-1: a movie's file
    and the frame of it shown at `first`; an image strip's image shown at `first` (its sequence goes on from
    there); a mask strip rendered to PNGs in `render_folder`."""
    try:
        aligned = v2vz_host.aligned_matte_frame(
            first, count, compat.left_handle(matte), compat.duration(matte), visible_first(matte)
        )
    except ValueError as exc:
        raise ReportError(f"the matte {matte.name!r} does not cover the source: {exc}") from None
    if matte.type == "MASK":
        return render_mask(scene, matte, first, count, render_folder), 0
    if matte.type == "IMAGE":
        return image_matte(matte, aligned, count), 0
    path = bpy.path.abspath(matte.filepath)
    if not path or not os.path.isfile(path):
        raise ReportError(f"the matte {matte.name!r}: its movie file {path or matte.filepath!r} does not exist")
    movie_fps, fps = float(getattr(matte, "fps", 0.0) or 0.0), compat.scene_fps(scene)
    if movie_fps and abs(movie_fps - fps) > 1e-3:
        raise ReportError(
            f"the matte {matte.name!r} is {movie_fps:g} fps and the scene {fps:g} fps: v2vz reads it frame for frame"
        )
    if aligned < 0:
        raise ReportError(f"the matte {matte.name!r} holds its first frame over the source: trim it to its content")
    return path, aligned


def image_matte(matte, index: int, count: int) -> str:
    """The image of an image strip that goes with the range's first frame (the range's images must be the numbered
    sequence the daemon reads from it), or its one image (a still serves every frame)."""
    elements = matte.elements
    directory = bpy.path.abspath(matte.directory)
    if len(elements) == 1:
        return os.path.normpath(os.path.join(directory, elements[0].filename))
    if index < 0 or index + count > len(elements):
        raise ReportError(
            f"the matte {matte.name!r} holds an image beyond its own over the source: trim it to its images"
        )
    files = [os.path.normpath(os.path.join(directory, elements[i].filename)) for i in range(index, index + count)]
    problem = sequence_problem(files)
    if problem:
        raise ReportError(f"the matte {matte.name!r} cannot be read: {problem}")
    return files[0]


def render_mask(scene, matte, first: int, count: int, folder: str) -> str:
    """A mask strip rendered at the scene's size to grey PNGs (MATTE_FILE) in `folder` for the timeline frames
    first..first+count-1, through a scene of its own (the user's scene is not touched). The first PNG's path."""
    os.makedirs(folder, exist_ok=True)
    render = bpy.data.scenes.new("v2vz matte")
    try:
        settings, own = render.render, scene.render
        settings.resolution_x, settings.resolution_y = own.resolution_x, own.resolution_y
        settings.resolution_percentage = own.resolution_percentage
        settings.fps, settings.fps_base = own.fps, own.fps_base
        render.view_settings.view_transform = "Standard"  # white stays white
        settings.image_settings.file_format = "PNG"
        settings.image_settings.color_mode = "BW"
        settings.filepath = os.path.join(folder, MATTE_FILE.replace("%06d", "######"))
        render.frame_start, render.frame_end = first, first + count - 1
        copy = compat.strips(render.sequence_editor_create()).new_mask(
            name=matte.name, mask=matte.mask, channel=1, frame_start=round(compat.content_start(matte))
        )
        compat.set_handle_offsets(copy, *compat.handle_offsets(matte))
        bpy.ops.render.render(animation=True, scene=render.name)
        compat.strips(render.sequence_editor).remove(copy)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ReportError(
            f"the mask strip {matte.name!r} could not be rendered to a matte ({exc}): render it to a movie or PNG "
            "images and use that strip as the matte"
        ) from None
    finally:
        bpy.data.scenes.remove(render)
    files = [os.path.join(folder, MATTE_FILE % frame) for frame in range(first, first + count)]
    missing = [path for path in files if not os.path.isfile(path)]
    if missing:
        raise ReportError(
            f"the mask strip {matte.name!r} rendered no {missing[0]}: render it to a movie or PNG images and use "
            "that strip as the matte"
        )
    return files[0]
