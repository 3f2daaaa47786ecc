"""What the user sees: the preferences, the two operators, the sidebar panel and the strip menu's entry."""

from __future__ import annotations

import threading

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from . import compat
from .jobs import JOBS, LAST_REPORT, ensure_timer, find_client, job_line, run_in_background, set_report, start_job
from .strips import ReportError, active_strip


class V2VZ_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    client_path: StringProperty(
        name="v2vz client",
        description="The `v2vz` command. Empty: $V2VZ_CLIENT, else the one that built this extension, else PATH",
        subtype="FILE_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "client_path")
        found = find_client(self.client_path)
        layout.label(text=f"Uses: {found}" if found else "Not found: give the path of `v2vz`", icon="CONSOLE")
        layout.label(text="Start the daemon with `v2vz serve` before re-prompting a strip.")


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
    inversion: EnumProperty(
        name="Inversion",
        description="How the edit stays on the strip's frames",
        items=(
            ("preset", "Preset's", "What the preset uses: direct for Default, null-text for Published"),
            ("direct", "Direct", "Exact and fast: the source branch follows the strip's inversion"),
            ("null-text", "Null-text", "The published null-text optimization (slower)"),
            ("negative-prompt", "Negative prompt", "The source prompt as the unconditional embedding (fastest)"),
        ),
        default="preset",
    )
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
        names = ("prompt", "source_prompt", "steps", "guidance", "seed", "size", "inversion", "preset", "window")
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
        row.prop(self, "inversion", text="")
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
            level, message = "INFO", f"v2vz: editing {active.result.count} frames of {strip.name!r} (see the v2vz tab)"
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
            box = layout.box()
            box.label(text=f"{active.source_name} -> channel {active.result.channel}")
            if hasattr(box, "progress"):
                box.progress(factor=active.runner.state.progress, type="BAR", text=job_line(active))
            else:
                box.label(text=job_line(active))
            box.operator(SEQUENCER_OT_v2vz_cancel.bl_idname, text="Cancel", icon="CANCEL").job = active.key
        if LAST_REPORT:
            icon = "ERROR" if LAST_REPORT["level"] == "ERROR" else "INFO"
            layout.label(text=LAST_REPORT["message"], icon=icon)


def draw_context_menu(self, context):
    self.layout.separator()
    self.layout.operator_context = "INVOKE_DEFAULT"
    self.layout.operator(SEQUENCER_OT_v2vz_reprompt.bl_idname, icon="SHADERFX")


CLASSES = (V2VZ_AddonPreferences, SEQUENCER_OT_v2vz_reprompt, SEQUENCER_OT_v2vz_cancel, SEQUENCER_PT_v2vz)
