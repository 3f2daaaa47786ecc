"""Telling a Wan model from a Stable Diffusion one without torch: model_source.py answers in milliseconds and must
not import it (a wrong name fails at once), so the names and the folder test live here, apart from the loading."""

from __future__ import annotations

import json
from pathlib import Path

WAN_BUILTIN_NAMES: tuple[str, ...] = ("tiny-wan", "wan-random")  # models.WAN_BUILTINS' keys


def _class_name(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def is_wan_folder(path: str | Path) -> bool:
    """A Wan 2.1 diffusers folder (what WanPipeline.save_pretrained writes), told apart from an SD one before any
    loading: model_index.json names WanPipeline, or transformer/config.json names WanTransformer3DModel."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return False
    return (
        _class_name(folder / "model_index.json") == "WanPipeline"
        or _class_name(folder / "transformer" / "config.json") == "WanTransformer3DModel"
    )
