"""`v2vz edit --inversion` and its old name `--fast`: the options a job gets, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from v2vz.cli import edit as edit_command
from v2vz.cli.main import app

ARGS = ["edit", "clip.mp4", "--prompt", "a jeep", "--source-prompt", "a car", "--local"]


@pytest.fixture
def submitted(monkeypatch, tmp_path) -> list:
    """The jobs `edit --local` would run (the engine is not loaded: the flags are what is tested)."""
    monkeypatch.chdir(tmp_path)  # their takes are reserved beside clip.mp4, here
    jobs: list = []
    monkeypatch.setattr(edit_command, "run_local", lambda job, *rest: jobs.append(job))
    return jobs


@pytest.mark.parametrize(
    ("flags", "preset", "inversion"),
    [
        ([], "default", "direct"),
        ([], "published", "null-text"),
        (["--inversion", "null-text"], "default", "null-text"),
        (["--inversion", "negative-prompt"], "published", "negative-prompt"),
        (["--fast"], "published", "direct"),
        (["--fast", "--inversion", "direct"], "default", "direct"),
    ],
)
def test_the_inversion_a_job_gets(submitted, flags: list[str], preset: str, inversion: str) -> None:
    result = CliRunner().invoke(app, [*ARGS, "--preset", preset, *flags])
    assert result.exit_code == 0, result.output
    (job,) = submitted
    # the job records its source from anywhere (an absolute path, as the daemon's jobs do: issue 23, item 16)
    assert job.options.inversion == inversion and job.source == Path("clip.mp4").resolve()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--fast", "--inversion", "null-text"], "--fast is --inversion direct"),
        (["--inversion", "ddim"], "inversion must be one of direct, null-text, negative-prompt, got 'ddim'"),
    ],
)
def test_bad_inversion_flags_are_refused_in_one_line(submitted, flags: list[str], words: str) -> None:
    result = CliRunner().invoke(app, [*ARGS, *flags])
    assert result.exit_code == 2 and not submitted
    assert words in " ".join(result.stderr.split())
