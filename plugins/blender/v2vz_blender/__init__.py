"""v2vz for Blender's Video Sequence Editor: right-click a strip > "Re-prompt Strip...".

It acts on the active movie or image strip (an image strip's visible images must be a numbered sequence that the
daemon reads from the first of them). The extension runs the `v2vz` client (`v2vz edit ... --events jsonl`) as a
subprocess: no third-party package runs inside Blender. The edited frames land as an image strip on the first free
channel above the source strip and, in the UI, the strip grows frame by frame as the daemon writes them. In
background mode (`bpy.app.background`) the operator runs the job to completion before it returns, so batch scripts
can use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import compat
from .job import EditRequest, JobRunner, find_client, sequence_problem

TIMER_INTERVAL = 0.2
SUPPORTED_TYPES = ("MOVIE", "IMAGE")


class ReportError(Exception):
    """A problem the user can act on: reported as it is, never as a traceback."""


@dataclass
class ActiveJob:
    """A running edit and where its frames go."""

    key: str
    runner: JobRunner
    scene_name: str
    source_name: str
    result_name: str
    channel: int
    start: int
    count: int
    folder: str
    appended: int = 0
    result_strip: str = ""  # the strip's name once it exists
    messages: list[str] = field(default_factory=list)


JOBS: dict[str, ActiveJob] = {}
LAST_REPORT: dict[str, str] = {}  # {"level": "INFO"|"ERROR", "message": ...}: the latest outcome, for scripts


# ---------------------------------------------------------------------------------------------------------------
# Plain functions (no operator context): the logic that the operator, the timer and batch scripts share


def addon_preferences(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def client_command(context=None) -> str:
    prefs = addon_preferences(context)
    client = find_client(prefs.client_path if prefs is not None else "")
    if not client:
        raise ReportError(
            "the v2vz client was not found: set its path in the v2vz extension's preferences, put `v2vz` on PATH "
            "or name it in the V2VZ_CLIENT environment variable"
        )
    return client


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
    editor = scene.sequence_editor
    speed = compat.speed_effects_on(editor, strip)
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


def image_range(strip) -> tuple[str, int, int]:
    """An image strip's source: (the first visible image's path, 0, visible count), once its visible images are
    checked to be the numbered sequence the daemon reads from that first image (`job.sequence_problem`)."""
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
    count = compat.duration(strip)
    if first < 0:
        raise ReportError(f"{strip.name!r} starts before its movie's first frame (hold): trim it to its content")
    return path, first, count


def free_channel(editor, above: int, start: int, end: int) -> int:
    """The first channel above `above` where no strip overlaps the timeline frames [start, end)."""
    busy: set[int] = set()
    for strip in compat.strips(editor):
        if compat.left_handle(strip) < end and compat.right_handle(strip) > start:
            busy.add(strip.channel)
    channel = above + 1
    while channel in busy:
        channel += 1
    if channel > 128:
        raise ReportError(f"no free channel above {above} over frames {start}..{end - 1}")
    return channel


def output_folder(key: str) -> str:
    """`//v2vz/<key>` beside the saved .blend (absolute), or a temporary folder for an unsaved file."""
    if bpy.data.filepath:
        return os.path.join(os.path.dirname(os.path.abspath(bpy.data.filepath)), "v2vz", key)
    return os.path.join(tempfile.gettempdir(), "v2vz-blender", key)


def start_job(context, strip, options: dict) -> ActiveJob:
    """Check the strip, pick the channel and start the client; nothing is added to the timeline yet."""
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor
    if editor is None:
        raise ReportError("this scene has no sequencer strips")
    prompt = options.get("prompt", "").strip()
    if not prompt:
        raise ReportError("give a prompt: what the edited strip should show")
    path, first, count = source_range(scene, strip)
    client = client_command(context)
    start = compat.left_handle(strip)
    channel = free_channel(editor, strip.channel, start, start + count)
    key = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
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
        preset=str(options.get("preset", "default")),
        window=int(options.get("window", 0)),
    )
    runner = JobRunner(request, client)
    active = ActiveJob(
        key=key,
        runner=runner,
        scene_name=scene.name,
        source_name=strip.name,
        result_name=f"{strip.name} v2vz",
        channel=channel,
        start=start,
        count=count,
        folder=request.out_dir,
    )
    runner.start()
    return active


def _result_strip(active: ActiveJob):
    scene = bpy.data.scenes.get(active.scene_name)
    if scene is None or scene.sequence_editor is None or not active.result_strip:
        return None
    return compat.strips_all(scene.sequence_editor).get(active.result_strip)


def add_frames(active: ActiveJob) -> int:
    """Main thread: put the frames that arrived, in index order, onto the result strip. Returns how many."""
    frames = active.runner.state.frames
    added = 0
    while active.appended in frames and active.appended < active.count:
        path = frames[active.appended]
        if active.appended == 0:
            scene = bpy.data.scenes.get(active.scene_name)
            if scene is None or scene.sequence_editor is None:
                return added
            strip = compat.new_image(scene.sequence_editor, active.result_name, path, active.channel, active.start)
            active.result_strip = strip.name
        else:
            strip = _result_strip(active)
            if strip is None:  # the user deleted it: stop adding
                return added
            strip.elements.append(os.path.basename(path))
        active.appended += 1
        added += 1
    return added


def finish_message(active: ActiveJob) -> tuple[str, str]:
    """("INFO" or "ERROR", message) for a finished job."""
    state = active.runner.state
    if state.outcome == "done":
        if active.appended < active.count:
            return "ERROR", (
                f"v2vz: the job ended with {active.appended} of {active.count} frames (see {active.folder})"
            )
        return "INFO", f"v2vz: {active.count} edited frames on channel {active.channel} ({active.result_strip!r})"
    if state.outcome == "cancelled":
        return "WARNING", f"v2vz: {state.reason or 'cancelled'}"
    return "ERROR", f"v2vz: {state.reason or 'the edit failed'}"


def set_report(level: str, message: str) -> None:
    LAST_REPORT.clear()
    LAST_REPORT.update(level=level, message=message)


def run_in_background(context, strip, options: dict) -> tuple[str, str]:
    """Batch mode: run the job to its end, then add all frames in order. Returns (level, message)."""
    active = start_job(context, strip, options)
    active.runner.run_to_completion()
    add_frames(active)
    return finish_message(active)


def drain_jobs() -> bool:
    """Main thread: apply the queued events of every job, grow the strips; True while jobs are running."""
    for key, active in list(JOBS.items()):
        active.runner.drain()
        try:
            add_frames(active)
        except (RuntimeError, ReferenceError) as exc:  # the scene or strip went away
            active.messages.append(str(exc))
        if active.runner.state.finished:
            level, message = finish_message(active)
            set_report(level, message)
            print(message)
            del JOBS[key]
    update_ui()
    return bool(JOBS)


def status_line() -> str | None:
    if not JOBS:
        return None
    parts = []
    for active in JOBS.values():
        state = active.runner.state
        parts.append(f"{active.source_name}: {state.status} ({active.appended}/{active.count} frames)")
    return "v2vz " + " | ".join(parts)


def update_ui() -> None:
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
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL)


# ---------------------------------------------------------------------------------------------------------------
# UI


class V2VZ_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    client_path: StringProperty(
        name="v2vz client",
        description="The `v2vz` command. Empty: $V2VZ_CLIENT, else `v2vz` on PATH",
        subtype="FILE_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "client_path")
        found = find_client(self.client_path)
        layout.label(text=f"Uses: {found}" if found else "Not found: give the path of `v2vz`", icon="CONSOLE")
        layout.label(text="Start the daemon with `v2vz serve` before re-prompting a strip.")


def active_strip(context):
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor if scene is not None else None
    return editor.active_strip if editor is not None else None


class SEQUENCER_OT_v2vz_reprompt(bpy.types.Operator):
    """Edit the active strip's visible frames with a text prompt (v2vz); the result goes on a free channel above"""

    bl_idname = "sequencer.v2vz_reprompt"
    bl_label = "Re-prompt Strip..."
    bl_options = {"REGISTER"}

    prompt: StringProperty(name="Prompt", description="What the edited strip should show", default="")
    source_prompt: StringProperty(name="Source prompt", description="What the strip shows now", default="")
    steps: IntProperty(name="Steps", description="DDIM steps (0: the daemon's default, 50)", default=0, min=0)
    guidance: FloatProperty(name="Guidance", description="Guidance scale (0: default, 7.5)", default=0.0, min=0.0)
    seed: IntProperty(name="Seed", description="Seed (-1: default)", default=-1, min=-1)
    size: IntProperty(name="Size", description="Working long side in pixels (0: the model's own)", default=0, min=0)
    fast: BoolProperty(name="Fast", description="Skip null-text optimization", default=False)
    window: IntProperty(
        name="Window",
        description="Frames edited together; longer strips go window by window (0: chosen from size and memory)",
        default=0,
        min=0,
        max=256,
    )
    preset: EnumProperty(
        name="Preset",
        items=(("default", "Default", "v2vz's settings"), ("published", "Published", "The paper's settings")),
        default="default",
    )

    @classmethod
    def poll(cls, context):
        return active_strip(context) is not None

    def edit_options(self) -> dict:
        names = ("prompt", "source_prompt", "steps", "guidance", "seed", "size", "fast", "preset", "window")
        return {name: getattr(self, name) for name in names}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        return context.window_manager.invoke_props_dialog(self, width=420)

    def draw(self, context):
        layout = self.layout
        strip = active_strip(context)
        if strip is not None:
            layout.label(text=f"{strip.name}: {compat.duration(strip)} frames", icon="SEQUENCE")
        layout.prop(self, "source_prompt")
        layout.prop(self, "prompt")
        row = layout.row()
        row.prop(self, "steps")
        row.prop(self, "guidance")
        row = layout.row()
        row.prop(self, "seed")
        row.prop(self, "size")
        row = layout.row()
        row.prop(self, "window")
        row.prop(self, "fast")
        layout.prop(self, "preset", text="")

    def execute(self, context):
        return run_operator(self, context, active_strip(context), self.edit_options())


def run_operator(operator, context, strip, options: dict) -> set[str]:
    """The operator's logic (callable directly from scripts): starts the job, or runs it in background mode."""
    try:
        if bpy.app.background:
            level, message = run_in_background(context, strip, options)
        else:
            active = start_job(context, strip, options)
            JOBS[active.key] = active
            ensure_timer()
            level, message = "INFO", f"v2vz: editing {active.count} frames of {strip.name!r} (see the v2vz tab)"
    except (ReportError, OSError) as exc:
        level, message = "ERROR", str(exc) if isinstance(exc, ReportError) else f"v2vz: {exc}"
    set_report(level, message)
    if operator is not None:
        operator.report({level}, message)
    else:
        print(message)
    return {"FINISHED"} if level != "ERROR" else {"CANCELLED"}


class SEQUENCER_OT_v2vz_cancel(bpy.types.Operator):
    """Cancel a running v2vz edit (the frames that arrived stay)"""

    bl_idname = "sequencer.v2vz_cancel"
    bl_label = "Cancel v2vz Edit"
    bl_options = {"REGISTER"}

    job: StringProperty(name="Job", default="")

    def execute(self, context):
        active = JOBS.get(self.job)
        if active is None:
            self.report({"WARNING"}, "v2vz: that edit is no longer running")
            return {"CANCELLED"}
        active.runner.state.status = "cancelling"
        threading.Thread(target=active.runner.cancel, daemon=True).start()  # never blocks the UI
        return {"FINISHED"}


class SEQUENCER_PT_v2vz(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "v2vz"
    bl_label = "v2vz"

    def draw(self, context):
        layout = self.layout
        strip = active_strip(context)
        layout.label(text=strip.name if strip is not None else "No active strip", icon="SEQUENCE")
        layout.operator(SEQUENCER_OT_v2vz_reprompt.bl_idname, icon="SHADERFX")
        for active in JOBS.values():
            state = active.runner.state
            box = layout.box()
            box.label(text=f"{active.source_name} -> channel {active.channel}")
            text = f"{state.status} ({active.appended}/{active.count} frames)"
            if hasattr(box, "progress"):
                box.progress(factor=state.progress, type="BAR", text=text)
            else:
                box.label(text=text)
            box.operator(SEQUENCER_OT_v2vz_cancel.bl_idname, text="Cancel", icon="CANCEL").job = active.key
        if LAST_REPORT:
            icon = "ERROR" if LAST_REPORT["level"] == "ERROR" else "INFO"
            layout.label(text=LAST_REPORT["message"], icon=icon)


def draw_context_menu(self, context):
    self.layout.separator()
    self.layout.operator_context = "INVOKE_DEFAULT"
    self.layout.operator(SEQUENCER_OT_v2vz_reprompt.bl_idname, icon="SHADERFX")


CLASSES = (V2VZ_AddonPreferences, SEQUENCER_OT_v2vz_reprompt, SEQUENCER_OT_v2vz_cancel, SEQUENCER_PT_v2vz)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.SEQUENCER_MT_context_menu.append(draw_context_menu)


def unregister():
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    bpy.types.SEQUENCER_MT_context_menu.remove(draw_context_menu)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
