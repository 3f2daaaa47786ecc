"""Where a watched clip's edit goes: a name in OUT that holds no earlier edit and no job in flight."""

from __future__ import annotations

from pathlib import Path


def free_output(out_dir: Path, stem: str, claimed: set[str], suffix: str = "mp4") -> Path:
    """OUT/STEM.mp4, or STEM-2.mp4, STEM-3.mp4, ... when that name holds an earlier edit or belongs to a job still in
    flight (a.mp4 and a.mov, or a clip dropped again): a watch folder never overwrites work. `suffix`: mp4 or mov.
    A `%` in the stem becomes `_`, as in take names: `pct%04d.mov` -> `pct_04d.mp4`, never a frame pattern."""
    stem = stem.replace("%", "_")
    candidate, number = out_dir / f"{stem}.{suffix}", 1
    while candidate.exists() or str(candidate.resolve()) in claimed:
        number += 1
        candidate = out_dir / f"{stem}-{number}.{suffix}"
    return candidate.resolve()
