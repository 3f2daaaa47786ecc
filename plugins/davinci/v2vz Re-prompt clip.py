"""v2vz Re-prompt clip: a DaVinci Resolve menu script (Workspace > Scripts > Edit > v2vz Re-prompt clip).

It edits the selected clips (or the video clip under the playhead) with v2vz and places the edited frames on a new
video track, at the same record frame and with the same duration: the original clip stays untouched underneath.

Standard library only: Resolve runs menu scripts in the user's own Python. The work goes through the `v2vz` client
(`v2vz edit ... --events jsonl`, `v2vz attach JOB --events jsonl`), found through `$V2VZ_CLIENT`, else the
`v2vz-client.txt` that `v2vz plugin install resolve` writes next to this script, else `v2vz` on the PATH. The client
is run and its events read by v2vz_host.py, shared with the Blender extension; it stays in the v2vz installation
(Resolve lists every .py file of this folder as a menu entry) and the script loads it from there by its path.

Prompts come from a dialog where Resolve offers one (Studio), else from a marker named `v2vz` on the clip whose note
has the lines `source: <what the clip shows>` and `prompt: <the edit>` (and optionally `options: --steps 30`).
See plugins/davinci/README.md.
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
FRAME_PATTERN = "frame_%06d.png"
# Resolve's clip colours (it has no red): running, done, done with a placement to check, failed.
COLOR_RUNNING, COLOR_DONE, COLOR_CHECK, COLOR_FAILED = "Orange", "Green", "Yellow", "Pink"
JOB_MARKER_COLOR = "Yellow"
# `options:` may set these `v2vz edit` options (True: the option takes a value).
ALLOWED_OPTIONS = {
    "--steps": True,
    "--guidance": True,
    "--seed": True,
    "--size": True,
    "--preset": True,
    "--attention": True,
    "--null-steps": True,
    "--inversion": True,
    "--fast": False,
}
REFUSED_TYPES = ("compound", "generator", "title", "timeline", "fusion", "multicam", "adjustment")
MARKER_HELP = (
    'add a marker named "v2vz" on the clip whose note has two lines, "source: <what the clip shows>" and '
    '"prompt: <the edit>" (an optional third line "options: --steps 30" passes v2vz edit options), '
    "then run Workspace > Scripts > Edit > v2vz Re-prompt clip again"
)


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
    here = globals().get("__file__")
    return Path(here).resolve().parent if here else None


def host_candidates() -> list[Path]:
    """Where v2vz_host.py may be: $V2VZ_HOST_LIB, the folder on line 2 of v2vz-client.txt, beside this script."""
    candidates = []
    explicit = os.environ.get(HOST_LIB_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        candidates.append(path if path.suffix == ".py" else path / HOST_FILE)
    folder = script_folder()
    if folder is not None:
        try:
            lines = (folder / CLIENT_FILE).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeError):
            lines = []
        if len(lines) > 1 and lines[1].strip():
            candidates.append(Path(lines[1].strip()) / HOST_FILE)
        candidates.append(folder / HOST_FILE)
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
        if kind == host.EventType.SUBMITTED:
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


def target_items(timeline) -> list:
    """The selected video clips where the API has GetSelectedClips (21.0.4+), else the video clip under the playhead."""
    if "GetSelectedClips" in dir(timeline):
        selected = timeline.GetSelectedClips() or []
        if isinstance(selected, dict):
            selected = list(selected.values())
        on_video = video_items(timeline)
        chosen = [item for item in selected if any(same_item(item, other) for other in on_video)]
        if chosen:
            return chosen
    current = timeline.GetCurrentVideoItem()
    if not current:
        raise Refused(
            "no clip to edit: select a video clip on the timeline or park the playhead over one, then run "
            "Workspace > Scripts > Edit > v2vz Re-prompt clip again"
        )
    return [current]


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


def prompts_from_marker(item, name: str) -> dict:
    """source, prompt and options from the clip's `v2vz` marker, or Refused that says exactly what to add."""
    found = [m for m in markers_of(item).values() if str(m.get("name", "")).strip().lower() == PROMPT_MARKER]
    if not found:
        raise Refused(f"no v2vz marker on '{name}': {MARKER_HELP}")
    fields: dict[str, str] = {}
    for line in str(found[0].get("note", "")).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("source", "prompt", "options"):
            fields[key.strip().lower()] = value.strip()
    missing = [key for key in ("source", "prompt") if not fields.get(key)]
    if missing:
        raise Refused(f"the v2vz marker on '{name}' has no {' and no '.join(missing)} line: {MARKER_HELP}")
    return {"source": fields["source"], "prompt": fields["prompt"], "options": fields.get("options", "")}


def parse_options(text: str) -> list[str]:
    """The `options:` line as arguments for `v2vz edit`, only the options in ALLOWED_OPTIONS."""
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise Refused(f"cannot read the options line {text!r} ({exc})") from None
    args, index = [], 0
    while index < len(words):
        word = words[index]
        option, _, inline = word.partition("=")
        if option not in ALLOWED_OPTIONS:
            raise Refused(f"the options line may hold only {', '.join(ALLOWED_OPTIONS)}; got {word!r}")
        if ALLOWED_OPTIONS[option] and not inline:
            if index + 1 >= len(words):
                raise Refused(f"the option {option} in the options line needs a value")
            index += 1
            inline = words[index]
        args.extend([option, inline] if ALLOWED_OPTIONS[option] else [option])
        index += 1
    return args


# ---------------------------------------------------------------------------------------------------------------
# Job markers: the job id on the clip, so that running the script again re-attaches


def job_markers(item) -> list[dict]:
    """The clip's `v2vz job` markers (newest first) as {"frame", "job", "dir", "submitted"}."""
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
            jobs.append({"frame": frame, **parsed})
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


def finish_job(folder: Path | None, job_id: str, state: str) -> None:
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATE_FILE).write_text(json.dumps({"job": job_id, "state": state}), encoding="utf-8")
    except OSError:
        pass


def add_job_marker(item, job_id: str, folder: Path, prompt: str) -> bool:
    """A `v2vz job` marker on the first free frame of the clip; the prompt marker is left as it is."""
    used = {int(float(frame)) for frame in markers_of(item)}
    duration = int(item.GetDuration() or 1)
    frame = next((f for f in range(duration) if f not in used), 0)
    data = json.dumps({"job": job_id, "dir": str(folder), "submitted": datetime.datetime.now().isoformat()})
    note = f"v2vz job {job_id}: {prompt}"
    return bool(item.AddMarker(frame, JOB_MARKER_COLOR, JOB_MARKER, note, 1, data))


# ---------------------------------------------------------------------------------------------------------------
# Placing the result


def v2vz_bin(media_pool):
    root = media_pool.GetRootFolder()
    for folder in root.GetSubFolderList() or []:
        if folder.GetName() == BIN_NAME:
            return folder
    return media_pool.AddSubFolder(root, BIN_NAME)


def place_result(timeline, media_pool, item, clip: dict, frame_paths: list[str]) -> tuple[bool, str]:
    """Import the frames into the v2vz bin and append them on a new video track at the clip's record frame.

    Returns (placed exactly, message). Raises Refused when Resolve refuses a step.
    """
    if not frame_paths:
        raise Refused(f"the job for '{clip['name']}' wrote no PNG frames")
    folder = Path(frame_paths[0]).parent
    count = len(frame_paths)
    target = v2vz_bin(media_pool)
    if not target or not media_pool.SetCurrentFolder(target):
        raise Refused(f"cannot create or open the {BIN_NAME!r} bin in the media pool")
    imported = media_pool.ImportMedia(
        [{"FilePath": str(folder / FRAME_PATTERN), "StartIndex": 0, "EndIndex": count - 1}]
    )
    if not imported:
        raise Refused(f"Resolve did not import the {count} frames in {folder}")
    if not timeline.AddTrack("video"):
        raise Refused("Resolve did not add a video track for the result")
    track = int(timeline.GetTrackCount("video"))
    timeline.SetTrackName("video", track, "v2vz")
    record = int(item.GetStart())
    appended = media_pool.AppendToTimeline(
        [
            {
                "mediaPoolItem": imported[0],
                "startFrame": 0,
                "endFrame": count,
                "mediaType": 1,
                "trackIndex": track,
                "recordFrame": record,
            }
        ]
    )
    placed = timeline.GetItemListInTrack("video", track) or []
    if not appended or not placed:
        raise Refused(f"Resolve did not place the result on video track {track}")
    duration = int(item.GetDuration())
    first = placed[0]
    start, length = int(first.GetStart()), int(first.GetDuration())
    if len(placed) == 1 and start == record and length == duration:
        return True, f"'{clip['name']}': the edit is on video track {track} at frame {record}, {duration} frames"
    return False, (
        f"'{clip['name']}': the edit on video track {track} starts at frame {start} with {length} frames, but the "
        f"clip starts at {record} with {duration} frames: check its placement"
    )


# ---------------------------------------------------------------------------------------------------------------
# One clip


def job_folder(clip: dict) -> Path:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(clip["path"]).stem)[:40] or "clip"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return output_root() / f"{stem}-{clip['start']}-{clip['frames']}-{stamp}"


def edit_clip(timeline, media_pool, item, timeline_fps: float | None, dialog=None) -> dict:
    """Edit one clip (or re-attach to its job) and place the result. Returns {"clip", "state", "message"}."""
    name = item.GetName() or "clip"
    clip = clip_range(item, timeline_fps)
    progress = Progress(name, dialog)
    running = [job for job in job_markers(item) if job_state(job) is None]
    run, folder = reattach(item, running[0], progress, dialog) if running else (None, None)
    if run is None:
        if dialog is not None:
            defaults = {"source": "", "prompt": "", "options": ""}
            with contextlib.suppress(Refused):
                defaults = prompts_from_marker(item, name)
            prompts = dialog.ask(name, defaults)
            if prompts is None:
                return {"clip": name, "state": "cancelled", "message": "cancelled"}
        else:
            prompts = prompts_from_marker(item, name)
        folder = job_folder(clip)
        run = submit(item, clip, prompts, folder, progress, dialog)
    return finish(timeline, media_pool, item, clip, run, folder, dialog)


def reattach(item, job: dict, progress: Progress, dialog) -> tuple[host.ClientRun | None, Path | None]:
    """Follow the clip's job again: (the run, its folder), or (None, None) when the daemon no longer knows it."""
    name, job_id = item.GetName() or "clip", job["job"]
    folder = Path(job["dir"]) if job.get("dir") else None
    say(f"'{name}': re-attaching to job {job_id}", dialog)
    item.SetClipColor(COLOR_RUNNING)
    run = run_client(["attach", job_id], progress)
    run.state.job_id = run.state.job_id or job_id
    if run.state.terminal is None and run.error_kind == host.ErrorKind.JOB_NOT_FOUND:
        finish_job(folder, job_id, "lost")  # the daemon no longer knows it: start a new job
        say(f"'{name}': the daemon has no job {job_id} any more; starting a new one", dialog)
        return None, None
    return run, folder


def submit(item, clip: dict, prompts: dict, folder: Path, progress: Progress, dialog) -> host.ClientRun:
    """`v2vz edit` of the clip's source range to its end; a `v2vz job` marker keeps the job id for a re-attach."""
    name = clip["name"]
    options = parse_options(prompts.get("options", ""))
    folder.mkdir(parents=True, exist_ok=True)
    args = ["edit", clip["path"], "--start", str(clip["start"]), "--frames", str(clip["frames"])]
    args += ["-s", prompts["source"], "-p", prompts["prompt"], *options, "--out", str(folder)]
    item.SetClipColor(COLOR_RUNNING)
    say(f"'{name}': editing source frames {clip['start']}..{clip['start'] + clip['frames'] - 1}", dialog)

    def on_event(event: dict) -> None:
        submitted = event.get("type") == host.EventType.SUBMITTED and event.get("job_id")
        if submitted and not add_job_marker(item, event["job_id"], folder, prompts["prompt"]):
            say(f"'{name}': could not add the job marker (re-attaching will not find job {event['job_id']})", dialog)
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


def finish(timeline, media_pool, item, clip: dict, run: host.ClientRun, folder: Path | None, dialog) -> dict:
    """Place a done job's frames, or say why there are none; the clip's colour and the job's state file follow."""
    name, job_id = clip["name"], run.state.job_id
    terminal = run.state.terminal or {}
    if terminal.get("type") != host.EventType.DONE:
        if terminal.get("type") in (host.EventType.FAILED, host.EventType.CANCELLED):
            finish_job(folder, job_id, terminal["type"])
        return failed(item, name, job_id, failure_message(name, run), dialog)
    paths = [str(p) for p in terminal.get("frame_paths") or []]
    if len(paths) != clip["frames"]:
        finish_job(folder, job_id, "failed")
        message = f"'{name}': job {job_id} wrote {len(paths)} frames, the clip has {clip['frames']}"
        return failed(item, name, job_id, message, dialog)
    folder = Path(paths[0]).parent
    try:
        exact, message = place_result(timeline, media_pool, item, clip, paths)
    except Refused as exc:
        finish_job(folder, job_id, "failed")
        return failed(item, name, job_id, str(exc), dialog)
    finish_job(folder, job_id, "placed")
    item.SetClipColor(COLOR_DONE if exact else COLOR_CHECK)
    say(message, dialog)
    return {"clip": name, "state": "placed" if exact else "misplaced", "job": job_id, "message": message}


def failed(item, name: str, job_id: str, message: str, dialog) -> dict:
    """The clip turns Pink and the console says why: one clip's failed result."""
    item.SetClipColor(COLOR_FAILED)
    say(message, dialog)
    return {"clip": name, "state": "failed", "job": job_id, "message": message}


# ---------------------------------------------------------------------------------------------------------------
# The Studio dialog (UIManager); the free edition has none and uses the marker


class Dialog:
    """A prompt dialog and a progress window through Resolve's UIManager (Studio only)."""

    def __init__(self, ui, dispatcher) -> None:
        self.ui, self.disp, self.window = ui, dispatcher, None

    def ask(self, clip_name: str, defaults: dict) -> dict | None:
        ui, disp = self.ui, self.disp

        def row(label: str, key: str, hint: str = ""):
            edit = {"ID": key, "Text": defaults.get(key, ""), "PlaceholderText": hint}
            return ui.HGroup([ui.Label({"Text": label, "Weight": 0.3}), ui.LineEdit(edit)])

        window = disp.AddWindow(
            {"ID": "v2vzPrompt", "WindowTitle": "v2vz Re-prompt clip", "Geometry": [300, 300, 620, 190]},
            ui.VGroup(
                [
                    ui.Label({"Text": f"Clip: {clip_name}"}),
                    row("What the clip shows", "source", "people riding bikes on a road"),
                    row("The edit", "prompt", "people riding horses on a road"),
                    row("Options", "options", "--steps 30"),
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

        def accept(_event) -> None:
            answer.update({key: str(items[key].Text or "").strip() for key in ("source", "prompt", "options")})
            disp.ExitLoop()

        def reject(_event) -> None:
            disp.ExitLoop()

        window.On.ok.Clicked = accept
        window.On.no.Clicked = reject
        window.On.v2vzPrompt.Close = reject
        window.Show()
        disp.RunLoop()
        window.Hide()
        if not answer:
            return None
        if not answer["source"] or not answer["prompt"]:
            raise Refused("the dialog needs both what the clip shows and the edit")
        return answer

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


def make_dialog(fusion, ui, bmd):
    """The Studio dialog where UIManager windows exist, else None (the free edition: markers and the console)."""
    try:
        ui = ui if ui is not None else (fusion.UIManager if fusion is not None else None)
        if not ui or bmd is None:
            return None
        dispatcher = bmd.UIDispatcher(ui)
        return Dialog(ui, dispatcher) if dispatcher else None
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


def main(resolve=None, fusion=None, ui=None) -> list[dict]:
    """Re-prompt the selected clips (or the clip under the playhead). Returns one result dict per clip."""
    bmd = injected("bmd")
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
        for item in target_items(timeline):
            try:
                results.append(edit_clip(timeline, media_pool, item, timeline_fps, dialog))
            except Refused as exc:
                say(str(exc), dialog)
                results.append({"clip": item.GetName(), "state": "refused", "message": str(exc)})
    except Refused as exc:
        say(str(exc), dialog)
        results.append({"clip": None, "state": "refused", "message": str(exc)})
    return results


if __name__ == "__main__":
    main()
    sys.stdout.flush()
