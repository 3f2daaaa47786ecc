"""Shared fixtures: the real test media in ../shared/data and one `tiny` model per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIPS = SHARED / "clips"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Built-in presets are built once per session (or reused from V2VZ_TEST_CACHE to save seconds locally)."""
    reuse = os.environ.get("V2VZ_TEST_CACHE")
    return Path(reuse) if reuse else tmp_path_factory.mktemp("v2vz-cache")


@pytest.fixture(scope="session")
def tiny_model(model_cache):
    from v2vz_daemon.engine.models import load_model

    return load_model("tiny", "cpu", model_cache)


@pytest.fixture(scope="session")
def pipeline(tiny_model):
    from v2vz_daemon.engine.pipeline import VideoEditPipeline

    return VideoEditPipeline(tiny_model)


@pytest.fixture(scope="session")
def clip_frames() -> np.ndarray:
    """4 real consecutive frames of bigbuckbunny.mp4 squeezed to 64x64 (the size method.md's table measured)."""
    from v2vz_daemon.engine import video

    frames, _ = video.read_frames(CLIPS / "bigbuckbunny.mp4", 60, 4)
    return video.resize_frames(frames, 64, 64)
