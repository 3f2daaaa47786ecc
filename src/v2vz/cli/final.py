"""`v2vz final PREVIEW`: the final of a preview, in one action: the same clip, range, prompts, model and options
without the preview pass, as the same take; once it is done the preview's own files go."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.errors import AmbiguousJob, InvalidArgument, JobNotFound, V2vzError
from v2vz.api.formats import SUFFIX_CONTAINERS
from v2vz.api.takes import (
    PREVIEW_TAG,
    REPLACES_KEY,
    final_of,
    job_from_record,
    moved_from,
    read_sidecar,
    remove_take_files,
    sidecar_of,
    sidecar_path,
    take_output,
    take_stem,
)
from v2vz.cli.edit import TakePlan, run_edit, split_output
from v2vz.cli.follow import EventsOption
from v2vz.cli.output import fail, refuse, say

_SEARCHED_JOBS = 1000  # how far back `final JOB` looks in the daemon's journal


def final(
    preview: Annotated[
        str,
        typer.Argument(
            help="The preview: its job id (or any unique start of it), its output file, or its .v2vz.json sidecar."
        ),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            help="Where the final goes, as for `v2vz edit --out`; default: the preview's take name without "
            "-preview (NAME-v2vz-t3.mp4)."
        ),
    ] = None,
    keep_preview: Annotated[
        bool, typer.Option("--keep-preview", help="Keep the preview's files once the final is done.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    events: EventsOption = None,
) -> None:
    """Make the final of a preview (`v2vz edit --preview`): it replaces the preview as the same take."""
    jsonl = events is not None
    try:
        record_path = _sidecar_for(preview)
        record = read_sidecar(record_path)
        preview_job = job_from_record(record)
        if not preview_job.preview:
            raise InvalidArgument(f"{record_path} records a final take, not a preview: it is final already")
        if record.get("state") != "done":
            raise InvalidArgument(
                f"the preview {record.get('output') or record_path} is not done yet ({record.get('state')}): its "
                "final can be made once it is (`v2vz jobs` shows it)"
            )
        output, frames_dir = split_output(out)
        job = final_of(preview_job, output, frames_dir)
        plan = None
        if out is None:
            plan = _plan_from_preview(preview_job, moved_from(record, record_path) and record_path.absolute().parent)
            if plan is None:
                raise InvalidArgument(
                    f"the preview {preview_job.output or preview_job.out_frames_dir} has no take name: give the "
                    "final's --out"
                )

        def drop_preview() -> None:
            if keep_preview:
                return
            remove_take_files(record, record_path)  # what the job's own end left (the engine removes it as it ends)
            if not jsonl and not record_path.exists():
                say("the preview's own files are removed: the final replaces it")

        if plan is not None and _final_made(job, plan):
            drop_preview()  # its client went away before it could: the preview goes now, the final stays
            return
        replaces = None if keep_preview else {REPLACES_KEY: str(record_path.absolute())}
        run_edit(job, plan, local=False, jsonl=jsonl, quiet=quiet, on_done=drop_preview, record_extra=replaces)
    except V2vzError as exc:
        raise refuse(exc, jsonl) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def _final_made(job, plan: TakePlan) -> bool:
    """True when this preview's final is there already, done (its client lost the daemon before removing the
    preview); InvalidArgument while it is reserved but not written. False: no final of this take yet."""
    folder, stem = plan.place(job)
    final_sidecar = sidecar_path(take_output(folder, stem, plan.number, plan.container))
    if not final_sidecar.exists():
        return False
    try:
        made = read_sidecar(final_sidecar)
        made_job = job_from_record(made)
    except V2vzError:
        return False  # not a record of ours: reserve_take refuses the number with its own message
    same = {"output": None, "take": None, "model": ""}
    if dataclasses.replace(made_job, **same) != dataclasses.replace(job, **same):
        return False  # another job's take: reserve_take says the number is taken
    if made.get("state") != "done":
        raise InvalidArgument(
            f"the final of take {plan.number} is on its way but not written yet (`v2vz jobs` shows it): run "
            "`v2vz final` again once it is done to remove the preview"
        )
    say(f"take {plan.number}'s final {made.get('output') or final_sidecar} was made already")
    return True


def _plan_from_preview(job, moved_to: Path | None = None) -> TakePlan | None:
    """The final's take: the preview's number and format, in the preview's folder (None: it has no take name).
    `moved_to`: the folder the preview's sidecar has been moved to since it was written; the final goes there."""
    if job.take is None or job.output is None:
        return None
    output = Path(job.output)
    stem = take_stem(Path(job.source))
    container = SUFFIX_CONTAINERS.get(output.suffix.lower())
    folder = moved_to or output.parent
    if folder.name.endswith(PREVIEW_TAG) and folder.name.startswith(stem):  # frames: NAME-v2vz-t3-preview/...
        folder = folder.parent
    if container is None:
        return None
    return TakePlan(folder, container, job.take)


def _sidecar_for(given: str) -> Path:
    """A path names the sidecar (or the output beside it); anything else is a job id the daemon knows."""
    path = Path(given).expanduser()
    if path.exists() or path.suffix:
        return sidecar_of(path)
    from v2vz.client import Client

    wanted = given.strip().lower()
    with Client() as client:
        matches = [job for job in client.jobs(_SEARCHED_JOBS) if job.job_id.startswith(wanted)]
    if not matches:
        raise JobNotFound(f"no job {given!r} among the daemon's last {_SEARCHED_JOBS}: `v2vz jobs` lists them")
    if len(matches) > 1:
        raise AmbiguousJob(f"{given!r} starts more than one job id ({', '.join(j.job_id for j in matches[:5])})")
    summary = matches[0]
    if not summary.preview:
        raise InvalidArgument(f"job {summary.job_id} is not a preview: it is final already")
    if summary.state != "done":
        raise InvalidArgument(f"job {summary.job_id} is {summary.state}: its final can be made once it is done")
    output = Path(summary.output) if summary.output else None
    frames_dir = Path(summary.out_frames_dir) if summary.out_frames_dir else None
    return sidecar_path(output, frames_dir)
