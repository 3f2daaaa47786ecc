"""A bounded chaos run in the suite: a few random SIGKILLs of a real daemon and of a real watcher (tests/chaos.py
has the long run that prints its figures). Nothing lost, nothing repeated, no temporary file left."""

from __future__ import annotations

import random
from pathlib import Path

from ..chaos import daemon_chaos, watcher_chaos


def test_killing_the_daemon_loses_and_repeats_nothing(root: Path, model_cache: Path):
    figures = daemon_chaos(root / "d", model_cache, kills=3, jobs=3, rng=random.Random(7))
    assert figures["daemon starts"] == 4
    assert figures["jobs lost"] == 0 and figures["jobs repeated"] == 0, figures
    assert figures["temporaries left"] == [], figures


def test_killing_the_watcher_loses_and_repeats_nothing(root: Path, model_cache: Path):
    figures = watcher_chaos(root / "w", model_cache, kills=3, clips=3, rng=random.Random(11))
    assert figures["clips lost"] == 0 and figures["clips repeated"] == 0, figures
    assert figures["temporaries left"] == [], figures
