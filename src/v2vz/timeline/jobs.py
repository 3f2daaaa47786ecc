"""One daemon job per clip to edit: planned and checked first, its take reserved, submitted, then followed.

Clips that ask for the same edit (the same frames of the same media with the same prompts, options, matte and LoRAs,
e.g. a shot cut twice into the timeline) share one job and one take. Every job writes a new take in the media folder
(`NAME-v2vz-tN.mov`, v2vz.api.takes), so nothing earlier is ever overwritten. A clip's own options (its marker's
`options:` line, its metadata's `options`) win over the command's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from v2vz.api.errors import DaemonUnavailable, JobNotFound, V2vzError
from v2vz.api.events import FINISHED_STATES, Outcome, outcome
from v2vz.api.job import EditJob, EditOptions
from v2vz.api.takes import Take, release_take, reserve_take, sidecar_path, take_output, take_record, take_stem
from v2vz.api.wire import changed_options, options_to_map, parse_option
from v2vz.timeline.clips import Candidate, Refusal
from v2vz.timeline.state import ClipPlace, EditRecord, range_to_json

CLIENT_NAME = "v2vz-timeline"


@dataclass
class Planned:
    """One job to submit and the clips it edits."""

    job: EditJob
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def names(self) -> str:
        return names_text([c.ref.name for c in self.candidates])


def names_text(names: list[str], shown: int = 5) -> str:
    """Clip names for one line: `c0, c1, c2, c3, c4 and 9,995 more` (a job shared by 10,000 clips must not print
    all of them in every line about it)."""
    listed = ", ".join(name or "a clip" for name in names[:shown])
    return listed + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def clip_options(base: EditOptions, given: dict[str, str]) -> EditOptions:
    """The run's options with a clip's own on top (its `preset` first, then each option)."""
    values = dict(given)
    preset = values.pop("preset", None)
    options = EditOptions.preset(preset) if preset else base
    options = dataclasses.replace(options, **{name: parse_option(name, text) for name, text in values.items()})
    options.validate()
    return options


def plan(
    candidates: Iterable[Candidate],
    base: EditOptions,
    model: str = "",
    audio: bool = False,
    media_dir: Path | None = None,
    container: str = "mov",
) -> tuple[list[Planned], list[Refusal]]:
    """The jobs for these clips, one per distinct edit, in timeline order, each checked as it will be submitted;
    and the clips whose own options or prompts make a job the daemon would refuse (`--steps 0` in a marker, a
    5,000-character prompt): those are left alone with the reason, the others are edited."""
    planned: dict[tuple, Planned] = {}
    refused: list[Refusal] = []
    checked: dict[tuple, str] = {}  # the reason a distinct job is refused, "" when it is fine (checked once)
    for candidate in candidates:
        try:
            job = _job_of(candidate, base, model, audio)
        except V2vzError as error:
            refused.append(Refusal(candidate.ref, f"its options: {error}", candidate.where))
            continue
        key = (str(job.source), job.start, job.frames, job.prompt, job.source_prompt, str(job.matte), job.matte_start)
        key += (job.model,)  # a marker's `model:` makes its clips a job of their own
        key += (tuple((str(lora.path), lora.scale) for lora in job.loras),)  # in order: LoRAs stack in it
        key += tuple(sorted(options_to_map(job.options).items()))
        if key not in checked:
            checked[key] = _refusal(job, media_dir, container) if media_dir is not None else ""
        if checked[key]:
            refused.append(Refusal(candidate.ref, checked[key], candidate.where))
            continue
        planned.setdefault(key, Planned(job)).candidates.append(candidate)
    return list(planned.values()), refused


def _refusal(job: EditJob, media_dir: Path, container: str) -> str:
    """Why the daemon would refuse this job ("" when it would not)."""
    try:
        dataclasses.replace(job, output=take_output(media_dir, take_stem(job.source), 1, container)).validate()
    except V2vzError as error:
        return f"its edit cannot be made: {error}"
    return ""


def _job_of(candidate: Candidate, base: EditOptions, model: str, audio: bool) -> EditJob:
    """The job that edits one clip: the run's options with the clip's own on top."""
    prompts = candidate.prompts
    options = clip_options(base, prompts.options)
    return EditJob(
        source=candidate.media.path,
        prompt=prompts.prompt,
        source_prompt=prompts.source,
        start=candidate.frames.start,
        frames=candidate.frames.frames,
        options=options,
        model=prompts.model or model,
        audio=audio,
        matte=None if candidate.matte is None else Path(candidate.matte.path).absolute(),
        matte_start=candidate.matte_start,
        loras=candidate.loras,
    )


def take_of(record: EditRecord) -> Take:
    return Take(record.take, Path(record.output), Path(record.sidecar), False)


def submit(
    client,
    planned: list[Planned],
    media_dir: Path,
    container: str,
    on_submitted: Callable[[EditRecord], None],
    on_refused: Callable[[Planned, str], None],
) -> None:
    """Reserve a take for each job and submit it. A job the daemon refuses gives its take back and is reported;
    a daemon that cannot be reached stops the run (the jobs submitted before it stay recorded)."""
    for item in planned:
        stem = take_stem(item.job.source)
        example = take_output(media_dir, stem, 1, container)
        take = reserve_take(media_dir, stem, container, record=take_record(item.job, "reserved", output=str(example)))
        job = dataclasses.replace(item.job, output=take.output, take=take.number)
        try:
            reply = client.submit(job, client=CLIENT_NAME)
        except DaemonUnavailable:
            release_take(take)
            raise
        except V2vzError as error:
            release_take(take)
            on_refused(item, str(error))
            continue
        on_submitted(
            EditRecord(
                job_id=reply.job_id,
                take=take.number,
                output=str(Path(take.output).absolute()),
                sidecar=str(sidecar_path(Path(take.output).absolute())),
                source=str(Path(job.source).absolute()),
                start=job.start,
                frames=job.frames,
                prompt=job.prompt,
                source_prompt=job.source_prompt,
                model=job.model,
                options=changed_options(job.options),
                matte=None if job.matte is None else str(job.matte),
                matte_start=job.matte_start,
                loras=[[str(lora.path), lora.scale] for lora in job.loras],
                clips=[
                    ClipPlace(c.ref.key, c.ref.name, range_to_json(c.record), c.timecode_clock) for c in item.candidates
                ],
            )
        )


def follow(client, record: EditRecord, on_event: Callable[[object], None]) -> Outcome:
    """Follow one job to its end (its whole history first: a re-run replays what it missed)."""
    last = None
    try:
        for last in client.follow(record.job_id, 0):
            on_event(last)
    except JobNotFound as error:
        return Outcome("failed", 1, str(error))
    return outcome(record.job_id, last)


def states(client, records: list[EditRecord]) -> dict[str, str]:
    """The daemon's state of each job (queued, running, done, failed, cancelled), from its newest jobs; a job
    it does not list there is left out (follow it to learn its outcome)."""
    wanted = {record.job_id for record in records}
    found: dict[str, str] = {}
    for summary in client.jobs(limit=max(200, 4 * len(wanted))):
        if summary.job_id in wanted:
            found[summary.job_id] = summary.state
    return found


def finished(state: str | None) -> bool:
    return state in FINISHED_STATES
