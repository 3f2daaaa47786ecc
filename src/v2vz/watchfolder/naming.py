"""Where a watched clip's edit goes: a name in OUT that holds no earlier edit and no job in flight."""

from __future__ import annotations

import os
from pathlib import Path


def free_output(
    out_dir: Path, stem: str, claimed: set[str], suffix: str = "mp4", mask_root: Path | None = None
) -> Path:
    """OUT/STEM.mp4, or STEM-2.mp4, STEM-3.mp4, ... when that name holds an earlier edit or belongs to a job still in
    flight (a.mp4 and a.mov, or a clip dropped again): a watch folder never overwrites work. `suffix`: mp4 or mov.
    A `%` in the stem becomes `_`, as in take names: `pct%04d.mov` -> `pct_04d.mp4`, never a frame pattern.
    `mask_root` (save_mask): an edit's masks go to MASK_ROOT/ITS_STEM, so a stem whose mask folder exists is taken."""
    stem = stem.replace("%", "_")
    candidate, number = out_dir / f"{stem}.{suffix}", 1
    while _taken(candidate, claimed, mask_root):
        number += 1
        candidate = out_dir / f"{stem}-{number}.{suffix}"
    return candidate.resolve()


def _taken(candidate: Path, claimed: set[str], mask_root: Path | None) -> bool:
    """An earlier edit, a job in flight, or an earlier edit's masks have this name."""
    if candidate.exists() or str(candidate.resolve()) in claimed:
        return True
    return mask_root is not None and os.path.lexists(mask_root / candidate.stem)
