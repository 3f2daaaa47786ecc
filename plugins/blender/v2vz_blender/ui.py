"""What the user sees: the preferences, the operators, the sidebar panel (jobs and takes) and the strip menu's entries.

Operators: `sequencer.v2vz_reprompt` (a new take of the active strip), `sequencer.v2vz_preview` (the same, as the
fast preview pass), `sequencer.v2vz_make_final` (a preview take's final, which replaces it), `sequencer.v2vz_take`
(make a take the active one: unmuted, the others of its source muted) and `sequencer.v2vz_cancel`.
"""

from __future__ import annotations

import threading

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import compat, takes
from .jobs import (
    JOBS,
    LAST_REPORT,
    ensure_timer,
    fetch_models,
    find_client,
    job_line,
    model_suggestions,
    run_in_background,
    set_report,
    start_final,
    start_job,
)
from .strips import ReportError, active_strip


class V2VZ_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    client_path: StringProperty(
        name="v2vz client",
        description="The `v2vz` command. Empty: $V2VZ_CLIENT, else the one that built this extension, else PATH",
        subtype="FILE_PATH",
        default="",
    )

    models_dir: StringProperty(
        name="Model folders",
        description="Folders of .safetensors checkpoints (or A1111/ComfyUI roots), separated by ';', that the "
        "Model field offers (`v2vz models --models-dir`); $V2VZ_MODELS adds more",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "client_path")
        layout.prop(self, "models_dir")
        found = find_client(self.client_path)
        layout.label(text=f"Uses: {found}" if found else "Not found: give the path of `v2vz`", icon="CONSOLE")
        layout.label(text="Start the daemon with `v2vz serve` before re-prompting a strip.")


def search_models(_self, _context, edit_text: str) -> list[tuple[str, str]]:
    """The Model field's suggestions: the checkpoints `v2vz models` lists (fetched when the dialog opened)."""
    return model_suggestions(edit_text)


class EditProperties:
    """The options of a take (a mixin: Blender registers the annotations of an operator's base classes too)."""

    prompt: StringProperty(name="Prompt", description="What the edited strip should show", default="")
    source_prompt: StringProperty(name="Source prompt", description="What the strip shows now", default="")
    steps: IntProperty(name="Steps", description="DDIM steps (0: the daemon's default, 50)", default=0, min=0)
    guidance: FloatProperty(
        name="Guidance",
        description="Guidance scale (0: the method's default: 7.5, FlowEdit 13.5)",
        default=0.0,
        min=0.0,
    )
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
    method: EnumProperty(
        name="Method",
        description="How the strip is edited",
        items=(
            ("vid2vid-zero", "vid2vid-zero", "Stable Diffusion models: inversion, cross-frame attention (the default)"),
            ("flowedit", "FlowEdit", "FlowEdit on a Wan 2.1 video model (set the Model to one): no inversion"),
        ),
        default="vid2vid-zero",
    )
    preset: EnumProperty(
        name="Preset",
        items=(("default", "Default", "v2vz's settings"), ("published", "Published", "The paper's settings")),
        default="default",
    )
    model: StringProperty(
        name="Model",
        description="A model the daemon may load: a checkpoint `v2vz models` lists (offered here), a built-in, a "
        "folder or a hub id; empty: the daemon's own",
        default="",
        search=search_models,
    )
    loras: StringProperty(
        name="LoRAs",
        description="LoRA files as PATH or PATH:SCALE (scale 1 if not given), separated by ';', "
        "e.g. //ink.safetensors:0.6; /loras/grain.safetensors",
        default="",
    )

    edit_only: StringProperty(
        name="Edit only",
        description="Words of the prompts to edit (e.g. 'car'); the rest keeps the strip's own pixels. Empty: all",
        default="",
    )
    matte_strip: StringProperty(
        name="Matte",
        description="A movie, image or mask strip on a channel above the source: edit only where it is white",
        default="",
    )
    matte_feather: FloatProperty(
        name="Feather", description="Soften the matte's edge by this many source pixels", default=0.0, min=0.0
    )
    self_replace: FloatProperty(
        name="Self-replace",
        description="Fraction of the steps that keep the strip's layout and motion (the source's self-attention)",
        default=0.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    show_mask: BoolProperty(
        name="Show mask",
        description="Save the local edit's masks and show them as an image strip above the take (not for previews)",
        default=False,
    )

    PREVIEW = False  # the fast pass (`v2vz edit --preview`)
    LOCAL = ("edit_only", "matte_strip", "matte_feather", "self_replace", "show_mask")

    @classmethod
    def poll(cls, context):
        return active_strip(context) is not None

    def edit_options(self) -> dict:
        names = ("prompt", "source_prompt", "steps", "guidance", "seed", "size", "inversion", "preset", "window")
        names += ("method",)
        chosen = (*names, "model", "loras", *self.LOCAL)
        return {**{name: getattr(self, name) for name in chosen}, "preview": self.PREVIEW}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        fetch_models(context)  # on a thread: the Model field offers the checkpoints once they are listed
        return context.window_manager.invoke_props_dialog(self, width=420)

    def draw(self, context):
        layout = self.layout
        strip = active_strip(context)
        if strip is not None:
            source = strip
            if takes.is_take(strip):
                source = takes.find_source(compat.sequencer_scene(context).sequence_editor, takes.group_of(strip))
            if source is not None:
                what = "preview" if self.PREVIEW else "take"
                layout.label(text=f"{source.name}: {compat.duration(source)} frames, a new {what}", icon="SEQUENCE")
        layout.prop(self, "source_prompt")
        layout.prop(self, "prompt")
        if self.PREVIEW:
            layout.label(text="The fast pass: direct inversion, at most 10 steps, half size", icon="INFO")
        row = layout.row()
        row.prop(self, "steps")
        row.prop(self, "guidance")
        row = layout.row()
        row.prop(self, "seed")
        row.prop(self, "size")
        row = layout.row()
        row.prop(self, "window")
        row.prop(self, "inversion", text="")
        row = layout.row()
        row.prop(self, "method", text="")
        row.prop(self, "preset", text="")
        layout.prop(self, "model")
        layout.prop(self, "loras")
        self.draw_local(layout.box(), compat.sequencer_scene(context).sequence_editor)

    def draw_local(self, box, editor) -> None:
        """Edit only what the words cover or where the matte strip is white; keep the layout (self-replace)."""
        box.label(text="Local edit (empty: the whole frame)", icon="MOD_MASK")
        box.prop(self, "edit_only")
        if editor is not None:
            box.prop_search(
                self, "matte_strip", editor, "strips_all" if hasattr(editor, "strips_all") else "sequences_all"
            )
        row = box.row()
        row.prop(self, "matte_feather")
        row.prop(self, "self_replace")
        if not self.PREVIEW:
            box.prop(self, "show_mask")

    def execute(self, context):
        return run_operator(self, context, active_strip(context), self.edit_options())


class SEQUENCER_OT_v2vz_reprompt(EditProperties, bpy.types.Operator):
    """Edit the active strip's visible frames with a text prompt (v2vz): a new take on a free channel above"""

    bl_idname = "sequencer.v2vz_reprompt"
    bl_label = "Re-prompt Strip..."
    bl_options = {"REGISTER"}


class SEQUENCER_OT_v2vz_preview(EditProperties, bpy.types.Operator):
    """A fast preview of a re-prompt (v2vz): a preview take above the strip, whose final is made with Make Final"""

    bl_idname = "sequencer.v2vz_preview"
    bl_label = "Preview Re-prompt..."
    bl_options = {"REGISTER"}

    PREVIEW = True


def run_operator(operator, context, strip, options: dict) -> set[str]:
    """The operator's logic (callable directly from scripts): starts the job, or runs it in background mode.
    `options["preview"]`: the fast pass; `options["final"]`: the final of the preview take `strip`."""
    final = bool(options.get("final", False))
    try:
        if bpy.app.background:
            level, message = run_in_background(context, strip, options, final=final)
        else:
            active = start_final(context, strip) if final else start_job(context, strip, options)
            JOBS[active.key] = active
            ensure_timer()
            if final:
                message = f"v2vz: making the final of take {active.number} (see the v2vz tab)"
            else:
                message = f"v2vz: {active.label}: editing {active.result.count} frames of {active.source_name!r}"
            level = "INFO"
    except (ReportError, OSError) as exc:
        level, message = "ERROR", str(exc) if isinstance(exc, ReportError) else f"v2vz: {exc}"
    set_report(level, message)
    if operator is not None:
        operator.report({level}, message)
    else:
        print(message)
    return {"FINISHED"} if level != "ERROR" else {"CANCELLED"}


def named_strip(context, name: str):
    """A strip of the sequencer the user edits, by name; ReportError when there is none of that name."""
    scene = compat.sequencer_scene(context)
    editor = scene.sequence_editor if scene is not None else None
    strip = compat.strips_all(editor).get(name) if editor is not None and name else None
    if strip is None:
        raise ReportError(f"no strip {name!r} in the sequencer")
    return strip


class SEQUENCER_OT_v2vz_make_final(bpy.types.Operator):
    """Make the final of a preview take (full settings); it replaces the preview in place when it is done"""

    bl_idname = "sequencer.v2vz_make_final"
    bl_label = "Make Final"
    bl_options = {"REGISTER"}

    strip: StringProperty(name="Strip", description="The preview take (empty: the active strip)", default="")

    def execute(self, context):
        try:
            strip = named_strip(context, self.strip) if self.strip else active_strip(context)
        except ReportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return run_operator(self, context, strip, {"final": True})


class SEQUENCER_OT_v2vz_take(bpy.types.Operator):
    """Make this take the active one: it is unmuted, the other takes of its strip are muted"""

    bl_idname = "sequencer.v2vz_take"
    bl_label = "Make Active Take"
    bl_options = {"REGISTER", "UNDO"}

    strip: StringProperty(name="Strip", description="The take (empty: the active strip)", default="")

    def execute(self, context):
        try:
            strip = named_strip(context, self.strip) if self.strip else active_strip(context)
            if strip is None:
                raise ReportError("no active strip")
            takes.activate(compat.sequencer_scene(context).sequence_editor, strip)
        except ReportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        info = takes.info(strip)
        self.report({"INFO"}, f"v2vz: take {info['take']} ({strip.name!r}) is the active take")
        return {"FINISHED"}


class SEQUENCER_OT_v2vz_cancel(bpy.types.Operator):
    """Cancel a running v2vz edit (the frames that arrived stay; a final's preview stays)"""

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


def draw_takes(layout, editor, strip) -> None:
    """The takes of the active strip's source: prompt, model, time, preview or final, active (unmuted) or not; a
    button per take makes it the active one, a preview's makes its final."""
    listed = takes.take_list(editor, strip)
    if not listed:
        return
    source = takes.find_source(editor, takes.group_of(strip))
    box = layout.box()
    box.label(text=f"Takes of {source.name if source is not None else listed[0]['source']}", icon="RENDERLAYERS")
    running = {(active.group, active.number): active.kind for active in JOBS.values()}
    for take in listed:
        column = box.column(align=True)
        row = column.row(align=True)
        icon = "HIDE_OFF" if take["active"] else "HIDE_ON"
        mark = " (selected)" if take["name"] == strip.name else ""
        row.label(text=f"{take['take']}: {take['prompt']}{mark}", icon=icon)
        if take["active"]:
            row.label(text="active")
        else:
            row.operator(SEQUENCER_OT_v2vz_take.bl_idname, text="Make Active").strip = take["name"]
        what = "preview" if take["preview"] else "final"
        column.label(text=f"{what} | {take['model'] or 'daemon model'} | {take['time']}")
        job = running.get((take["take_of"], take["take"]))
        if take["preview"] and job is None:
            column.operator(SEQUENCER_OT_v2vz_make_final.bl_idname, icon="CHECKMARK").strip = take["name"]
        elif job is not None:
            column.label(text="making its final..." if job == "final" else "being made...", icon="SORTTIME")


class SEQUENCER_PT_v2vz(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "v2vz"
    bl_label = "v2vz"

    def draw(self, context):
        layout = self.layout
        strip = active_strip(context)
        layout.label(text=strip.name if strip is not None else "No active strip", icon="SEQUENCE")
        row = layout.row(align=True)
        row.operator(SEQUENCER_OT_v2vz_reprompt.bl_idname, icon="SHADERFX")
        row.operator(SEQUENCER_OT_v2vz_preview.bl_idname, text="Preview...", icon="PLAY")
        for active in JOBS.values():
            box = layout.box()
            box.label(text=f"{active.source_name} {active.label} -> channel {active.result.channel}")
            if hasattr(box, "progress"):
                box.progress(factor=active.runner.state.progress, type="BAR", text=job_line(active))
            else:
                box.label(text=job_line(active))
            box.operator(SEQUENCER_OT_v2vz_cancel.bl_idname, text="Cancel", icon="CANCEL").job = active.key
        if strip is not None:
            draw_takes(layout, compat.sequencer_scene(context).sequence_editor, strip)
        if LAST_REPORT:
            icon = "ERROR" if LAST_REPORT["level"] == "ERROR" else "INFO"
            layout.label(text=LAST_REPORT["message"], icon=icon)


def draw_context_menu(self, context):
    self.layout.separator()
    self.layout.operator_context = "INVOKE_DEFAULT"
    self.layout.operator(SEQUENCER_OT_v2vz_reprompt.bl_idname, icon="SHADERFX")
    self.layout.operator(SEQUENCER_OT_v2vz_preview.bl_idname, icon="PLAY")


CLASSES = (
    V2VZ_AddonPreferences,
    SEQUENCER_OT_v2vz_reprompt,
    SEQUENCER_OT_v2vz_preview,
    SEQUENCER_OT_v2vz_make_final,
    SEQUENCER_OT_v2vz_take,
    SEQUENCER_OT_v2vz_cancel,
    SEQUENCER_PT_v2vz,
)
