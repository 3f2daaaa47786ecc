"""The CLI on a new user's first day (issue 23): control characters in what it prints, words that say what is true,
progress that is neither wrong nor stale (replays, whole jobs in windows, queue positions)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from v2vz.api.v1 import editor_pb2 as pb
from v2vz.cli import output
from v2vz.cli.follow import follow_with_bars
from v2vz.cli.output import StageBars, printable

from ..cli_kit import lines, one_error
from ..cli_kit import run as run_in_terminal
from ..conftest import CLIPS
from ..daemon_kit import connect, make_daemon, request

BIKES = CLIPS / "bikes.mp4"
EDIT = ["-p", "people riding horses on a road", "-s", "people riding bikes on a road"]


def run(args: list[str], env: dict | None = None, timeout: float = 120, cwd: Path | None = None):
    return run_in_terminal(args, env, timeout, cwd, columns=100)


HOSTILE = "a jeep\x1b[2J\x1b[31m in red\x1b[0m\nerror: fake line\r\u202eevil"


def no_controls(text: str) -> bool:
    """Nothing but printable characters and line ends: no escape sequence, carriage return or bidi override."""
    return all(char == "\n" or char.isprintable() for char in text) and "\u202e" not in text


# ---------------------------------------------------------------------------------------------------------------
# Item 12: control characters from prompts and paths never reach the terminal


def test_printable_escapes_control_characters_and_keeps_the_rest():
    assert printable(HOSTILE) == "a jeep\\x1b[2J\\x1b[31m in red\\x1b[0m\\nerror: fake line\\r\\u202eevil"
    assert printable("Ünïcödé jeep 🚙, C:\\clips\\a.mp4") == "Ünïcödé jeep 🚙, C:\\clips\\a.mp4"


def test_jobs_and_errors_show_a_hostile_prompt_and_path_escaped(daemon, root, endpoint, tmp_path):
    stub, md = connect(daemon)
    job_id = stub.SubmitEdit(request(root / "out", prompt=HOSTILE, options={"steps": "2"}), metadata=md).job_id
    listed = run(["jobs"], endpoint)
    assert listed.returncode == 0, listed.stderr
    assert no_controls(listed.stdout), repr(listed.stdout)
    prompt_lines = [line for line in lines(listed.stdout) if "prompt:" in line]
    assert prompt_lines == ["    prompt: " + printable(HOSTILE)], listed.stdout
    assert not any(line.startswith("error:") for line in lines(listed.stdout))  # the newline made no line of its own
    # An error that quotes a path: one line, escaped, exit 2.
    clip = tmp_path / "clip\x1b[31m\nerror: fake.mp4"
    missing = run(["edit", str(clip), *EDIT, "--out", str(tmp_path / "o.mp4")], endpoint)
    said = one_error(missing, "clip\\x1b[31m", "does not exist")
    assert no_controls(missing.stderr), repr(missing.stderr)
    assert said.count("error:") == 2  # ours, and the escaped one inside the quoted name
    stub.CancelJob(pb.CancelJobRequest(job_id=job_id), metadata=md)


def test_the_watch_folder_prints_a_clip_name_escaped(tmp_path):
    """A clip named with an escape sequence waits for its prompt: the line names it escaped."""
    from rich.console import Console

    from v2vz.watchfolder.reporter import Reporter

    console = Console(file=(tmp_path / "out.txt").open("w"), force_terminal=False)
    with Reporter(console) as reporter:
        reporter.line("clip\x1b[2J.mp4 waits: add prompt")
        reporter.step("clip\x1b[2J.mp4", "edit", 1, 2)
    console.file.close()
    text = (tmp_path / "out.txt").read_text()
    assert "\x1b" not in text and text.count("clip\\x1b[2J.mp4") == 2, repr(text)


# ---------------------------------------------------------------------------------------------------------------
# Item 15: words


def test_only_edit_offers_local_when_there_is_no_daemon(tmp_path):
    env = {"V2VZ_ENDPOINT": str(tmp_path / "none" / "endpoint.json")}
    for args in (["jobs"], ["status"], ["attach", "abc"], ["cancel", "abc"], ["final", "abc"]):
        said = one_error(run(args, env), "v2vz serve")
        assert "--local" not in said, (args, said)
    said = one_error(run(["edit", str(BIKES), *EDIT, "--out", str(tmp_path / "o.mp4")], env), "v2vz serve")
    assert "pass --local" in said


def test_a_missing_prompt_is_required_in_the_help_and_in_one_clean_line():
    for args, option in (([str(BIKES), "-p", "a jeep"], "--source-prompt"), ([str(BIKES), "-s", "bikes"], "--prompt")):
        said = one_error(run(["edit", *args]), f"Missing option '{option}'", "required", "v2vz edit --help")
        assert ".;" not in said and "is empty" not in said, said
    helped = run(["edit", "--help"], {"COLUMNS": "200"}).stdout
    row = next(line for line in helped.splitlines() if "--source-prompt" in line)
    assert row.lstrip("│ ").startswith("*") and "[required]" in helped, helped  # marked required, as --prompt


def test_help_says_the_defaults_that_hold():
    plugin = " ".join(run(["plugin", "install", "--help"], {"COLUMNS": "200"}).stdout.replace("│", " ").split())
    assert "blender: the zip is written here instead of the current folder" in plugin, plugin
    serve = " ".join(run(["serve", "--help"], {"COLUMNS": "200"}).stdout.replace("│", " ").split())
    assert "Default: $V2VZ_MODEL, else CompVis/stable-diffusion-v1-4" in serve, serve


def test_a_codec_refusal_names_the_take_that_would_be_written(tmp_path):
    (tmp_path / "bikes-v2vz-t1.mp4").write_bytes(b"an earlier take")
    (tmp_path / "bikes-v2vz-t2.mp4").write_bytes(b"another")
    env = {"V2VZ_ENDPOINT": str(tmp_path / "none" / "endpoint.json")}
    done = run(["edit", str(BIKES), *EDIT, "--out-dir", str(tmp_path), "--codec", "prores_4444"], env)
    said = one_error(done, "--codec prores_4444", "bikes-v2vz-t3.mp4")
    assert "t1" not in said and "t2" not in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bikes-v2vz-t1.mp4", "bikes-v2vz-t2.mp4"]


def test_png_frames_alone_say_their_count_once(daemon, endpoint, tmp_path):
    frames = tmp_path / "frames"
    done = run(["edit", str(BIKES), *EDIT, "--frames", "2", "--steps", "2", "--out", f"{frames}/"], endpoint)
    assert done.returncode == 0, done.stderr
    wrote = lines(done.stderr)[-1]
    assert re.fullmatch(rf"wrote 2 PNG frames in {re.escape(str(frames))} in \d+\.\d s", wrote), wrote
    assert len(list(frames.glob("*.png"))) == 2


# ---------------------------------------------------------------------------------------------------------------
# Item 14: progress that is neither wrong nor stale


def progress_event(sequence: int, at: float, stage: str, step: int, total: int, window: int = 1, windows: int = 1):
    return pb.JobEvent(
        job_id="abc",
        sequence=sequence,
        time_unix=at,
        progress=pb.Progress(stage=stage, step=step, total=total, window=window, windows=windows),
    )


class ReplayClient:
    """A client whose follow() hands over a recorded history at once, as the daemon replays it to `attach`."""

    def __init__(self, events: list[pb.JobEvent]) -> None:
        self.events = events

    def follow(self, job_id: str, after: int = 0):
        yield from self.events


@pytest.fixture
def plain_lines(monkeypatch, capsys):
    """StageBars' plain-line mode (stderr not a terminal), every line printed, the lines returned."""
    monkeypatch.setenv("V2VZ_PROGRESS_SECONDS", "0")
    assert not output.err.is_terminal

    def said() -> list[str]:
        return lines(capsys.readouterr().err)

    return said


def test_attach_estimates_a_replayed_history_from_the_events_times(plain_lines):
    """43 of 50 edit steps at 2 s a step, replayed in an instant: about 14 s left, never `about 1 s`."""
    began = 1_767_225_600.0
    events = [progress_event(1, began, "start", 0, 1)]
    events += [progress_event(1 + step, began + 2.0 * step, "edit", step, 50) for step in range(1, 44)]
    follow_with_bars(ReplayClient(events), "abc", 0, quiet=False)
    said = plain_lines()
    assert said[-1] == "editing 43/50, about 14 s left", said


def test_a_job_in_windows_says_the_whole_jobs_time_left(plain_lines):
    """4 windows of 10 edit steps, 20 s each: at window 3's 5th step, the whole job has 30 s left."""
    began, events, sequence = 1_767_225_600.0, [], 0
    for window in (1, 2, 3):
        start = began + 20.0 * (window - 1)
        sequence += 1
        events.append(progress_event(sequence, start, "window", window, 4, window, 4))
        for step in range(1, 11 if window < 3 else 6):
            sequence += 1
            events.append(progress_event(sequence, start + 2.0 * step, "edit", step, 10, window, 4))
    follow_with_bars(ReplayClient(events), "abc", 0, quiet=False)
    said = plain_lines()
    assert "window 3/4, the whole job about 40 s left" in said, said
    assert said[-1] == "editing 5/10 (window 3/4), about 10 s left (the whole job: about 30 s left)", said


def test_a_queued_job_hears_when_a_preview_goes_ahead_and_when_it_is_next_again(root, pipeline):
    """The daemon records a new `queued` event (in sequence, without gaps) whenever the jobs ahead change."""
    never = threading.Event()
    daemon = make_daemon(root, lambda: (never.wait(60), pipeline)[1])  # never ready: every job stays queued
    daemon.start()
    try:
        stub, md = connect(daemon)
        final = stub.SubmitEdit(request(root / "final", options={"steps": "2"}), metadata=md).job_id
        seen: list[pb.JobEvent] = []

        def follow() -> None:
            call = stub.WatchJob(pb.WatchJobRequest(job_id=final), metadata=md, timeout=60)
            for event in call:
                seen.append(event)
                if len(seen) == 3:
                    break
            call.cancel()

        follower = threading.Thread(target=follow)
        follower.start()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        preview = stub.SubmitEdit(request(root / "preview", options={"steps": "2"}, preview=True), metadata=md)
        assert preview.queue_position == 0  # a preview goes ahead of the queued final
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stub.CancelJob(pb.CancelJobRequest(job_id=preview.job_id), metadata=md)
        follower.join(10)
        assert [(e.sequence, e.WhichOneof("kind"), e.queued.position) for e in seen] == [
            (1, "queued", 0),
            (2, "queued", 1),
            (3, "queued", 0),
        ], seen
    finally:
        never.set()
        daemon.stop()


def test_the_status_line_of_a_queued_job_says_how_many_are_ahead(plain_lines):
    with StageBars(False, "job abc") as bars:
        bars.queued(2)
        bars.queued(0)
    assert plain_lines() == ["queued: 2 job(s) ahead of it", "queued: it runs next"]
