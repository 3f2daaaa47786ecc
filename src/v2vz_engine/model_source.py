"""Where a model comes from, found without the network and without torch: a built-in model, a diffusers folder on
disk, a single-file checkpoint (.safetensors, .ckpt: single_file.py reads what it holds), or a hub model already in
the Hugging Face cache.

`locate` answers in milliseconds, so a wrong name fails at once with one line that says where it looked, how to get
the model (`v2vz models pull ID` on a machine with a network) and which known name it resembles. Loading
(models.py) starts only from what `locate` found, so it never waits on retries to a hub that cannot be reached.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from v2vz.api.errors import InvalidArgument, ModelUnavailable
from v2vz_engine.single_file import CheckpointInfo, inspect, is_checkpoint_path
from v2vz_engine.wan.folders import WAN_BUILTIN_NAMES, is_wan_folder

# Built in code with random weights (models.py): SD 1.x's layout tiny, predicting v, SDXL's layout tiny; and the
# exact architectures of SD 1.5 and SDXL base, for speed and memory figures.
# And Wan 2.1 text-to-video (FlowEdit's models, wan/models.py): its layout tiny, and the 1.3B model's architecture.
BUILTIN_NAMES: tuple[str, ...] = (
    "toyworld",
    "tiny",
    "tiny-v",
    "tiny-xl",
    "sd15-random",
    "sdxl-random",
    *WAN_BUILTIN_NAMES,
)
DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"  # the published set-up; $V2VZ_MODEL or --model choose another
COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # what a Stable Diffusion folder holds
Kind = Literal["builtin", "folder", "hub", "file"]


@dataclass(frozen=True)
class ModelSource:
    """A model that can be loaded: its name as given, what kind it is, (folder, hub, file) where its files are, and
    (file) what the checkpoint holds."""

    spec: str
    kind: Kind
    path: Path | None = None
    checkpoint: CheckpointInfo | None = None


def default_model() -> str:
    """The model of a daemon or a local edit that names none: $V2VZ_MODEL, else the published one."""
    return os.environ.get("V2VZ_MODEL") or DEFAULT_MODEL


def hub_cache() -> Path:
    """The Hugging Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub, or ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def looks_like_hub_id(spec: str) -> bool:
    """'owner/name' or 'name': not an absolute, home or dot-relative path, at most one slash, and a name the hub
    accepts (`org/..`, `not valid!!` or 97 characters are refused here, not by the hub's exception later)."""
    if not spec or spec.startswith(("/", ".", "~", "\\")) or spec.count("/") > 1 or ":" in spec:
        return False
    return hub_id_problem(spec) is None


def hub_id_problem(spec: str) -> str | None:
    """Why the hub would refuse `spec` as a repo id (letters, digits, -, _ and . only; at most 96 characters; no
    `..` or `--`; no leading or trailing - or .), or None when it is a valid one."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return (
            "not a valid hub id: owner/name of letters, digits, '-', '_' and '.', at most 96 characters, "
            "no '..' or '--', no '-' or '.' at either end"
        )
    return None


def cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub model that has the diffusers layout, or None (no network is asked)."""
    from huggingface_hub import try_to_load_from_cache

    if hub_id_problem(repo_id) is not None:
        return None  # the hub's own check would raise: a name it refuses is in no cache
    for config, parts in (("unet/config.json", ("unet", "vae", "text_encoder")), ("transformer/config.json", ())):
        found = try_to_load_from_cache(repo_id, config)
        if not isinstance(found, str):
            continue
        snapshot = Path(found).parent.parent
        if all((snapshot / part).is_dir() for part in parts) and (parts or is_wan_folder(snapshot)):
            return snapshot
    return None


def cached_hub_models() -> list[str]:
    """The hub ids in the cache that hold a Stable Diffusion (diffusers) model, sorted."""
    root = hub_cache()
    try:
        names = sorted(entry.name for entry in root.iterdir() if entry.name.startswith("models--"))
    except OSError:
        return []
    repos = ["/".join(name.removeprefix("models--").split("--")) for name in names]
    return [repo for repo in repos if cached_snapshot(repo) is not None]


def locate(spec: str) -> ModelSource:
    """The model `spec` names, or ModelUnavailable with one line: where we looked, how to get it, a close name."""
    spec = spec.strip()
    if "\x00" in spec:  # no file system or hub takes one (Path.exists would raise ValueError)
        raise InvalidArgument("the model name has a NUL byte in it: name a folder, a hub id or a built-in model")
    if spec in BUILTIN_NAMES:
        return ModelSource(spec, "builtin")
    path = Path(spec).expanduser()
    if path.is_file() and is_checkpoint_path(path):  # its family from its keys, now: a bad file is refused here
        return ModelSource(spec, "file", path, inspect(path))
    if path.is_file():
        raise ModelUnavailable(
            f"{path} is a file but not a checkpoint (.safetensors or .ckpt): pass --model a checkpoint, a diffusers "
            f"folder, a hub id or a built-in model ({', '.join(BUILTIN_NAMES)})"
        )
    if path.is_dir() and is_wan_folder(path):
        return ModelSource(spec, "folder", path)
    if path.exists():
        missing = [part for part in COMPONENTS[:3] if not (path / part).is_dir()]
        if missing:
            raise ModelUnavailable(
                f"{path} is not a diffusers Stable Diffusion folder (no {', '.join(p + '/' for p in missing)} inside): "
                f"pass --model a folder saved with save_pretrained, a .safetensors or .ckpt checkpoint, a hub id, or a "
                f"built-in model ({', '.join(BUILTIN_NAMES)})"
            )
        return ModelSource(spec, "folder", path)
    if looks_like_hub_id(spec):
        snapshot = cached_snapshot(spec)
        if snapshot is not None:
            return ModelSource(spec, "hub", snapshot)
    raise ModelUnavailable(unknown_model_message(spec))


def unknown_model_message(spec: str) -> str:
    """One line for a model that is nowhere: what was searched, the pull command, and a close known name."""
    known = [*BUILTIN_NAMES, *cached_hub_models()]
    shown = spec if len(spec) <= 200 else spec[:197] + "..."  # a 4 KB name stays a readable line
    close = difflib.get_close_matches(spec, known, n=1, cutoff=0.6)
    guess = f"did you mean `{close[0]}`? " if close else ""
    if looks_like_hub_id(spec):
        where = f"not a folder, and not in the hub cache {hub_cache()}"
    elif spec.count("/") <= 1 and not spec.startswith(("/", ".", "~", "\\")):  # meant as a hub id
        where = f"no such folder, and {hub_id_problem(spec) or 'not a hub id'}"
    else:
        where = "no such file" if is_checkpoint_path(spec) else "no such folder"
    pull = f"get it with `v2vz models pull {spec}` on a machine with a network; " if looks_like_hub_id(spec) else ""
    return (
        f"model {shown!r} is not available ({where}): {guess}{pull}"
        f"`v2vz models` lists what --model can name here (built-in: {', '.join(BUILTIN_NAMES)})"
    )


def offline() -> bool:
    """$HF_HUB_OFFLINE asks for no network at all (pulls refuse at once)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "", "false", "no")


def model_family(spec: str) -> str | None:
    """The family of the model `spec` names, without loading it: "wan" (a Wan 2.1 model: FlowEdit), "sd" (any
    Stable Diffusion model: vid2vid-zero), None when it cannot be found here (the load says why)."""
    try:
        located = locate(spec or default_model())
    except (ModelUnavailable, InvalidArgument):
        return None
    if located.kind == "builtin":
        return "wan" if located.spec in WAN_BUILTIN_NAMES else "sd"
    return "wan" if located.path is not None and located.path.is_dir() and is_wan_folder(located.path) else "sd"
