"""The running edits: a job per strip, drained on Blender's main thread, and the message each one ends with.

Each job is a `v2vz edit ... --events jsonl` subprocess read by v2vz_host's reader thread. Only the main thread may
touch `bpy`, so a timer (`bpy.app.timers`) drains the events of every job, grows its result strip and redraws the
sequencer. In background mode (`bpy.app.background`) there is no timer: the job runs to its end before the operator
returns, so batch scripts can use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import compat, v2vz_host
from .strips import ReportError, ResultStrip, free_channel, source_range

TIMER_INTERVAL = 0.2
CLIENT_FILE = Path(__file__).with_name("v2vz-client.txt")  # by `v2vz plugin install blender`: the client it ran as


@dataclass
class EditRequest:
    """One `v2vz edit` job: a source range of a clip, the prompts, the main options and the PNG folder."""

    source: str
    start: int
    frames: int
    prompt: str
    source_prompt: str
    out_dir: str
    steps: int = 0  # 0: the daemon's default
    guidance: float = 0.0  # 0: default
    seed: int = -1  # -1: default
    size: int = 0  # 0: the model's own
    fast: bool = False  # the client's old name of inversion "direct"
    inversion: str = ""  # direct, null-text or negative-prompt; "": the preset's
    preset: str = "default"
    window: int = 0  # frames edited together; 0: the daemon chooses (long strips arrive window by window)

    def command(self, client: str) -> list[str]:
        """The client's command line (events as JSON lines on stdout, PNG frames into out_dir)."""
        args = ["edit", self.source, "--prompt", self.prompt, "--source-prompt", self.source_prompt]
        args += ["--start", str(self.start), "--frames", str(self.frames), "--out", self.out_dir]
        if self.preset and self.preset != "default":
            args += ["--preset", self.preset]
        if self.steps > 0:
            args += ["--steps", str(self.steps)]
        if self.guidance > 0:
            args += ["--guidance", repr(float(self.guidance))]
        if self.seed >= 0:
            args += ["--seed", str(self.seed)]
        if self.size > 0:
            args += ["--size", str(self.size)]
        if self.window > 0:
            args += ["--window", str(self.window)]
        if self.inversion:
            args += ["--inversion", self.inversion]
        if self.fast:
            args.append("--fast")
        return v2vz_host.events_command(client, args)


@dataclass
class ActiveJob:
    """A running edit and the strip its frames go to."""

    key: str
    runner: v2vz_host.ClientRun
    source_name: str
    folder: str  # where the daemon writes the PNGs
    result: ResultStrip
    messages: list[str] = field(default_factory=list)


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


def output_folder(key: str) -> str:
    """`//v2vz/<key>` beside the saved .blend (absolute), or a temporary folder for an unsaved file."""
    if bpy.data.filepath:
        return os.path.join(os.path.dirname(os.path.abspath(bpy.data.filepath)), "v2vz", key)
    return os.path.join(tempfile.gettempdir(), "v2vz-blender", key)


def start_runner(request: EditRequest, client: str) -> v2vz_host.ClientRun:
    """Make the PNG folder and start the client; its events then arrive on the runner's queue."""
    Path(request.out_dir).mkdir(parents=True, exist_ok=True)
    runner = v2vz_host.ClientRun(request.command(client))
    runner.start()
    return runner


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
    result = ResultStrip(
        scene_name=scene.name,
        name=f"{strip.name} v2vz",
        channel=free_channel(editor, strip.channel, start, start + count),
        start=start,
        count=count,
    )
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
        inversion="" if options.get("inversion", "preset") == "preset" else str(options["inversion"]),
        preset=str(options.get("preset", "default")),
        window=int(options.get("window", 0)),
    )
    runner = start_runner(request, client)
    return ActiveJob(key=key, runner=runner, source_name=strip.name, folder=request.out_dir, result=result)


def finish_message(active: ActiveJob) -> tuple[str, str]:
    """("INFO", "WARNING" or "ERROR", message) for a finished job."""
    state, result = active.runner.state, active.result
    if state.outcome == "done":
        if result.appended < result.count:
            return "ERROR", (
                f"v2vz: the job ended with {result.appended} of {result.count} frames (see {active.folder})"
            )
        return "INFO", f"v2vz: {result.count} edited frames on channel {result.channel} ({result.strip_name!r})"
    if state.outcome == "cancelled":
        return "WARNING", f"v2vz: {state.reason or 'cancelled'}"
    return "ERROR", f"v2vz: {state.reason or 'the edit failed'}"


def set_report(level: str, message: str) -> None:
    """Keep the latest outcome for the sidebar and for scripts (`LAST_REPORT`)."""
    LAST_REPORT.clear()
    LAST_REPORT.update(level=level, message=message)


def run_in_background(context, strip, options: dict) -> tuple[str, str]:
    """Batch mode: run the job to its end, then add all frames in order. Returns (level, message)."""
    active = start_job(context, strip, options)
    active.runner.wait()
    active.result.grow(active.runner.state.frames)
    return finish_message(active)


def drain_jobs() -> bool:
    """Main thread: apply the queued events of every job, grow the strips; True while jobs are running."""
    for key, active in list(JOBS.items()):
        active.runner.drain()
        try:
            active.result.grow(active.runner.state.frames)
        except (RuntimeError, ReferenceError) as exc:  # the scene or strip went away
            active.messages.append(str(exc))
        if active.runner.state.finished:
            level, message = finish_message(active)
            set_report(level, message)
            print(message)
            del JOBS[key]
    update_ui()
    return bool(JOBS)


def job_line(active: ActiveJob) -> str:
    """`edit 3/50 (2/8 frames)`: a job's stage and its frames on the timeline."""
    return f"{active.runner.state.status} ({active.result.appended}/{active.result.count} frames)"


def status_line() -> str | None:
    """The status bar's text while jobs run, else None (Blender's own status comes back)."""
    if not JOBS:
        return None
    return "v2vz " + " | ".join(f"{active.source_name}: {job_line(active)}" for active in JOBS.values())


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
