"""v2vz for Blender's Video Sequence Editor: right-click a strip > "Re-prompt Strip..." (or "Preview Re-prompt...").

It acts on the active movie or image strip (an image strip's visible images must be a numbered sequence that the
daemon reads from the first of them). The extension runs the `v2vz` client (`v2vz edit ... --events jsonl`) as a
subprocess through v2vz_host (shared with the Resolve script): no third-party package runs inside Blender. The edited
frames land as an image strip on the first free channel above the source strip and, in the UI, the strip grows frame
by frame as the daemon writes them. Each re-prompt is a new take that never overwrites another: the earlier takes of
the strip are muted, and the sidebar lists them to switch between; a preview take's final replaces it in place. In
background mode (`bpy.app.background`) the operator runs the job to completion before it returns, so batch scripts
can use it.

The modules: `strips` (which strips, which frames, the result strip), `takes` (what a take records, finding and
switching takes), `jobs` (the running jobs and their timer, a final replacing its preview),
`ui` (preferences, operators, panel, menu entry), `compat` (Blender 4.2 to 5.2), `v2vz_host` (the client). This
file only registers them and names what scripts use.
"""

from __future__ import annotations

import bpy

from . import compat, jobs, strips, takes, ui, v2vz_host
from .jobs import JOBS, LAST_REPORT, drain_jobs, start_final, start_job
from .strips import ReportError, sequence_problem, source_range
from .ui import run_operator

__all__ = [
    "JOBS",
    "LAST_REPORT",
    "ReportError",
    "compat",
    "drain_jobs",
    "jobs",
    "register",
    "run_operator",
    "sequence_problem",
    "source_range",
    "start_final",
    "start_job",
    "strips",
    "takes",
    "ui",
    "unregister",
    "v2vz_host",
]


def register():
    for cls in ui.CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.SEQUENCER_MT_context_menu.append(ui.draw_context_menu)


def unregister():
    jobs.stop_timer()
    bpy.types.SEQUENCER_MT_context_menu.remove(ui.draw_context_menu)
    for cls in reversed(ui.CLASSES):
        bpy.utils.unregister_class(cls)
