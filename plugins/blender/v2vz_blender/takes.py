"""Takes: every re-prompt of a strip is a new take of it, and no take ever overwrites another.

A take is an image strip on a channel above its source strip, named after its prompt, that carries custom
properties (ID properties, `v2vz_*`) saying what it is: its source strip, its take number, its prompts, its model,
when it was made, its job, whether it is a preview and its frames folder. The source strip carries a stable id
(`v2vz_source_id`) that its takes point to (`v2vz_take_of`), so renaming or moving the source keeps its takes, and
the last take number it gave (`v2vz_takes`), so a deleted take's number is never given again. Of the takes of one
source only the newest is unmuted; the editor compares takes by making another one the active take (`activate`),
which unmutes it and mutes the others.
"""

from __future__ import annotations

import os
import re
import time
import uuid

import bpy

from . import compat, v2vz_host
from .strips import ReportError

SOURCE_ID = "v2vz_source_id"  # on a source strip: the id its takes point to
TAKE_COUNTER = "v2vz_takes"  # on a source strip: the last take number it gave
TAKE_OF = "v2vz_take_of"  # on a take: its source strip's id
# On a take, beside TAKE_OF: the source strip's name when the take was made, the take number (1, 2, 3 per source),
# the prompts, the model ("": the daemon's), when it was made, the client's job id, preview (True) or final, and
# the folder of its frames.
FIELDS = ("source", "take", "prompt", "source_prompt", "model", "time", "job", "preview", "folder")
KEY = {name: f"v2vz_{name}" for name in FIELDS}

NAME_BYTES = 60  # Blender keeps 63 bytes of a strip name (4.2 to 5.2); a little less leaves room for ".001"
READABLE = 40  # a prompt longer than this is cut at a word, with "..."
PREVIEW_SUFFIX = " (preview)"
PREVIEW_COLOR = "COLOR_05"  # previews stand out on the timeline (blue); finals keep no colour tag
FRAME_FILE = re.compile(r"^frame_\d+\.png$")  # what the daemon writes into a frames folder (--out FOLDER)
SIDECAR_FILE = "v2vz.json"  # the take's record the client writes beside those frames
MASK_OF = "v2vz_mask_of"  # on a "show mask" strip: the name of the take whose masks it shows
MASK_SUFFIX = " (mask)"


def take_name(prompt: str, preview: bool = False) -> str:
    """The strip name of a take: its prompt, cut at a word to a readable length (marked "..."), " (preview)" for a
    preview, within Blender's name limit (bytes, not characters)."""
    text = " ".join(prompt.split()) or "v2vz"
    cut = len(text) > READABLE
    if cut:
        text = text[:READABLE].rsplit(" ", 1)[0] if " " in text[: READABLE + 1] else text[:READABLE]
    suffix = PREVIEW_SUFFIX if preview else ""
    room = NAME_BYTES - len(suffix.encode("utf-8"))
    while len((text + ("..." if cut else "")).encode("utf-8")) > room:
        text, cut = text[:-1], True
    return (text.rstrip(" ,.;:-") + "..." if cut else text) + suffix


def mask_name(take: str) -> str:
    """The name of a take's mask strip: the take's, " (mask)", within Blender's name limit."""
    while len((take + MASK_SUFFIX).encode("utf-8")) > NAME_BYTES:
        take = take[:-1]
    return take + MASK_SUFFIX


def is_take(strip) -> bool:
    return bool(strip is not None and strip.get(TAKE_OF))


def info(strip) -> dict:
    """A take's recorded fields (FIELDS), plus its strip name, channel, range and whether it is the active take."""
    found = {name: strip.get(KEY[name]) for name in FIELDS}
    found["take"] = int(found["take"] or 0)
    found["preview"] = bool(found["preview"])
    for name in ("source", "prompt", "source_prompt", "model", "time", "job", "folder"):
        found[name] = str(found[name] or "")
    return {
        **found,
        "name": strip.name,
        "channel": strip.channel,
        "start": compat.left_handle(strip),
        "end": compat.right_handle(strip),
        "active": not strip.mute,
        "take_of": str(strip.get(TAKE_OF, "")),
    }


def group_of(strip) -> str:
    """The id that groups a strip with its takes: a take's source id, a source strip's own id ("": neither)."""
    if strip is None:
        return ""
    return str(strip.get(TAKE_OF) or strip.get(SOURCE_ID) or "")


def takes_in(editor, group: str) -> list:
    """The take strips of a group, by take number (a preview before the final of its number, should both exist)."""
    if not group:
        return []
    found = [strip for strip in compat.strips_all(editor) if str(strip.get(TAKE_OF, "")) == group]
    return sorted(found, key=lambda s: (int(s.get(KEY["take"], 0) or 0), not s.get(KEY["preview"]), s.name))


def take_list(editor, strip) -> list[dict]:
    """The takes of the active strip's group (the strip is their source, or one of them), as `info` dicts."""
    return [info(take) for take in takes_in(editor, group_of(strip))]


def find_source(editor, group: str):
    """The source strip of a group, wherever it was moved and whatever it is called now; None once deleted."""
    for strip in compat.strips_all(editor):
        if not is_take(strip) and str(strip.get(SOURCE_ID, "")) == group:
            return strip
    return None


def source_of(editor, strip):
    """The strip a re-prompt edits: a take re-prompts its source strip (a new take of it); any other strip is a
    source itself. ReportError for a take whose source strip was deleted."""
    if not is_take(strip):
        return strip
    source = find_source(editor, str(strip[TAKE_OF]))
    if source is None:
        raise ReportError(
            f"{strip.name!r} is a take of {strip.get(KEY['source'], 'a strip')!r}, which is no longer in the "
            "sequencer: re-prompt a movie or image strip"
        )
    return source


def source_id(editor, strip) -> str:
    """The stable id of a source strip, made on its first take. A copy of a source strip (Shift+D copies its
    properties) that is re-prompted gets an id of its own: the strip its takes were made from keeps the old one."""
    current = str(strip.get(SOURCE_ID, ""))
    if current:
        others = [
            other
            for other in compat.strips_all(editor)
            if other != strip and not is_take(other) and other.get(SOURCE_ID) == current
        ]
        if not others:
            return current
        names = {str(take.get(KEY["source"], "")) for take in takes_in(editor, current)}
        if strip.name in names and not any(other.name in names for other in others):
            return current
    strip[SOURCE_ID] = uuid.uuid4().hex
    return str(strip[SOURCE_ID])


def next_take(editor, source) -> int:
    """Give the source strip's next take number: above every number it gave and every take of it still there."""
    group = source_id(editor, source)
    numbers = [int(take.get(KEY["take"], 0) or 0) for take in takes_in(editor, group)]
    number = max([int(source.get(TAKE_COUNTER, 0) or 0), *numbers]) + 1
    source[TAKE_COUNTER] = number
    return number


def give_back(source, number: int) -> None:
    """A take that never reached the timeline: its number is free again if no later one was given meanwhile."""
    if source is not None and int(source.get(TAKE_COUNTER, 0) or 0) == number:
        source[TAKE_COUNTER] = number - 1


def fields(source_name: str, number: int, options: dict, preview: bool, folder: str, job: str = "") -> dict:
    """The fields a new take records (FIELDS)."""
    return {
        "source": source_name,
        "take": number,
        "prompt": str(options.get("prompt", "")).strip(),
        "source_prompt": str(options.get("source_prompt", "")).strip(),
        "model": str(options.get("model", "")).strip(),
        "time": now(),
        "job": job,
        "preview": preview,
        "folder": folder,
    }


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def record(strip, group: str, values: dict) -> None:
    """Write a take's fields onto its strip; a preview gets a colour tag."""
    strip[TAKE_OF] = group
    for name in FIELDS:
        value = values.get(name)
        if name == "preview":
            strip[KEY[name]] = bool(value)
        elif name == "take":
            strip[KEY[name]] = int(value or 0)
        else:
            strip[KEY[name]] = str(value or "")
    if hasattr(strip, "color_tag"):
        strip.color_tag = PREVIEW_COLOR if values.get("preview") else "NONE"


def activate(editor, strip) -> list[str]:
    """Make `strip` the active take of its group: unmute it, mute the group's other takes. Returns the names muted."""
    group = group_of(strip)
    if not is_take(strip):
        raise ReportError(f"{strip.name!r} is not a v2vz take")
    muted = []
    for take in takes_in(editor, group):
        if take == strip:
            take.mute = False
        elif not take.mute:
            take.mute = True
            muted.append(take.name)
    return muted


def find_take(editor, group: str, number: int, preview: bool | None = None, name: str = ""):
    """A take by its name if that strip is still the take (group, number), else by (group, number, preview)."""
    candidate = compat.strips_all(editor).get(name) if name else None
    if (
        candidate is not None
        and str(candidate.get(TAKE_OF, "")) == group
        and int(candidate.get(KEY["take"], 0) or 0) == number
    ):
        return candidate
    for take in takes_in(editor, group):
        if int(take.get(KEY["take"], 0) or 0) != number:
            continue
        if preview is None or bool(take.get(KEY["preview"])) == preview:
            return take
    return None


def frames_folder(strip) -> str:
    """The folder of a take's frames: the one its strip shows (a saved .blend keeps it relative, so it follows a
    moved project) when that is still the recorded job folder (same name), else the recorded one ("": none)."""
    recorded = os.path.normpath(str(strip.get(KEY["folder"]))) if strip.get(KEY["folder"]) else ""
    shown = os.path.normpath(bpy.path.abspath(strip.directory)) if getattr(strip, "directory", "") else ""
    if recorded and shown and os.path.basename(shown) == os.path.basename(recorded):
        return shown
    return recorded


def remove_frames(folder: str) -> list[str]:
    """Delete what a job of this extension wrote into its frames folder (v2vz_host.remove_job_files: the daemon's
    `frame_NNNNNN.png`, the client's `v2vz.json`), then the folder if nothing else is left in it."""
    return v2vz_host.remove_job_files(folder)
