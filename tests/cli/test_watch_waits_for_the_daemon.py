"""`v2vz watch` on a new user's first day (issue 23): a daemon that goes away and comes back, control characters in
what it prints, and sidecars or a state file nested deep enough to exhaust the parser's stack."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from v2vz.api.endpoint import read_endpoint
from v2vz.api.errors import InvalidArgument
from v2vz.client import Client
from v2vz.watchfolder.settings import resolve_job
from v2vz.watchfolder.state import STATE_NAME, State

from ..conftest import CLIPS, serve_tiny

V2VZ = str(Path(sys.executable).with_name("v2vz"))
BIKES = CLIPS / "bikes.mp4"
PROMPTS = 'source_prompt = "people riding bikes on a road"\nprompt = "people riding horses on a road"\n'


def wait_for(condition, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log.read_text() if log else ''}"
        time.sleep(0.05)


def start_daemon(model_cache: Path, root: Path, env: dict) -> subprocess.Popen:
    """`v2vz serve` again on the state folder and endpoint file of a daemon that stopped: as after a restart."""
    log = open(root / "serve-again.log", "a")  # noqa: SIM115 - closed with the process by the caller
    args = [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(model_cache), "--device", "cpu"]
    return subprocess.Popen([*args, "--state-dir", str(root / "state")], env=env, stdout=log, stderr=log)


def jobs_for(env: dict, source: Path) -> list:
    with Client(read_endpoint(Path(env["V2VZ_ENDPOINT"])), timeout=5) as client:
        return [job for job in client.jobs(limit=200) if job.source == str(source.resolve())]


def test_the_watcher_waits_for_a_daemon_that_went_away_and_loses_nothing(model_cache, tmp_path):
    """Item 13: the daemon stops mid-job and a clip arrives while it is away: the watcher says it waits (once),
    keeps running, says when the daemon is back, and then both clips are edited exactly once."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "v2vz.toml").write_text("frames = 3\nsteps = 3\n" + PROMPTS)
    log = tmp_path / "watch.log"
    with serve_tiny(model_cache, "v2vz-r3w-") as (env, root, first):
        again = None
        with open(log, "w") as handle:
            watcher = subprocess.Popen(
                [V2VZ, "watch", str(in_dir), "--out", str(out_dir), "--settle", "0.3"],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for(lambda: "watching" in log.read_text(), 30, "the watcher to start", log)
                (in_dir / "running.toml").write_text("steps = 6\n")  # long enough to be cut off by the stop
                shutil.copy(BIKES, in_dir / "running.mp4")
                wait_for(lambda: "running.mp4: " in log.read_text(), 30, "the job to start", log)
                wait_for(lambda: jobs_for(env, in_dir / "running.mp4")[0].state == "running", 30, "running", log)
                first.send_signal(signal.SIGKILL)  # the daemon dies mid-job: its journal keeps the job
                first.wait(10)
                shutil.copy(BIKES, in_dir / "arrived.mp4")  # a clip that arrives while no daemon is there
                wait_for(lambda: "waiting for the daemon" in log.read_text(), 30, "the waiting line", log)
                time.sleep(2.0)  # settled, and more than one attempt to reach the daemon
                assert watcher.poll() is None, log.read_text()
                assert (in_dir / "arrived.mp4").exists() and (in_dir / "running.mp4").exists()
                again = start_daemon(model_cache, root, env)
                wait_for(lambda: "the daemon is back" in log.read_text(), 60, "the back line", log)
                for name in ("running.mp4", "arrived.mp4"):
                    wait_for(lambda n=name: (in_dir / "done" / n).exists(), 400, f"{name} in done/", log)
                watcher.send_signal(signal.SIGTERM)
                assert watcher.wait(30) == 0, log.read_text()
                for name in ("running.mp4", "arrived.mp4"):
                    jobs = jobs_for(env, in_dir / name)
                    assert [job.state for job in jobs] == ["done"], (name, jobs)  # exactly once
                    assert (out_dir / name).stat().st_size > 0
            finally:
                for process in (watcher, again):
                    if process is not None and process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                        process.wait(30)
    text = log.read_text()
    assert "Traceback" not in text and "error:" not in text, text
    assert text.count("waiting for the daemon") == 1 and text.count("the daemon is back") == 1, text
    assert text.index("waiting for the daemon") < text.index("the daemon is back") < text.index("arrived.mp4 -> ")


# ---------------------------------------------------------------------------------------------------------------
# Item 7: sidecars and the state file nested deep enough to exhaust a recursive parser


@pytest.mark.parametrize("name", ["v2vz.toml", "clip.toml"])
@pytest.mark.parametrize("nested", ["[" * 200_000, "{x=" * 200_000], ids=["arrays", "inline tables"])
def test_a_deeply_nested_sidecar_is_one_line_naming_it(tmp_path: Path, name: str, nested: str):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / name).write_text(PROMPTS + "steps = " + nested + "\n")
    with pytest.raises(InvalidArgument) as raised:
        resolve_job(tmp_path / "clip.mp4", tmp_path / "out")
    message = str(raised.value)
    assert message.startswith(f"{name} is not valid TOML") and "nested more than" in message, message
    assert "\n" not in message and len(message) < 200


def test_a_sidecar_nested_as_deep_as_a_real_one_still_works(tmp_path: Path):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "clip.toml").write_text(PROMPTS + '# [[[[ brackets in a comment and "[[[" in a string\n')
    job = resolve_job(tmp_path / "clip.mp4", tmp_path / "out")
    assert job.prompt == "people riding horses on a road"


def test_a_deeply_nested_state_file_is_a_warning_and_remembers_nothing(tmp_path: Path):
    path = tmp_path / STATE_NAME
    path.write_text('{"version": 1, "files": ' + "[" * 200_000 + "\n")
    state = State(path)
    warning = state.load()
    assert warning is not None and warning.startswith(f"warning: ignoring the unreadable {STATE_NAME}"), warning
    assert "nests more than" in warning and state.items() == []
    state.put("a.mp4", {"job_id": "abc"})  # and it is written afresh
    assert json.loads(path.read_text())["files"] == {"a.mp4": {"job_id": "abc"}}
