"""The running edits: a job per take, drained on Blender's main thread, and the message each one ends with.

Each job is a `v2vz edit ... --events jsonl` subprocess (a take or a preview) or a `v2vz final PREVIEW_JOB ...` one
(the final of a preview), read by v2vz_host's reader thread. Only the main thread may touch `bpy`, so a timer
(`bpy.app.timers`) drains the events of every job, grows its result strip and redraws the sequencer. In background
mode (`bpy.app.background`) there is no timer: the job runs to its end before the operator returns, so batch scripts
can use it.

A take's strip is made with its first frame, and then it is the active take of its source (`takes.activate`). A
final's frames wait until it is done: then the final replaces its preview in place (same channel, same timeline
range, same take number) and the preview's frames are deleted; a final that fails or is cancelled leaves the
preview as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import compat, takes, v2vz_host
from .strips import ReportError, ResultStrip, free_channel, matte_source, matte_strip, source_range

TIMER_INTERVAL = 0.2
CLIENT_FILE = Path(__file__).with_name("v2vz-client.txt")  # by `v2vz plugin install blender`: the client it ran as


# The command lines are the same in every host (v2vz_host): an edit, and a preview's final.
EditRequest = v2vz_host.EditRequest
FinalRequest = v2vz_host.FinalRequest


@dataclass
class ActiveJob:
    """A running edit and the take strip its frames go to."""

    key: str
    runner: v2vz_host.ClientRun
    source_name: str
    folder: str  # where the daemon writes the PNGs
    result: ResultStrip
    messages: list[str] = field(default_factory=list)
    kind: str = "edit"  # "edit", "preview" or "final"
    group: str = ""  # the source strip's id (takes.SOURCE_ID)
    take: dict = field(default_factory=dict)  # the fields its strip records (takes.FIELDS)
    replaces: str = ""  # a final: the preview strip's name when the final was asked for
    masks: list[str] = field(default_factory=list)  # "show mask": the masks the daemon saves, shown once it is done

    @property
    def number(self) -> int:
        return int(self.take.get("take", 0) or 0)

    @property
    def label(self) -> str:
        """`take 3`, `take 3 (preview)`, `take 3 (final)`."""
        return f"take {self.number}" + ("" if self.kind == "edit" else f" ({self.kind})")

    def grow(self) -> int:
        """Main thread: put the frames that arrived on the take's strip; the first makes it, records the take on it
        and makes it the active take of its source. A final's frames wait for the end (`finish`)."""
        if self.kind == "final":
            return 0
        made = self.result.appended > 0
        added = self.result.grow(self.runner.state.frames)
        strip = self.result.strip()
        if strip is not None and added and not made:
            takes.record(strip, self.group, {**self.take, "job": self.runner.state.job_id})
            takes.activate(strip_editor(self.result.scene_name), strip)
        return added


JOBS: dict[str, ActiveJob] = {}
LAST_REPORT: dict[str, str] = {}  # {"level": "INFO"|"WARNING"|"ERROR", "message": ...}: the latest outcome, for scripts


def addon_preferences(context=None):
    """The extension's preferences (ui.V2VZ_AddonPreferences), or None when it is not registered as an add-on."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def find_client(configured: str = "") -> str | None:
    """The `v2vz` client: `configured` (the preference), else $V2VZ_CLIENT, else the client that built this
    extension, else `v2vz` on PATH."""
    return v2vz_host.find_client(configured, CLIENT_FILE)


def client_command(context=None) -> str:
    """The `v2vz` client to run (find_client); ReportError when there is none."""
    prefs = addon_preferences(context)
    client = find_client(prefs.client_path if prefs is not None else "")
    if not client:
        raise ReportError(
            "the v2vz client was not found: set its path in the v2vz extension's preferences, put `v2vz` on PATH "
            "or name it in the V2VZ_CLIENT environment variable"
        )
    return client


MODELS: dict[str, v2vz_host.ModelChoices] = {}  # the checkpoints a model field offers, by client and folders


def models_dirs(context=None) -> list[str]:
    """The preference's model folders (`;`-separated), each passed as `v2vz models --models-dir`."""
    prefs = addon_preferences(context)
    text = str(getattr(prefs, "models_dir", "") or "") if prefs is not None else ""
    return [bpy.path.abspath(part.strip()) for part in text.split(";") if part.strip()]


def fetch_models(context=None) -> v2vz_host.ModelChoices:
    """Start listing the checkpoints (`v2vz models --json`) on a thread, once per client and folders: a dialog
    opens at once and its model field offers them when they have arrived. No client: nothing to offer."""
    prefs = addon_preferences(context)
    client = find_client(prefs.client_path if prefs is not None else "")
    folders = models_dirs(context)
    key = json.dumps([client, folders])
    if key not in MODELS:
        MODELS.clear()  # another client or other folders: the old list is not theirs
        MODELS[key] = v2vz_host.ModelChoices(lambda: v2vz_host.model_choices(client, folders)).start()
    return MODELS[key]


def model_suggestions(edit_text: str) -> list[tuple[str, str]]:
    """The model field's search: (value, what it is) of the listed checkpoints whose label has the typed text."""
    typed = (edit_text or "").strip().lower()
    choices = [choice for listed in MODELS.values() for choice in listed.get()]
    return [(value, label) for label, value in choices if typed in label.lower() or typed in value.lower()]


def output_folder(key: str) -> str:
    """`//v2vz/<key>` beside the saved .blend (absolute), or a temporary folder for an unsaved file."""
    if bpy.data.filepath:
        return os.path.join(os.path.dirname(os.path.abspath(bpy.data.filepath)), "v2vz", key)
    return os.path.join(tempfile.gettempdir(), "v2vz-blender", key)


def strip_editor(scene_name: str):
    """The sequence editor of a scene, or ReportError once the scene or its sequencer is gone."""
    scene = bpy.data.scenes.get(scene_name)
    if scene is None or scene.sequence_editor is None:
        raise ReportError(f"the scene {scene_name!r} or its sequencer is gone")
    return scene.sequence_editor


def new_key() -> str:
    """A job's key, also its frames folder's name: time-ordered and unique."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def start_runner(request, client: str) -> v2vz_host.ClientRun:
    """Make the PNG folder and start the client; its events then arrive on the runner's queue."""
    Path(request.out_dir).mkdir(parents=True, exist_ok=True)
    runner = v2vz_host.ClientRun(request.command(client))
    runner.start()
    return runner


def reserved(scene_name: str, start: int, end: int) -> set[int]:
    """The channels of running takes whose strip is not made yet (it comes with their first frame) over [start, end)."""
    return {
        active.result.channel
        for active in JOBS.values()
        if active.kind != "final"
        and active.result.scene_name == scene_name
        and not active.result.strip_name
        and active.result.start < end
        and active.result.start + active.result.count > start
    }


def start_job(context, strip, options: dict) -> ActiveJob:
    """Check the strip, pick the channel, give the take its number and start the client (`options["preview"]`: the
    fast pass); nothing is added to the timeline yet. A take re-prompts its source strip: a new take of it."""
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor
    if editor is None:
        raise ReportError("this scene has no sequencer strips")
    prompt = options.get("prompt", "").strip()
    if not prompt:
        raise ReportError("give a prompt: what the edited strip should show")
    strip = takes.source_of(editor, strip)
    path, first, count = source_range(scene, strip)
    client = client_command(context)
    preview = bool(options.get("preview", False))
    start = compat.left_handle(strip)
    result = ResultStrip(
        scene_name=scene.name,
        name=takes.take_name(prompt, preview),
        channel=free_channel(editor, strip.channel, start, start + count, reserved(scene.name, start, start + count)),
        start=start,
        count=count,
    )
    key = new_key()
    local = local_edit(scene, strip, options, first, count, output_folder(key), preview)
    request = EditRequest(
        source=path,
        start=first,
        frames=count,
        prompt=prompt,
        source_prompt=options.get("source_prompt", "").strip(),
        out_dir=output_folder(key),
        steps=int(options.get("steps", 0)),
        guidance=float(options.get("guidance", 0.0)),
        seed=int(options.get("seed", -1)),
        size=int(options.get("size", 0)),
        fast=bool(options.get("fast", False)),
        inversion="" if options.get("inversion", "preset") == "preset" else str(options["inversion"]),
        preset=str(options.get("preset", "default")),
        window=int(options.get("window", 0)),
        model=str(options.get("model", "")).strip(),
        preview=preview,
        method="" if options.get("method", "vid2vid-zero") == "vid2vid-zero" else str(options["method"]),
        local=local,
    )
    number = takes.next_take(editor, strip)
    group = str(strip[takes.SOURCE_ID])
    try:
        runner = start_runner(request, client)
    except OSError:
        takes.give_back(strip, number)
        raise
    return ActiveJob(
        key=key,
        runner=runner,
        source_name=strip.name,
        folder=request.out_dir,
        result=result,
        kind="preview" if preview else "edit",
        group=group,
        take=takes.fields(strip.name, number, {**options, "model": request.model}, preview, request.out_dir),
        masks=v2vz_host.mask_files(local.save_mask, first, count) if local.save_mask else [],
    )


def local_edit(scene, strip, options: dict, first: int, count: int, folder: str, preview: bool) -> v2vz_host.LocalEdit:
    """The local edit the options ask for: edit-only words, self-replace, the matte from a strip above the source
    (a mask strip is rendered into `folder`-matte), the masks saved into `folder`-mask for "show mask" (not for a
    preview: its final would write them again). ReportError when the client would refuse them."""
    local = v2vz_host.LocalEdit(
        edit_only=str(options.get("edit_only", "")).strip(),
        matte_feather=float(options.get("matte_feather", 0.0) or 0.0),
        self_replace=float(options.get("self_replace", 0.0) or 0.0),
        loras=v2vz_host.split_loras(str(options.get("loras", "") or "")),
    )
    for entry in local.loras:
        path = bpy.path.abspath(v2vz_host.lora_path(entry))
        if not os.path.isfile(path):
            raise ReportError(f"v2vz: the LoRA {path} does not exist: give .safetensors files as PATH or PATH:SCALE")
    local.loras = [bpy.path.abspath(entry) for entry in local.loras]  # `//` paths: beside the .blend
    name = str(options.get("matte_strip", "")).strip()
    if name:
        matte = matte_strip(scene.sequence_editor, strip, name)
        local.matte, local.matte_start = matte_source(scene, matte, compat.left_handle(strip), count, folder + "-matte")
    if options.get("show_mask") and not preview:
        if not local.local:
            raise ReportError("show mask needs a local edit: give edit-only words or choose a matte strip")
        local.save_mask = folder + "-mask"
    problem = local.problem()
    if problem:
        raise ReportError(f"v2vz: {problem}")
    return local


def start_final(context, strip) -> ActiveJob:
    """`v2vz final` for a preview take: its frames go to a fresh folder; the preview stays until the final is done."""
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor
    if editor is None:
        raise ReportError("this scene has no sequencer strips")
    if strip is None or not takes.is_take(strip):
        raise ReportError(f"{strip.name if strip else 'no strip'!r} is not a v2vz take: make final works on previews")
    take = takes.info(strip)
    if not take["preview"]:
        raise ReportError(f"{strip.name!r} is the final of take {take['take']}: only a preview has a final to make")
    if not take["job"]:
        raise ReportError(f"{strip.name!r} records no v2vz job, so its final cannot be asked for: re-prompt instead")
    for active in JOBS.values():
        if (active.group, active.number) == (take["take_of"], take["take"]):
            if active.kind == "final":
                raise ReportError(f"the final of take {take['take']} is being made (see the v2vz tab)")
            raise ReportError(f"the preview of take {take['take']} is still being made: make its final once it is done")
    client = client_command(context)
    key = new_key()
    request = FinalRequest(take["job"], output_folder(key))
    source = takes.find_source(editor, take["take_of"])
    result = ResultStrip(
        scene_name=scene.name,
        name=takes.take_name(take["prompt"]),
        channel=strip.channel,
        start=compat.left_handle(strip),
        count=len(strip.elements),
    )
    runner = start_runner(request, client)
    values = {name: take[name] for name in takes.FIELDS}
    return ActiveJob(
        key=key,
        runner=runner,
        source_name=source.name if source is not None else take["source"],
        folder=request.out_dir,
        result=result,
        kind="final",
        group=take["take_of"],
        take={**values, "preview": False, "job": "", "folder": request.out_dir, "time": takes.now()},
        replaces=strip.name,
    )


def finish(active: ActiveJob) -> tuple[str, str]:
    """Main thread, once the client has exited: a final replaces its preview; a take that never reached the
    timeline gives its number back. Returns (level, message)."""
    if active.kind == "final":
        return place_final(active)
    if active.result.appended == 0:
        scene = bpy.data.scenes.get(active.result.scene_name)
        if scene is not None and scene.sequence_editor is not None:
            takes.give_back(takes.find_source(scene.sequence_editor, active.group), active.number)
        with contextlib.suppress(OSError):  # its folder, if nothing arrived in it
            os.rmdir(active.folder)
    level, message = finish_message(active)
    return level, message + (show_masks(active) if level == "INFO" else "")


def show_masks(active: ActiveJob) -> str:
    """ "Show mask": the masks the daemon saved, as an image strip on the first free channel above the take, over
    the same frames (named after the take, "(mask)"). Returns what to add to the job's message."""
    if not active.masks:
        return ""
    missing = [path for path in active.masks if not os.path.isfile(path)]
    if missing:
        return f"; no mask to show ({missing[0]} is missing)"
    editor, result = strip_editor(active.result.scene_name), active.result
    channel = free_channel(editor, result.channel, result.start, result.start + result.count)
    strip = compat.new_image(editor, takes.mask_name(result.name), active.masks[0], channel, result.start)
    for path in active.masks[1:]:
        strip.elements.append(os.path.basename(path))
    strip[takes.MASK_OF] = result.strip_name
    return f"; its mask is on channel {channel} ({strip.name!r})"


def finish_message(active: ActiveJob) -> tuple[str, str]:
    """("INFO", "WARNING" or "ERROR", message) for a finished take or preview."""
    state, result = active.runner.state, active.result
    if state.outcome == "done":
        if result.appended < result.count:
            return "ERROR", (
                f"v2vz: the job ended with {result.appended} of {result.count} frames (see {active.folder})"
            )
        return "INFO", (
            f"v2vz: {active.label} of {active.source_name!r}: {result.count} edited frames on channel "
            f"{result.channel} ({result.strip_name!r})"
        )
    if state.outcome == "cancelled":
        return "WARNING", f"v2vz: {state.reason or 'cancelled'}"
    return "ERROR", f"v2vz: {state.reason or 'the edit failed'}"


def place_final(active: ActiveJob) -> tuple[str, str]:
    """A done final takes its preview's place: the same channel and timeline range (trims included), the same
    take number and mute state; the preview strip goes and so do its frames. Otherwise the preview stays as it was
    and the final's partial frames go."""
    state, result, number = active.runner.state, active.result, active.number
    frames = state.frames
    complete = state.outcome == "done" and all(index in frames for index in range(result.count))
    if not complete:
        takes.remove_frames(active.folder)
        if state.outcome == "done":
            why = f"it ended with {len(frames)} of {result.count} frames"
        else:
            why = state.reason or f"the final {state.outcome or 'failed'}"
        level = "WARNING" if state.outcome == "cancelled" else "ERROR"
        return level, f"v2vz: the final of take {number} did not replace its preview: {why}; the preview stays"
    editor = strip_editor(result.scene_name)
    result.count = max(result.count, len(frames))  # the final's own frames (a preview shows them all)
    preview = takes.find_take(editor, active.group, number, preview=True, name=active.replaces)
    offsets, mute, old_folder = (0, 0), False, ""
    if preview is not None:
        result.channel, result.start = preview.channel, round(compat.content_start(preview))
        offsets = compat.handle_offsets(preview)
        mute, old_folder = preview.mute, takes.frames_folder(preview)
        try:
            compat.strips(editor).remove(preview)
        except (RuntimeError, ReferenceError) as exc:  # e.g. moved into a meta strip
            takes.remove_frames(active.folder)
            raise ReportError(
                f"the final of take {number} could not replace {preview.name!r} ({exc}): move the preview out of "
                "its meta strip and make its final again; the preview stays"
            ) from None
    else:  # the user deleted the preview meanwhile: where it was, or the first free channel above that
        result.channel = free_channel(editor, result.channel - 1, result.start, result.start + result.count)
    result.grow(frames)
    strip = result.strip()
    if strip is None:
        return "ERROR", f"v2vz: the final of take {number} could not be placed (its frames are in {active.folder})"
    compat.set_handle_offsets(strip, *offsets)
    takes.record(strip, active.group, {**active.take, "job": state.job_id})
    strip.mute = mute
    if old_folder and os.path.normpath(old_folder) != os.path.normpath(active.folder):
        takes.remove_frames(old_folder)
    return "INFO", (
        f"v2vz: the final of take {number} of {active.source_name!r} replaced its preview on channel "
        f"{result.channel} ({result.strip_name!r})"
    )


def set_report(level: str, message: str) -> None:
    """Keep the latest outcome for the sidebar and for scripts (`LAST_REPORT`)."""
    LAST_REPORT.clear()
    LAST_REPORT.update(level=level, message=message)


def run_in_background(context, strip, options: dict, final: bool = False) -> tuple[str, str]:
    """Batch mode: run the job (a take, a preview, or with `final` the final of the preview `strip`) to its end,
    then add all frames in order. Returns (level, message)."""
    active = start_final(context, strip) if final else start_job(context, strip, options)
    active.runner.wait()
    active.grow()
    return finish(active)


def drain_jobs() -> bool:
    """Main thread: apply the queued events of every job, grow the strips; True while jobs are running."""
    for key, active in list(JOBS.items()):
        active.runner.drain()
        try:
            active.grow()
        except (RuntimeError, ReferenceError, ReportError) as exc:  # the scene or strip went away
            active.messages.append(str(exc))
        if active.runner.state.finished:
            try:
                level, message = finish(active)
            except (RuntimeError, ReferenceError, ReportError) as exc:
                level, message = "ERROR", f"v2vz: {active.label}: {exc}"
            set_report(level, message)
            print(message)
            del JOBS[key]
    update_ui()
    return bool(JOBS)


def job_line(active: ActiveJob) -> str:
    """`edit 3/50 (2/8 frames)`: a job's stage and its frames on the timeline (a final's: those made so far)."""
    done = len(active.runner.state.frames) if active.kind == "final" else active.result.appended
    return f"{active.runner.state.status} ({done}/{active.result.count} frames)"


def status_line() -> str | None:
    """The status bar's text while jobs run, else None (Blender's own status comes back)."""
    if not JOBS:
        return None
    return "v2vz " + " | ".join(f"{active.source_name} {active.label}: {job_line(active)}" for active in JOBS.values())


def update_ui() -> None:
    """Show the status line and redraw the sequencers, so the sidebar's progress moves."""
    text = status_line()
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        with contextlib.suppress(AttributeError, RuntimeError, TypeError):
            window.workspace.status_text_set(text)
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


def _timer() -> float | None:
    try:
        running = drain_jobs()
    except Exception as exc:  # a timer that raises is dropped silently by Blender: keep the message
        print(f"v2vz: {exc}")
        running = bool(JOBS)
    return TIMER_INTERVAL if running else None


def ensure_timer() -> None:
    """Drain the jobs every TIMER_INTERVAL seconds until none runs."""
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
