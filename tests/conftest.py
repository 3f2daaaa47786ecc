"""Shared fixtures: the real test media in ../shared/data and one `tiny` model per test session."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from v2vz.api.runtime_env import prepare_environment

prepare_environment()  # as the `v2vz` command does, before any test loads torch: no spinning on shared cores

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIPS = SHARED / "clips"


def _listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")} if folder.is_dir() else set()


@pytest.fixture(scope="session", autouse=True)
def shared_data_untouched() -> Iterator[None]:
    """No test may leave a file in ../shared/data (a take written beside a shared clip, for one): it is the real
    media every session and CI share. Tests that edit it name their outputs, or set $V2VZ_TAKES_DIR. Nor a take in
    the repository's root, beside a relative source."""
    repo = Path(__file__).resolve().parents[1]
    before, top = _listing(SHARED), {path.name for path in repo.iterdir()}
    yield
    added = sorted(_listing(SHARED) - before)
    assert not added, f"tests left files in {SHARED}: {added[:5]}"
    takes = sorted(path.name for path in repo.iterdir() if path.name not in top and "-v2vz-t" in path.name)
    assert not takes, f"tests reserved takes in the repository's root (a relative source): {takes[:5]}"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Built-in presets are built once per session (or reused from V2VZ_TEST_CACHE to save seconds locally)."""
    reuse = os.environ.get("V2VZ_TEST_CACHE")
    return Path(reuse) if reuse else tmp_path_factory.mktemp("v2vz-cache")


@pytest.fixture(scope="session")
def tiny_model(model_cache):
    from v2vz_engine.models import load_model

    return load_model("tiny", "cpu", model_cache)


@pytest.fixture(scope="session")
def pipeline(tiny_model):
    from v2vz_engine.pipeline import VideoEditPipeline

    return VideoEditPipeline(tiny_model)


@pytest.fixture(scope="session")
def clip_frames() -> np.ndarray:
    """4 real consecutive frames of bigbuckbunny.mp4 squeezed to 64x64 (the size method.md's table measured)."""
    from v2vz_engine import media

    frames, _ = media.read_frames(CLIPS / "bigbuckbunny.mp4", 60, 4)
    return media.resize_frames(frames, 64, 64)


V2VZ = str(Path(sys.executable).with_name("v2vz"))  # the installed command, next to this interpreter


@contextlib.contextmanager
def serve_tiny(
    model_cache: Path, prefix: str, extra: tuple[str, ...] = (), ready_within: float = 60, env: dict | None = None
) -> Iterator[tuple[dict, Path, subprocess.Popen]]:
    """A real `v2vz serve --model tiny` subprocess, found through V2VZ_ENDPOINT as a user's client finds it.

    Yields (environment for clients, its short /tmp folder, the process). GetInfo is asked all through the model's
    loading: requests and loading must not race on imports. SIGTERM at the end. `extra`: more `serve` options, `env`:
    more environment variables.
    """
    from v2vz.api.endpoint import read_endpoint
    from v2vz.client import Client

    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # Unix socket paths must stay short
    env = {**os.environ, **(env or {}), "V2VZ_ENDPOINT": str(root / "run" / "endpoint.json")}
    log = open(root / "serve.log", "w")  # noqa: SIM115 - lives as long as the daemon
    process = subprocess.Popen(
        [V2VZ, "serve", "--model", "tiny", "--cache-dir", str(model_cache), "--device", "cpu"]
        + ["--state-dir", str(root / "state"), *extra],  # a journal of its own: other modules' daemons never share it
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, ready = time.monotonic() + ready_within, False
        while not ready and time.monotonic() < deadline:
            assert process.poll() is None, (root / "serve.log").read_text()
            if Path(env["V2VZ_ENDPOINT"]).exists():
                with Client(read_endpoint(Path(env["V2VZ_ENDPOINT"])), timeout=5) as client:
                    ready = client.info().ready
            time.sleep(0.05)
        assert ready, (root / "serve.log").read_text()
        yield env, root, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def resolve_daemon(model_cache) -> Iterator[dict]:
    """One `tiny` daemon for the Resolve script's two test modules (test_resolve_script, test_resolve_takes)."""
    with serve_tiny(model_cache, "v2vz-resolve-") as (env, root, process):
        yield env


# ---------------------------------------------------------------------------------------------------------------
# An in-process daemon on the session's `tiny` pipeline (helpers in daemon_kit.py)


@pytest.fixture()
def root():
    """A short folder: Unix socket paths are limited to about 100 characters."""
    path = Path(tempfile.mkdtemp(prefix="v2vz-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def daemon(root, pipeline):
    from .daemon_kit import make_daemon

    server = make_daemon(root, lambda: pipeline)
    server.start()
    assert server.wait_ready(30)
    yield server
    server.stop()


@pytest.fixture
def endpoint(daemon) -> dict:
    """The environment in which the installed `v2vz` talks to the in-process test daemon."""
    return {"V2VZ_ENDPOINT": str(daemon.config.endpoint_file)}
