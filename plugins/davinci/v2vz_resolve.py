"""The Resolve menu script's body: what `v2vz Re-prompt clip.py` (the launcher in Resolve's Scripts/Edit folder) runs.

It edits the selected clips (or the video clip under the playhead) with v2vz and places the edited frames over the
clip, at the same record frame and with the same duration: the original clip stays untouched underneath. The first
edit of a clip goes on a new video track; each later one becomes a take of that v2vz item (TimelineItem.AddTake),
selected, so that the editor flips takes in the timeline; a Resolve without takes (or that refuses one) gets a new
track per edit. A preview (`preview: yes`, or the dialog's Preview) is placed at once, its final made by the same run
(`v2vz final JOB`) and put in the preview's place, and the preview's frames folder removed.

This module stays in the v2vz installation (plugins/davinci/), so upgrading v2vz upgrades the script: the launcher
finds it through the `v2vz-client.txt` that `v2vz plugin install resolve` writes beside the launcher, and sets
LAUNCHER_FOLDER before running it. Standard library only: Resolve runs menu scripts in the user's own Python. The
client is run and its events read by v2vz_host.py (shared with the Blender extension and `v2vz timeline`), which
also holds the marker grammar (docs/markers.md) and builds the command lines; this module is Resolve's side only.

Prompts come from a dialog where Resolve offers one (Studio), else from a marker named `v2vz` on the clip
(docs/markers.md). The free edition of Resolve 21.1 and later runs Lua only: `v2vz Re-prompt clip.lua` does the same
there. See plugins/davinci/README.md.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import importlib.util
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Callable

PROMPT_MARKER = "v2vz"
JOB_MARKER = "v2vz job"
BIN_NAME = "v2vz"
CLIENT_FILE = "v2vz-client.txt"  # by the installer: line 1 the client's path, line 2 the folder of v2vz_host.py
HOST_FILE = "v2vz_host.py"
HOST_MODULE_NAME = "_v2vz_host_of_the_resolve_script"
HOST_LIB_ENV = "V2VZ_HOST_LIB"  # overrides line 2: a folder holding v2vz_host.py, or the file itself
STATE_FILE = "v2vz-state.json"
# Resolve's clip colours (it has no red): running, done, done with a placement to check, failed.
COLOR_RUNNING, COLOR_DONE, COLOR_CHECK, COLOR_FAILED = "Orange", "Green", "Yellow", "Pink"
JOB_MARKER_COLOR = "Yellow"
REFUSED_TYPES = ("compound", "generator", "title", "timeline", "fusion", "multicam", "adjustment")
MODELS_WAIT = 5.0  # seconds the Studio dialog waits at most for `v2vz models --json` before it opens without them
MATTE_ABOVE = "above"
MASK_SUFFIX = "-mask"  # the job folder's sibling the masks go to
MARKER_KEYS = (
    "job",
    "dir",
    "kind",
    "prompt",
    "preview_job",
    "preview_dir",
    "mask_dir",
)  # the job marker's customData (JSON)
TRACK_NAME = "v2vz"
LABEL_LENGTH = 60  # of a prompt in a take's name


class Refused(Exception):
    """A clip or a request this script will not edit; the message says why and what to do."""


def say(message: str, dialog=None) -> None:
    """One line on Resolve's console (Workspace > Console) and, in Studio, in the progress window."""
    print(f"v2vz: {message}", flush=True)
    if dialog is not None:
        dialog.status(message)


# ---------------------------------------------------------------------------------------------------------------
# The client, through v2vz_host


def script_folder() -> Path | None:
    """The launcher's folder (Resolve's Scripts/Edit, where v2vz-client.txt is); this module's own when run alone."""
    if LAUNCHER_FOLDER is not None:
        return Path(LAUNCHER_FOLDER)
    here = globals().get("__file__")
    return Path(here).resolve().parent if here else None


def host_candidates() -> list[Path]:
    """Where v2vz_host.py may be: $V2VZ_HOST_LIB, the folder on line 2 of the launcher's v2vz-client.txt, this
    installation's plugins/host (beside this module's folder), beside this module."""
    candidates = []
    explicit = os.environ.get(HOST_LIB_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        candidates.append(path if path.suffix == ".py" else path / HOST_FILE)
    folder = script_folder()
    if folder is not None:
        try:
            lines = (folder / CLIENT_FILE).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeError):
            lines = []
        if len(lines) > 1 and lines[1].strip():
            candidates.append(Path(lines[1].strip()) / HOST_FILE)
    here = globals().get("__file__")
    if here:
        candidates += [Path(here).resolve().parent.parent / "host" / HOST_FILE, Path(here).resolve().parent / HOST_FILE]
    return candidates


def load_host():
    """The v2vz_host module, or None. Loaded from its file (importlib): Resolve's sys.path and sys.modules, which
    every script shares, stay as they are."""
    for path in host_candidates():
        if path.is_file():
            spec = importlib.util.spec_from_file_location(HOST_MODULE_NAME, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[HOST_MODULE_NAME] = module  # only while it runs: its dataclasses look their module up
            try:
                spec.loader.exec_module(module)
            finally:
                sys.modules.pop(HOST_MODULE_NAME, None)
            return module
    return None


LAUNCHER_FOLDER = globals().get("LAUNCHER_FOLDER")  # set by the launcher before this module runs
host = load_host()
HOST_MISSING = (
    f"cannot find {HOST_FILE}, the part of v2vz this script runs the client with: run `v2vz plugin install resolve` "
    "again"
)


def client_command() -> str:
    """The v2vz client: $V2VZ_CLIENT, the path the installer wrote next to this script, or the PATH."""
    folder = script_folder()
    found = host.find_client(client_file=folder / CLIENT_FILE if folder is not None else None)
    if found:
        return found
    raise Refused(
        "cannot find the v2vz client: run `v2vz plugin install resolve` again, or set V2VZ_CLIENT to the path of "
        "the `v2vz` command"
    )


def output_root() -> Path:
    """Where the edited frames go: $V2VZ_OUTPUT_DIR, else ~/v2vz/resolve (one folder per job)."""
    explicit = os.environ.get("V2VZ_OUTPUT_DIR", "").strip()
    return Path(explicit).expanduser() if explicit else Path.home() / "v2vz" / "resolve"


def run_client(args: list[str], on_event: Callable[[dict], None]) -> host.ClientRun:
    """Run `v2vz <args> --events jsonl` to its end, calling on_event(dict) for every event as it comes; returns
    the host.ClientRun (its `state`: job id, terminal event, typed error, exit status)."""
    client = client_command()
    run = host.run_client(host.events_command(client, args), on_event)
    if run.start_error:
        raise Refused(
            f"cannot start the v2vz client {client} ({run.start_error}): run `v2vz plugin install resolve` again, "
            "or set V2VZ_CLIENT"
        )
    return run


class Progress:
    """Turns job events into a few lines: each stage once, then every quarter of it."""

    def __init__(self, clip_name: str, dialog=None) -> None:
        self.clip_name, self.dialog = clip_name, dialog
        self.shown: set[tuple[int, str, int]] = set()

    def __call__(self, event: dict) -> None:
        kind = event.get("type")
        if kind == host.EventType.SUBMITTED:  # a new job (a preview's final follows its preview): its own lines
            self.shown.clear()
            say(f"'{self.clip_name}': job {event.get('job_id')} submitted", self.dialog)
        elif kind == host.EventType.QUEUED:
            position = event.get("position") or 0
            say(f"'{self.clip_name}': queued" + (f" behind {position} job(s)" if position else ""), self.dialog)
        elif kind == host.EventType.PROGRESS:
            stage, step, total = str(event.get("stage", "")), int(event.get("step") or 0), int(event.get("total") or 0)
            quarter = 4 * step // total if total > 0 else 0
            window = int(event.get("window") or 0)
            if (window, stage, quarter) not in self.shown:  # long clips go window by window: each shows its stages
                self.shown.add((window, stage, quarter))
                say(f"'{self.clip_name}': {host.progress_text(event)}", self.dialog)


# ---------------------------------------------------------------------------------------------------------------
# The clip


def to_float(value) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def video_items(timeline) -> list:
    items = []
    for index in range(1, int(timeline.GetTrackCount("video") or 0) + 1):
        items.extend(timeline.GetItemListInTrack("video", index) or [])
    return items


def same_item(a, b) -> bool:
    if a is b or a == b:
        return True
    return (a.GetStart(), a.GetEnd(), a.GetName()) == (b.GetStart(), b.GetEnd(), b.GetName())


def target_items(timeline, media_pool) -> list:
    """The selected video clips where the API has GetSelectedClips (21.0.4+), else the video clip under the playhead.
    A v2vz result stands for the clip it was made from (the playhead finds the topmost item: the result)."""
    chosen = []
    if "GetSelectedClips" in dir(timeline):
        selected = timeline.GetSelectedClips() or []
        if isinstance(selected, dict):
            selected = list(selected.values())
        on_video = video_items(timeline)
        chosen = [item for item in selected if any(same_item(item, other) for other in on_video)]
    if not chosen:
        current = timeline.GetCurrentVideoItem()
        if not current:
            raise Refused(
                "no clip to edit: select a video clip on the timeline or park the playhead over one, then run "
                "Workspace > Scripts > Edit > v2vz Re-prompt clip again"
            )
        chosen = [marked_below(timeline, current)]
    targets: list = []
    for item in chosen:
        source = source_of(timeline, media_pool, item)
        if not any(same_item(source, other) for other in targets):
            targets.append(source)
    return targets


def has_prompt_marker(item) -> bool:
    return any(str(m.get("name", "")).strip().lower() == PROMPT_MARKER for m in markers_of(item).values())


def marked_below(timeline, current):
    """The clip under the playhead: the topmost one, unless it has no `v2vz` marker and a clip under it does (a matte
    on the track above the clip): then the topmost such clip below."""
    if has_prompt_marker(current):
        return current
    start, end = int(current.GetStart()), int(current.GetEnd())
    for index in range(track_of(timeline, current) - 1, 0, -1):
        for other in timeline.GetItemListInTrack("video", index) or []:
            if int(other.GetStart()) < end and int(other.GetEnd()) > start and has_prompt_marker(other):
                return other
    return current


def source_of(timeline, media_pool, item):
    """The clip a v2vz result was made from: the topmost item under it with its record frame and duration that is
    no v2vz result (re-prompting a result re-prompts its clip); any other item is itself."""
    ours = v2vz_folders(media_pool)
    if not is_result(item, ours):
        return item
    span = (int(item.GetStart()), int(item.GetDuration()))
    for index in range(track_of(timeline, item) - 1, 0, -1):
        for other in timeline.GetItemListInTrack("video", index) or []:
            if (int(other.GetStart()), int(other.GetDuration())) == span and not is_result(other, ours):
                return other
    return item


def clip_range(item, timeline_fps: float | None) -> dict:
    """The clip's media file and the source frames it uses on the timeline, or Refused with the reason."""
    name = item.GetName() or "this clip"
    media = item.GetMediaPoolItem()
    if not media:
        raise Refused(f"'{name}' is a generator, title or compound item: v2vz edits clips made from a video file")
    kind = str(media.GetClipProperty("Type") or "")
    if any(word in kind.lower() for word in REFUSED_TYPES):
        raise Refused(f"'{name}' is a {kind} item: v2vz edits clips made from a video file")
    path = str(media.GetClipProperty("File Path") or "")
    if not path:
        raise Refused(f"'{name}' has no media file (a generator, title or compound item): v2vz edits video files")
    duration = int(item.GetDuration() or 0)
    if "GetSourceStartFrame" in dir(item):
        start, end = item.GetSourceStartFrame(), item.GetSourceEndFrame()
    else:
        start, end = item.GetLeftOffset(), None
    if start is None or duration <= 0:
        raise Refused(f"Resolve did not give the source range of '{name}'")
    start = int(round(float(start)))
    if end is not None:
        span = int(round(float(end))) - start
        if span < 0:
            raise Refused(f"'{name}' plays in reverse: v2vz edits clips at normal speed; remove the reverse first")
        if abs(span - duration) > 1:
            raise Refused(
                f"'{name}' is retimed (it uses {span} source frames for {duration} timeline frames): v2vz edits "
                "clips at 100% speed; reset its speed first"
            )
    fps = to_float(media.GetClipProperty("FPS"))
    if fps and timeline_fps and abs(fps - timeline_fps) > 0.01:
        raise Refused(
            f"'{name}' is {fps:g} fps on a {timeline_fps:g} fps timeline: v2vz places frames one for one, so the "
            "media and the timeline need the same frame rate"
        )
    return {
        "name": name,
        "path": path,
        "start": start,
        "frames": duration,
        "fps": fps,
        "record": int(item.GetStart()),
        "duration": duration,
    }


def markers_of(item) -> dict:
    markers = item.GetMarkers() or {}
    return markers if isinstance(markers, dict) else {}


def prompts_from_marker(item, name: str):
    """What the clip's `v2vz` marker asks for (host.MarkerPrompts: docs/markers.md), or Refused that says exactly what
    to add or fix."""
    found = [m for m in markers_of(item).values() if str(m.get("name", "")).strip().lower() == PROMPT_MARKER]
    if not found:
        raise Refused(f"no v2vz marker on '{name}': {host.marker_help()}")
    return read_marker(f"{found[0].get('name', '')}\n{found[0].get('note', '')}", f"the v2vz marker on '{name}'")


def read_marker(text: str, where: str):
    """parse_marker's fields, or Refused with its one line (`where`: what the text is, for the message)."""
    try:
        prompts = host.parse_marker(text)
    except host.MarkerError as exc:
        raise Refused(f"{where}: {exc}") from None
    if prompts.ignored:
        say(f"{where}: ignored {', '.join(repr(line) for line in prompts.ignored)} (not a v2vz key: docs/markers.md)")
    return prompts


# ---------------------------------------------------------------------------------------------------------------
# A local edit: edit-only words, a matte (a file, or the clip on the track above), self-replace, the saved masks


def local_edit(timeline, item, clip: dict, prompts, job: dict, timeline_fps: float | None):
    """The host.LocalEdit the prompts (host.MarkerPrompts) ask for, with Resolve's matte (`above`: the clip on the
    track above) and the files made absolute (the client runs in Resolve's working folder); Refused (one line) for a
    matte that cannot be used or a value the client would refuse. "show mask" saves the masks beside the job's folder
    (`job["mask_dir"]`), not for a preview: its final would write them again."""
    name = clip["name"]
    local = host.LocalEdit(edit_only=prompts.edit_only.strip(), self_replace=prompts.self_replace)
    local.loras = loras_of(name, prompts.loras)
    matte = prompts.matte.strip()
    if matte.lower() == MATTE_ABOVE:
        local.matte, local.matte_start = matte_above(timeline, item, clip, timeline_fps)
    elif matte:
        path = Path(matte).expanduser()
        if not path.exists():
            raise Refused(f"the matte {matte} of '{name}' does not exist: give the path of a video, image or folder")
        local.matte, local.matte_start = str(path.resolve()), prompts.matte_start
    if prompts.show_mask and not prompts.preview:
        if not local.local:
            raise Refused(f"'{name}': show mask needs a local edit: add an 'edit only: WORDS' or a 'matte:' line")
        job["mask_dir"] = job["dir"] + MASK_SUFFIX
        local.save_mask = job["mask_dir"]
    problem = local.problem()
    if problem:
        raise Refused(f"'{name}': {problem}")
    return local


def loras_of(name: str, entries: list[str]) -> list[str]:
    """The `PATH[:SCALE]` entries of the `lora:` lines, each file made absolute (the client runs in Resolve's working
    folder); Refused for a file that does not exist."""
    loras = []
    for entry in entries:
        path = host.lora_path(entry)
        if not path:
            raise Refused(f"the v2vz marker on '{name}' has a LoRA without a path: write 'lora: PATH' or PATH:SCALE")
        found = Path(path).expanduser()
        if not found.is_file():
            raise Refused(f"the LoRA {path} of '{name}' does not exist: give the path of a .safetensors file")
        loras.append(str(found.resolve()) + entry.strip()[len(path) :])
    return loras


def matte_above(timeline, item, clip: dict, timeline_fps: float | None) -> tuple[str, int]:
    """(--matte, --matte-start) of the clip on the track right above the source that covers its range (no v2vz
    result): its media file and the frame of it that plays with the source's first frame."""
    name, track = clip["name"], track_of(timeline, item) + 1
    end = clip["record"] + clip["duration"]
    for other in timeline.GetItemListInTrack("video", track) or []:
        if int(other.GetStart()) < end and int(other.GetEnd()) > clip["record"]:
            matte = clip_range(other, timeline_fps)
            try:
                frame = host.aligned_matte_frame(
                    clip["record"], clip["duration"], matte["record"], matte["duration"], matte["start"]
                )
            except ValueError as exc:
                raise Refused(f"the matte '{matte['name']}' over '{name}' on video track {track}: {exc}") from None
            return matte_file(other.GetMediaPoolItem(), matte["path"], frame)
    raise Refused(
        f"'{name}' asks for the matte above it, but video track {track} has no clip over its frames: put the matte "
        "there over the whole clip, or write 'matte: PATH'"
    )


def matte_file(media, path: str, frame: int) -> tuple[str, int]:
    """A matte clip's file for the client: a video and its frame; a still (frame 0); an image sequence's image of
    that frame (Resolve names it `name_[0001-0100].png` or `name_%04d.png`), the sequence going on from there."""
    if "still" in str(media.GetClipProperty("Type") or "").lower():
        return path, 0
    ranged = re.search(r"\[(\d+)-(\d+)\]", path)
    if ranged:
        number = str(int(ranged.group(1)) + frame).zfill(len(ranged.group(1)))
        return path[: ranged.start()] + number + path[ranged.end() :], 0
    if re.search(r"%0?\d*d", path):
        return path % frame, 0
    return path, frame


def import_masks(media_pool, job: dict, clip: dict, dialog) -> str:
    """ "show mask": the job's saved masks (numbered like the source's frames) as one image sequence in the v2vz
    bin, named after the edit. Returns its name, "" when there are none."""
    folder = Path(job.get("mask_dir") or "")
    files = host.mask_files(folder, clip["start"], clip["frames"]) if job.get("mask_dir") else []
    if not files or not all(Path(path).is_file() for path in files):
        if files:
            say(f"'{clip['name']}': no masks to import in {folder}", dialog)
        return ""
    target = v2vz_bin(media_pool)
    entry = {"FilePath": str(folder / host.MASK_FILE), "StartIndex": clip["start"]}
    entry["EndIndex"] = clip["start"] + clip["frames"] - 1
    imported = media_pool.ImportMedia([entry]) if target and media_pool.SetCurrentFolder(target) else None
    if not imported:
        say(f"'{clip['name']}': Resolve did not import the masks in {folder}", dialog)
        return ""
    label = take_label(job).replace("v2vz: ", "v2vz mask: ", 1)
    if "SetClipProperty" in dir(imported[0]):
        imported[0].SetClipProperty("Clip Name", label)
    say(f"'{clip['name']}': its masks are in the {BIN_NAME} bin ({label})", dialog)
    return label


# ---------------------------------------------------------------------------------------------------------------
# Job markers: the job id on the clip, so that running the script again re-attaches


def job_markers(item) -> list[dict]:
    """The clip's `v2vz job` markers (newest first) as {"frame", "job", "dir", "kind", "prompt", "submitted"} (a
    final also has "preview_job" and "preview_dir"; a marker of an older script has no kind: an edit)."""
    jobs = []
    for frame, marker in markers_of(item).items():
        if str(marker.get("name", "")).strip().lower() != JOB_MARKER:
            continue
        data = str(marker.get("customData", "") or "")
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = {"job": data.strip()}
        if isinstance(parsed, dict) and parsed.get("job"):
            jobs.append({"kind": host.KIND_EDIT, **parsed, "frame": frame})
    return sorted(jobs, key=lambda job: str(job.get("submitted", "")), reverse=True)


def job_state(job: dict) -> str | None:
    """ "placed", "failed", "lost" once the script has finished with the job, else None (it may still run)."""
    folder = job.get("dir")
    if not folder:
        return None
    try:
        return json.loads((Path(folder) / STATE_FILE).read_text(encoding="utf-8")).get("state")
    except (OSError, ValueError, AttributeError):
        return None


def running_jobs(item) -> list[dict]:
    """The clip's jobs that may still run, newest first: no state file says how they ended, and none is a preview
    that a final was made of (its folder goes once the final replaced it)."""
    jobs = job_markers(item)
    made_final = {job.get("preview_job") for job in jobs if job.get("kind") == host.KIND_FINAL}
    return [job for job in jobs if job_state(job) is None and job["job"] not in made_final]


def finish_job(folder: Path | None, job_id: str, state: str) -> None:
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATE_FILE).write_text(json.dumps({"job": job_id, "state": state}), encoding="utf-8")
    except OSError:
        pass


def add_job_marker(item, job: dict) -> bool:
    """A `v2vz job` marker on the first free frame of the clip; the prompt marker is left as it is. A clip with no
    free frame loses its oldest finished job's marker (Resolve has one marker per frame)."""
    used = {int(float(frame)) for frame in markers_of(item)}
    duration = int(item.GetDuration() or 1)
    frame = next((f for f in range(duration) if f not in used), None)
    if frame is None:
        frame = free_marker_frame(item)
    data = {key: job[key] for key in MARKER_KEYS if job.get(key)}
    data["submitted"] = datetime.datetime.now().isoformat()
    what = {host.KIND_PREVIEW: " (preview)", host.KIND_FINAL: f" (final of preview {job.get('preview_job')})"}
    what = what.get(job["kind"], "")
    note = f"v2vz job {job['job']}{what}: {job.get('prompt', '')}"
    return frame is not None and bool(item.AddMarker(frame, JOB_MARKER_COLOR, JOB_MARKER, note, 1, json.dumps(data)))


def free_marker_frame(item) -> int | None:
    """The frame of the clip's oldest finished job marker, deleted to make room; None when there is none."""
    if "DeleteMarkerAtFrame" not in dir(item):
        return None
    running = {job["job"] for job in running_jobs(item)}
    for job in reversed(job_markers(item)):
        if job["job"] not in running and item.DeleteMarkerAtFrame(job["frame"]):
            return int(float(job["frame"]))
    return None


# ---------------------------------------------------------------------------------------------------------------
# Placing the result: a take of the v2vz item over the clip, else a clip on a new track


class NoTakes(Exception):
    """This Resolve cannot add the edit as a take (no TimelineItem.AddTake, or it refused): a new track instead."""


def find_bin(media_pool):
    """The v2vz bin of the media pool, or None."""
    root = media_pool.GetRootFolder()
    for folder in (root.GetSubFolderList() or []) if root else []:
        if folder.GetName() == BIN_NAME:
            return folder
    return None


def v2vz_bin(media_pool):
    """The v2vz bin, made when there is none (None: Resolve refused)."""
    return find_bin(media_pool) or media_pool.AddSubFolder(media_pool.GetRootFolder(), BIN_NAME)


def is_result(item, ours: set[str]) -> bool:
    """Whether a timeline item is a v2vz result: its clip, or one of its takes, is in the v2vz bin (`ours`)."""
    if file_folder(item.GetMediaPoolItem()) in ours:
        return True
    count = int(item.GetTakesCount() or 0) if "GetTakesCount" in dir(item) else 0
    takes = [item.GetTakeByIndex(index) for index in range(1, count + 1)]
    return any(isinstance(take, dict) and file_folder(take.get("mediaPoolItem")) in ours for take in takes)


def v2vz_folders(media_pool) -> set[str]:
    """The folders of the v2vz bin's clips: an item whose media is in one of them is a v2vz result."""
    found = find_bin(media_pool)
    clips = (found.GetClipList() or []) if found else []
    return {file_folder(media) for media in clips} - {""}


def norm_folder(path) -> str:
    return os.path.normcase(os.path.normpath(str(path)))


def file_folder(media) -> str:
    """The folder of a media pool item's file ("" when it has none): a frame sequence's job folder."""
    path = str(media.GetClipProperty("File Path") or "") if media else ""
    return norm_folder(os.path.dirname(path)) if path else ""


def in_folder(media, folder) -> bool:
    return bool(folder) and file_folder(media) == norm_folder(folder)


def take_label(job: dict) -> str:
    """The name of an edit's clip in the media pool, which the take selector shows: its prompt."""
    prompt = " ".join(str(job.get("prompt") or "").split())
    prompt = prompt if len(prompt) <= LABEL_LENGTH else prompt[: LABEL_LENGTH - 3] + "..."
    return f"v2vz: {prompt}" + (" (preview)" if job.get("kind") == host.KIND_PREVIEW else "")


def import_frames(media_pool, frame_paths: list[str], label: str, comment: str):
    """The job's PNG frames as one image sequence in the v2vz bin, named `label`; `comment` in its Comments."""
    folder, count = Path(frame_paths[0]).parent, len(frame_paths)
    target = v2vz_bin(media_pool)
    if not target or not media_pool.SetCurrentFolder(target):
        raise Refused(f"cannot create or open the {BIN_NAME!r} bin in the media pool")
    imported = media_pool.ImportMedia(
        [{"FilePath": str(folder / host.FRAME_PATTERN), "StartIndex": 0, "EndIndex": count - 1}]
    )
    if not imported:
        raise Refused(f"Resolve did not import the {count} frames in {folder}")
    media = imported[0]
    if "SetClipProperty" in dir(media):
        media.SetClipProperty("Clip Name", label)
    if "SetMetadata" in dir(media):
        media.SetMetadata("Comments", comment)
    return media


def track_of(timeline, item) -> int:
    """The video track that holds `item` (0: none does)."""
    for index in range(1, int(timeline.GetTrackCount("video") or 0) + 1):
        if any(same_item(item, other) for other in timeline.GetItemListInTrack("video", index) or []):
            return index
    return 0


def items_over(timeline, item, clip: dict) -> list[tuple[int, object]]:
    """(track, item) for each item on a track above the clip with exactly its record frame and duration, topmost
    first."""
    found = []
    for index in range(int(timeline.GetTrackCount("video") or 0), track_of(timeline, item), -1):
        for other in timeline.GetItemListInTrack("video", index) or []:
            if (int(other.GetStart()), int(other.GetDuration())) == (clip["record"], clip["duration"]):
                found.append((index, other))
    return found


def v2vz_item_over(timeline, media_pool, item, clip: dict) -> tuple[int, object] | None:
    """The topmost v2vz result over the clip, (track, item): an item above it with its record frame and duration
    whose media is a clip of the v2vz bin. None: the clip has none yet."""
    ours = v2vz_folders(media_pool)
    for track, other in items_over(timeline, item, clip):
        if is_result(other, ours):
            return track, other
    return None


def take_index_of(target, folder) -> int:
    """The index of the take of `target` whose frames are in `folder` (the last such one), 0 when none is."""
    for index in range(int(target.GetTakesCount() or 0), 0, -1):
        take = target.GetTakeByIndex(index) or {}
        if isinstance(take, dict) and in_folder(take.get("mediaPoolItem"), folder):
            return index
    return 0


def select_take(target, folder, clip: dict) -> tuple[int, list[str]]:
    """Select the take of `target` whose frames are in `folder` and read the item back: (its index, what differs
    from the clip: empty when the take is selected and the item still has the clip's record frame and duration)."""
    index = take_index_of(target, folder)
    if not index:
        return 0, [f"no take of the item holds the frames in {folder}"]
    problems = []
    if int(target.GetSelectedTakeIndex() or 0) != index and not target.SelectTakeByIndex(index):
        problems.append(f"Resolve did not select take {index}")
    selected = int(target.GetSelectedTakeIndex() or 0)
    if selected != index and not problems:
        problems.append(f"take {selected} is selected, not take {index}")
    problems += placement_problems(target, clip)
    return index, problems


def placement_problems(placed, clip: dict) -> list[str]:
    start, length = int(placed.GetStart()), int(placed.GetDuration())
    if (start, length) == (clip["record"], clip["duration"]):
        return []
    return [f"it starts at frame {start} with {length} frames, but the clip starts at {clip['record']} with "
            f"{clip['duration']} frames"]  # fmt: skip


def add_take(target, media, folder, clip: dict) -> tuple[int, list[str]]:
    """Add `media` as a take of the v2vz item `target`, select it and read back: (its index, what differs).

    AddTake gets no extents: by default it adds the clip's full extents, and the sequence is exactly the clip's
    frames. Raises NoTakes where this Resolve cannot (no AddTake, AddTake refused, no take added)."""
    if "AddTake" not in dir(target):
        raise NoTakes("this Resolve has no takes (TimelineItem.AddTake)")
    before = int(target.GetTakesCount() or 0)
    if not target.AddTake(media):
        raise NoTakes("Resolve did not add the edit as a take (AddTake returned False)")
    after = int(target.GetTakesCount() or 0)
    if after <= before:
        raise NoTakes(f"Resolve accepted the take, but the item still has {after} take(s)")
    return select_take(target, folder, clip)


def placement(clip: dict, what: str, track: int, take: int, problems: list[str], verb: str = "is on") -> dict:
    where = f"video track {track}" + (f", take {take}" if take else "")
    if problems:
        message = f"'{clip['name']}': the {what} on {where}: {'; '.join(problems)}: check its placement"
    else:
        message = f"'{clip['name']}': the {what} {verb} {where} at frame {clip['record']}, {clip['duration']} frames"
    return {"exact": not problems, "message": message, "track": track, "take": take or None}


def append_on_track(timeline, media_pool, clip: dict, media, folder, count: int, track: int, what: str, verb="is on"):
    """Append the sequence on video track `track` at the clip's record frame and read the track back."""
    appended = media_pool.AppendToTimeline(
        [
            {
                "mediaPoolItem": media,
                "startFrame": 0,
                "endFrame": count,
                "mediaType": 1,
                "trackIndex": track,
                "recordFrame": clip["record"],
            }
        ]
    )
    placed = timeline.GetItemListInTrack("video", track) or []
    ours = [other for other in placed if in_folder(other.GetMediaPoolItem(), folder)] or placed
    if not appended or not ours:
        raise Refused(f"Resolve did not place the result on video track {track}")
    problems = placement_problems(ours[0], clip) if len(ours) == 1 else [f"the track has {len(ours)} items"]
    return placement(clip, what, track, 0, problems, verb)


def place_on_new_track(timeline, media_pool, clip: dict, media, folder, count: int, what: str) -> dict:
    if not timeline.AddTrack("video"):
        raise Refused("Resolve did not add a video track for the result")
    track = int(timeline.GetTrackCount("video"))
    timeline.SetTrackName("video", track, TRACK_NAME)
    return append_on_track(timeline, media_pool, clip, media, folder, count, track, what)


def place_edit(timeline, media_pool, item, clip: dict, media, folder, count: int, what: str, note) -> dict:
    """An edit (or a preview): a take of the v2vz item over the clip where there is one and Resolve has takes,
    else a clip on a new video track (the first edit, or a Resolve without takes: `note` says so)."""
    over = v2vz_item_over(timeline, media_pool, item, clip)
    if over is not None:
        track, target = over
        try:
            take, problems = add_take(target, media, folder, clip)
        except NoTakes as exc:
            note(f"'{clip['name']}': {exc}: the {what} goes on a new track instead")
        else:
            return placement(clip, what, track, take, problems)
    return place_on_new_track(timeline, media_pool, clip, media, folder, count, what)


def find_preview(timeline, item, clip: dict, preview_dir) -> tuple[int, object, int] | None:
    """Where the preview is over the clip: (track, item, its take index, 0 for a clip of its own), or None."""
    for track, other in items_over(timeline, item, clip):
        if "GetTakesCount" in dir(other) and int(other.GetTakesCount() or 0):
            take = take_index_of(other, preview_dir)
            if take:
                return track, other, take
        elif in_folder(other.GetMediaPoolItem(), preview_dir):
            return track, other, 0
    return None


def replace_preview(timeline, media_pool, item, clip: dict, media, folder, count: int, preview_dir, note) -> dict:
    """The final in the preview's place: the preview's take replaced by the final's take, or the preview's clip
    deleted and the final appended on its track at the same record frame. "preview_kept": the preview is still on
    the timeline (Resolve refused to take it off: the final went on a new track)."""
    name = clip["name"]
    found = find_preview(timeline, item, clip, preview_dir)
    if found is None:
        note(f"'{name}': the preview is no longer over the clip: placing the final as a new edit")
        return place_edit(timeline, media_pool, item, clip, media, folder, count, "final", note)
    track, target, preview_take = found
    if preview_take:
        try:
            add_take(target, media, folder, clip)
        except NoTakes as exc:
            note(f"'{name}': {exc}: the final goes on a new track and the preview stays")
            kept = place_on_new_track(timeline, media_pool, clip, media, folder, count, "final")
            return {**kept, "preview_kept": True}
        if not target.DeleteTakeByIndex(preview_take):
            take, problems = select_take(target, folder, clip)
            problems.append(f"Resolve did not delete the preview's take {preview_take}")
            return {**placement(clip, "final", track, take, problems), "preview_kept": True}
        take, problems = select_take(target, folder, clip)  # the indexes after the preview's moved down
        return placement(clip, "final", track, take, problems, "replaced the preview on")
    if "DeleteClips" not in dir(timeline) or not timeline.DeleteClips([target], False):
        note(f"'{name}': Resolve did not take the preview off video track {track}: the final goes on a new track")
        kept = place_on_new_track(timeline, media_pool, clip, media, folder, count, "final")
        return {**kept, "preview_kept": True}
    return append_on_track(timeline, media_pool, clip, media, folder, count, track, "final", "replaced the preview on")


def drop_preview(media_pool, preview_dir: Path) -> None:
    """Once the final replaced it: the preview's clip leaves the v2vz bin and its folder goes. Only what the job
    made there goes (host.remove_job_files: its PNG frames, the client's record, this script's state file): the
    folder stays when anything else is in it."""
    found = find_bin(media_pool)
    clips = [media for media in (found.GetClipList() or [] if found else []) if in_folder(media, preview_dir)]
    if clips and "DeleteClips" in dir(media_pool):
        media_pool.DeleteClips(clips)
    host.remove_job_files(preview_dir, also=(STATE_FILE,))


# ---------------------------------------------------------------------------------------------------------------
# One clip


def job_folder(clip: dict) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(clip["path"]).stem)[:40] or "clip"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return output_root() / f"{stem}-{clip['start']}-{clip['frames']}-{stamp}"


def ask(dialog, item, name: str):
    """The Studio dialog, filled from the clip's marker where it has a usable one: host.MarkerPrompts, or None
    (cancelled). What it gives is read as a marker (host.marker_text), so it is checked and refused the same way."""
    try:
        marked = prompts_from_marker(item, name)
    except Refused:
        marked = host.MarkerPrompts()
    options = list(marked.options) + (["--matte-start", str(marked.matte_start)] if marked.matte_start else [])
    defaults = {
        "source": marked.source,
        "prompt": marked.prompt,
        "options": " ".join(shlex.quote(word) for word in options),
        "edit_only": marked.edit_only,
        "matte": marked.matte,
        "self_replace": f"{marked.self_replace:g}" if marked.self_replace else "",
        "model": marked.model,
        "loras": f"{host.LORA_SEPARATOR} ".join(marked.loras),
        "preview": marked.preview,
        "show_mask": marked.show_mask,
    }
    answer = dialog.ask(name, defaults)
    if answer is None:
        return None
    if not answer["source"] or not answer["prompt"]:
        raise Refused("the dialog needs both what the clip shows and the edit")
    fields = {key: answer.get(key, "") for key in ("source", "prompt", "options", "edit_only", "matte", "model")}
    fields.update(self_replace=answer.get("self_replace", ""), lora=host.split_loras(answer.get("loras", "")))
    fields.update(
        preview="yes" if answer.get("preview") else "no", show_mask="yes" if answer.get("show_mask") else "no"
    )
    return read_marker(host.marker_text(fields), f"'{name}', the dialog")


def edit_clip(timeline, media_pool, item, timeline_fps: float | None, dialog=None) -> dict:
    """Edit one clip (or re-attach to its job) and place the result; a preview is placed, then its final made and
    put in its place. Returns {"clip", "state", "message", "job", "kind", ...}."""
    name = item.GetName() or "clip"
    clip = clip_range(item, timeline_fps)
    progress = Progress(name, dialog)
    running = running_jobs(item)
    job = running[0] if running else None
    run = reattach(item, job, progress, dialog) if job else None
    if run is None:
        prompts = ask(dialog, item, name) if dialog is not None else prompts_from_marker(item, name)
        if prompts is None:
            return {"clip": name, "state": "cancelled", "message": "cancelled"}
        job = {"kind": host.KIND_PREVIEW if prompts.preview else host.KIND_EDIT, "prompt": prompts.prompt}
        job["dir"] = str(job_folder(clip))
        local = local_edit(timeline, item, clip, prompts, job, timeline_fps)
        request = host.edit_request(prompts, clip["path"], clip["start"], clip["frames"], job["dir"], local)
        last = clip["start"] + clip["frames"] - 1
        what = "a preview of " if prompts.preview else "editing "
        say(f"'{name}': {what}source frames {clip['start']}..{last}", dialog)
        run = submit(item, job, request.args(), progress, dialog)
    result = finish(timeline, media_pool, item, clip, run, job, dialog)
    placed = result["state"] in ("placed", "misplaced")
    if host.next_step(job["kind"], "done" if placed else result["state"], placed) == "final":
        result = make_final(timeline, media_pool, item, clip, job, result, progress, dialog)
    if job.get("mask_dir") and result["state"] in ("placed", "misplaced"):
        result["mask"] = import_masks(media_pool, job, clip, dialog)
    return result


def make_final(timeline, media_pool, item, clip: dict, preview: dict, placed: dict, progress, dialog) -> dict:
    """`v2vz final PREVIEW --out FOLDER --keep-preview` right after the preview is placed (one action from the
    user); its result replaces the preview. The preview's files stay until then: the timeline shows them."""
    final = {"kind": host.KIND_FINAL, "prompt": preview["prompt"], "dir": str(job_folder(clip))}
    final.update(preview_job=placed["job"], preview_dir=preview["dir"])
    say(f"'{clip['name']}': the preview is placed; making its final (job {placed['job']})", dialog)
    run = submit(item, final, host.FinalRequest(placed["job"], final["dir"]).args(), progress, dialog)
    return finish(timeline, media_pool, item, clip, run, final, dialog)


def reattach(item, job: dict, progress: Progress, dialog) -> host.ClientRun | None:
    """Follow the clip's job again: the run, or None when the daemon no longer knows it."""
    name, job_id = item.GetName() or "clip", job["job"]
    folder = Path(job["dir"]) if job.get("dir") else None
    what = {host.KIND_PREVIEW: "preview job", host.KIND_FINAL: "final job"}.get(job.get("kind"), "job")
    say(f"'{name}': re-attaching to {what} {job_id}", dialog)
    item.SetClipColor(COLOR_RUNNING)
    run = run_client(["attach", job_id], progress)
    run.state.job_id = run.state.job_id or job_id
    if run.state.terminal is None and run.error_kind == host.ErrorKind.JOB_NOT_FOUND:
        finish_job(folder, job_id, "lost")  # the daemon no longer knows it: start a new job
        say(f"'{name}': the daemon has no job {job_id} any more; starting a new one", dialog)
        return None
    return run


def submit(item, job: dict, args: list[str], progress: Progress, dialog) -> host.ClientRun:
    """Run `v2vz edit|final ...` into the job's fresh folder to the job's end; a `v2vz job` marker keeps the job id
    (and what the job is) for a re-attach."""
    name = item.GetName() or "clip"
    Path(job["dir"]).mkdir(parents=True, exist_ok=True)
    item.SetClipColor(COLOR_RUNNING)

    def on_event(event: dict) -> None:
        if event.get("type") == host.EventType.SUBMITTED and event.get("job_id"):
            job["job"] = str(event["job_id"])
            if not add_job_marker(item, job):
                say(f"'{name}': could not add the job marker (re-attaching will not find job {job['job']})", dialog)
        progress(event)

    return run_client(args, on_event)


def failure_message(name: str, run: host.ClientRun) -> str:
    """Why a job gave no frames: its failed/cancelled event, else the client's typed `error` line."""
    state = run.state
    terminal, job_id, error = state.terminal or {}, state.job_id, state.error
    if terminal.get("type") in (host.EventType.FAILED, host.EventType.CANCELLED):
        return f"'{name}': job {job_id} {terminal['type']}: {terminal.get('reason') or error}"
    if run.error_kind in host.DAEMON_UNREACHABLE:
        return (
            f"'{name}': the v2vz daemon is not running or not reachable: start it in a terminal with "
            f"`v2vz serve`, then run Workspace > Scripts > Edit > v2vz Re-prompt clip again ({error})"
        )
    if job_id or run.error_kind == host.ErrorKind.JOB_LOST:  # the job may still run: the marker finds it again
        return (
            f"'{name}': lost job {job_id or '(no id)'} before it ended ({error or 'no reason given'}): "
            "run the script again to re-attach"
        )
    return f"'{name}': v2vz could not start the edit: {error or 'no reason given'}"


def finish(timeline, media_pool, item, clip: dict, run: host.ClientRun, job: dict, dialog) -> dict:
    """Place a done job's frames (a final: in its preview's place), or say why there are none; the clip's colour
    and the job's state file follow."""
    name, job_id, kind = clip["name"], run.state.job_id, job.get("kind", host.KIND_EDIT)
    folder = Path(job["dir"]) if job.get("dir") else None
    terminal = run.state.terminal or {}
    extra = {"kind": kind, "preview": job.get("preview_job")} if kind == host.KIND_FINAL else {"kind": kind}
    kept = f" (the final of preview job {job.get('preview_job')}; the preview stays on the timeline)"
    kept = kept if kind == host.KIND_FINAL else ""
    if terminal.get("type") != host.EventType.DONE:
        if terminal.get("type") in (host.EventType.FAILED, host.EventType.CANCELLED):
            finish_job(folder, job_id, terminal["type"])
        elif not job_id and folder is not None:  # never submitted: the fresh folder goes (if nothing is in it)
            with contextlib.suppress(OSError):
                folder.rmdir()
        return failed(item, name, job_id, failure_message(name, run) + kept, dialog, extra)
    paths = [str(p) for p in terminal.get("frame_paths") or []]
    if len(paths) != clip["frames"]:
        finish_job(folder, job_id, "failed")
        message = f"'{name}': job {job_id} wrote {len(paths)} frames, the clip has {clip['frames']}{kept}"
        return failed(item, name, job_id, message, dialog, extra)
    folder = Path(paths[0]).parent

    def note(message: str) -> None:
        say(message, dialog)

    what = {host.KIND_PREVIEW: " (preview)", host.KIND_FINAL: f" (final of preview {job.get('preview_job')})"}.get(
        kind, ""
    )
    comment = f"v2vz job {job_id}{what}"
    try:
        media = import_frames(media_pool, paths, take_label(job), f"{comment}: {job.get('prompt', '')}")
        if kind == host.KIND_FINAL:
            preview_dir = Path(job["preview_dir"])
            placed = replace_preview(timeline, media_pool, item, clip, media, folder, len(paths), preview_dir, note)
        else:
            placed = place_edit(timeline, media_pool, item, clip, media, folder, len(paths), kind, note)
    except Refused as exc:
        finish_job(folder, job_id, "failed")
        return failed(item, name, job_id, f"{exc}{kept}", dialog, extra)
    finish_job(folder, job_id, "placed")
    if kind == host.KIND_FINAL and not placed.get("preview_kept"):
        drop_preview(media_pool, Path(job["preview_dir"]))
    item.SetClipColor(COLOR_DONE if placed["exact"] else COLOR_CHECK)
    say(placed["message"], dialog)
    state = "placed" if placed["exact"] else "misplaced"
    where = {"track": placed["track"], "take": placed["take"]}
    return {"clip": name, "state": state, "job": job_id, "message": placed["message"], **where, **extra}


def failed(item, name: str, job_id: str, message: str, dialog, extra: dict | None = None) -> dict:
    """The clip turns Pink and the console says why: one clip's failed result."""
    item.SetClipColor(COLOR_FAILED)
    say(message, dialog)
    return {"clip": name, "state": "failed", "job": job_id, "message": message, **(extra or {})}


# ---------------------------------------------------------------------------------------------------------------
# The Studio dialog (UIManager); the free edition has none and uses the marker


class Dialog:
    """A prompt dialog and a progress window through Resolve's UIManager (Studio only)."""

    def __init__(self, ui, dispatcher, models=None) -> None:
        self.ui, self.disp, self.window = ui, dispatcher, None
        self.models = models  # host.ModelChoices: the checkpoints the Model field offers (None: none)

    def model_box(self) -> tuple[dict, list[tuple[str, str]]]:
        """The Model field: an editable list of the checkpoints `v2vz models` lists (waited for at most
        MODELS_WAIT seconds, then offered without them)."""
        choices = self.models.get(MODELS_WAIT) if self.models is not None else []
        return {"ID": "model", "Editable": True, "PlaceholderText": "the daemon's model"}, choices

    def ask(self, clip_name: str, defaults: dict) -> dict | None:
        ui, disp = self.ui, self.disp
        model, choices = self.model_box()

        def row(label: str, key: str, hint: str = ""):
            edit = {"ID": key, "Text": defaults.get(key, ""), "PlaceholderText": hint}
            return ui.HGroup([ui.Label({"Text": label, "Weight": 0.3}), ui.LineEdit(edit)])

        preview = {
            "ID": "preview",
            "Text": "Preview first: a fast pass on the timeline at once, then the final replaces it",
            "Checked": bool(defaults.get("preview")),
        }
        show_mask = {
            "ID": "show_mask",
            "Text": "Show mask: import the local edit's masks into the v2vz bin",
            "Checked": bool(defaults.get("show_mask")),
        }
        window = disp.AddWindow(
            {"ID": "v2vzPrompt", "WindowTitle": "v2vz Re-prompt clip", "Geometry": [300, 300, 620, 340]},
            ui.VGroup(
                [
                    ui.Label({"Text": f"Clip: {clip_name}"}),
                    row("What the clip shows", "source", "people riding bikes on a road"),
                    row("The edit", "prompt", "people riding horses on a road"),
                    row("Options", "options", "--steps 30"),
                    row("Edit only", "edit_only", "words of the prompts, e.g. horses (empty: the whole frame)"),
                    row("Matte", "matte", "above (the clip on the track above), or a file path"),
                    row("Self-replace", "self_replace", "0..1 of the steps that keep the layout (empty: 0)"),
                    ui.HGroup([ui.Label({"Text": "Model", "Weight": 0.3}), ui.ComboBox(model)]),
                    row("LoRAs", "loras", "PATH or PATH:SCALE, separated by ; (e.g. /loras/ink.safetensors:0.6)"),
                    ui.CheckBox(preview),
                    ui.CheckBox(show_mask),
                    ui.HGroup(
                        [
                            ui.HGap(),
                            ui.Button({"ID": "ok", "Text": "Re-prompt"}),
                            ui.Button({"ID": "no", "Text": "Cancel"}),
                        ]
                    ),
                ]
            ),
        )
        items = window.GetItems()
        answer: dict = {}
        fill_models(items["model"], str(defaults.get("model") or ""), choices)

        def accept(_event) -> None:
            keys = ("source", "prompt", "options", "edit_only", "matte", "self_replace", "loras")
            answer.update({key: str(items[key].Text or "").strip() for key in keys})
            typed = str(items["model"].CurrentText or "").strip()
            answer["model"] = dict(choices).get(typed, typed)  # a listed checkpoint's label stands for its path
            answer["preview"], answer["show_mask"] = bool(items["preview"].Checked), bool(items["show_mask"].Checked)
            disp.ExitLoop()

        def reject(_event) -> None:
            disp.ExitLoop()

        window.On.ok.Clicked = accept
        window.On.no.Clicked = reject
        window.On.v2vzPrompt.Close = reject
        window.Show()
        disp.RunLoop()
        window.Hide()
        return answer or None

    def status(self, text: str) -> None:
        try:
            if self.window is None:
                self.window = self.disp.AddWindow(
                    {"ID": "v2vzStatus", "WindowTitle": "v2vz", "Geometry": [300, 300, 620, 80]},
                    self.ui.VGroup([self.ui.Label({"ID": "text", "Text": text, "WordWrap": True})]),
                )
                self.window.Show()
            self.window.GetItems()["text"].Text = text
        except Exception:  # noqa: BLE001 - the console has the line anyway
            self.window = None

    def close(self) -> None:
        if self.window is not None:
            self.window.Hide()


def fill_models(box, chosen: str, choices: list[tuple[str, str]]) -> None:
    """The Model field's entries: the marker's model (or empty: the daemon's), then each listed checkpoint's label."""
    box.AddItem(chosen)
    for label, value in choices:
        if value != chosen:
            box.AddItem(label)
    box.CurrentText = chosen


def make_dialog(fusion, ui, bmd):
    """The Studio dialog where UIManager windows exist, else None (the free edition: markers and the console)."""
    try:
        ui = ui if ui is not None else (fusion.UIManager if fusion is not None else None)
        if not ui or bmd is None:
            return None
        dispatcher = bmd.UIDispatcher(ui)
        if not dispatcher:
            return None
        folder = script_folder()
        client = host.find_client(client_file=folder / CLIENT_FILE if folder is not None else None)
        return Dialog(ui, dispatcher, host.ModelChoices(lambda: host.model_choices(client)).start())
    except Exception:  # noqa: BLE001 - no dialogs in this edition
        return None


# ---------------------------------------------------------------------------------------------------------------
# Entry point


def injected(name: str):
    """A name Resolve injects into a menu script (module globals, or builtins under fuscript)."""
    value = globals().get(name)
    return value if value is not None else getattr(builtins, name, None) if name in dir(builtins) else None


def find_resolve(resolve, fusion, bmd):
    if resolve is not None:
        return resolve
    if fusion is not None and "GetResolve" in dir(fusion):
        found = fusion.GetResolve()
        if found:
            return found
    if bmd is not None:
        return bmd.scriptapp("Resolve")
    return None


def main(resolve=None, fusion=None, ui=None, bmd=None) -> list[dict]:
    """Re-prompt the selected clips (or the clip under the playhead). Returns one result dict per clip. The launcher
    passes what Resolve injected into it (resolve, fusion or app, bmd)."""
    bmd = bmd if bmd is not None else injected("bmd")
    fusion = fusion if fusion is not None else (injected("fusion") or injected("app"))
    resolve = find_resolve(resolve or injected("resolve"), fusion, bmd)
    results: list[dict] = []
    dialog = None
    try:
        if host is None:
            raise Refused(HOST_MISSING)
        if not resolve:
            raise Refused("run this script from DaVinci Resolve: Workspace > Scripts > Edit > v2vz Re-prompt clip")
        project = resolve.GetProjectManager().GetCurrentProject()
        timeline = project.GetCurrentTimeline() if project else None
        if not timeline:
            raise Refused("open a timeline first")
        media_pool = project.GetMediaPool()
        timeline_fps = to_float(project.GetSetting("timelineFrameRate"))
        dialog = make_dialog(fusion, ui, bmd)
        for item in target_items(timeline, media_pool):
            try:
                results.append(edit_clip(timeline, media_pool, item, timeline_fps, dialog))
            except Refused as exc:
                say(str(exc), dialog)
                results.append({"clip": item.GetName(), "state": "refused", "message": str(exc)})
    except Refused as exc:
        say(str(exc), dialog)
        results.append({"clip": None, "state": "refused", "message": str(exc)})
    return results
