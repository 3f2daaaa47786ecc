"""Wan 2.1 text-to-video models for FlowEdit: loading (a Wan diffusers folder, a cached hub id, a single-file
transformer, the random-weight built-ins tiny-wan and wan-random) and the codecs the method needs.

The names below load on first use: `v2vz_engine.wan.folders` (is_wan_folder, WAN_BUILTIN_NAMES) stays importable
without torch, as model_source.py needs."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "WAN_BUILTIN_NAMES": "folders",
    "is_wan_folder": "folders",
    "WAN_BUILTINS": "models",
    "WanModel": "models",
    "ensure_wan_builtin": "models",
    "load_transformer_file": "models",
    "load_wan": "models",
    "decode_video": "codecs",
    "denormalize_latents": "codecs",
    "encode_prompt": "codecs",
    "encode_video": "codecs",
    "normalize_latents": "codecs",
    "predict_velocity": "codecs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
