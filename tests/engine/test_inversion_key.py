"""The inversion's cache key: content-based, deterministic, and changed by everything an inversion depends on."""

from __future__ import annotations

import numpy as np
import pytest

from v2vz.api.job import EditOptions
from v2vz_engine.inversion import cache_key, frames_digest

OPTIONS = EditOptions(steps=4).inversion_key()


@pytest.fixture
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(4, 16, 24, 3), dtype=np.uint8)


def base_key(frames: np.ndarray, **changes) -> str:
    args = dict(
        frames_digest=frames_digest(frames),
        start=10,
        count=4,
        width=24,
        height=16,
        model="tiny",
        source_prompt="a car on a road",
        inversion_options=OPTIONS,
    )
    args.update(changes)
    return cache_key(**args)


def test_the_key_is_deterministic_and_content_based(frames):
    key = base_key(frames)
    assert len(key) == 64 and int(key, 16) >= 0
    assert base_key(frames.copy()) == key
    assert base_key(np.asfortranarray(frames)) == key  # same pixels, other memory layout
    # Everything a target prompt could change lives outside these inputs: options that only affect editing too.
    edit_only = EditOptions(steps=4, cross_replace=0.2, attention="published", null_start=0.5, refine_cross_replace=0.1)
    assert base_key(frames, inversion_options=edit_only.inversion_key()) == key


def changed_pixel(frames: np.ndarray) -> np.ndarray:
    other = frames.copy()
    other[3, 15, 23, 2] ^= 1
    return other


@pytest.mark.parametrize(
    "change",
    [
        {"start": 11},
        {"count": 5},
        {"width": 25},
        {"height": 17},
        {"model": "sd14"},
        {"source_prompt": "a car on a road."},
        *({"inversion_options": {**OPTIONS, name: "changed"}} for name in OPTIONS),
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items())[:40],
)
def test_every_input_changes_the_key(frames, change):
    assert base_key(frames, **change) != base_key(frames)


def test_every_inversion_option_reaches_the_key(frames):
    for options in (
        EditOptions(steps=5),
        EditOptions(steps=4, size=256),
        EditOptions(steps=4, inversion="null-text"),
        EditOptions(steps=4, inversion="negative-prompt"),
        EditOptions(steps=4, inversion_prompt="empty"),
        EditOptions(steps=4, joint_groupnorm=True),
        EditOptions(steps=4, vae_encode="sample"),
    ):
        assert base_key(frames, inversion_options=options.inversion_key()) != base_key(frames), options
    null_text = EditOptions(steps=4, inversion="null-text")
    reference = base_key(frames, inversion_options=null_text.inversion_key())
    for changes in (
        {"guidance": 7.0},
        {"null_inner_steps": 2},
        {"null_lr": 1e-3},
        {"null_lr_decay": "published"},
        {"null_early_stop": False},
    ):
        changed = null_text.replace(**changes).inversion_key()
        assert base_key(frames, inversion_options=changed) != reference, changes


def test_frames_digest_sees_one_pixel_shape_and_dtype(frames):
    digest = frames_digest(frames)
    assert frames_digest(changed_pixel(frames)) != digest
    assert base_key(changed_pixel(frames)) != base_key(frames)
    assert frames_digest(frames.reshape(4, 24, 16, 3)) != digest  # same bytes, other shape
    assert frames_digest(frames.view(np.int8)) != digest  # same bytes, other dtype
    assert frames_digest(np.ascontiguousarray(frames[:, ::-1])) == frames_digest(frames[:, ::-1].copy())
