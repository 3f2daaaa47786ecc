"""`v2vz models`: the models this machine can edit with; `v2vz models pull ID`: fetch one from the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.endpoint import cache_root
from v2vz.api.errors import ModelUnavailable, V2vzError
from v2vz.cli.output import emit_json_list, fail, print_line, refuse, say

models_app = typer.Typer(
    help="The models v2vz can edit with here (built-in, folders, checkpoint files, the hub cache); `pull` fetches one.",
    invoke_without_command=True,
)


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout instead of lines.")] = False,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where built-in models are kept (default ~/.cache/v2vz).")
    ] = None,
    models_dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--models-dir",
            help="A folder of .safetensors/.ckpt checkpoints, or an A1111 or ComfyUI root (repeatable; "
            "$V2VZ_MODELS adds more).",
        ),
    ] = None,
) -> None:
    """List the built-in models, the model folders the daemon has used, the checkpoint files in the model folders
    (with family, prediction type and size) and the hub models in the local cache; the one on the daemon's device is
    marked `*`."""
    if ctx.invoked_subcommand is not None:
        return
    from v2vz_engine.model_source import BUILTIN_NAMES, cached_hub_models, default_model, hub_cache

    resident, default, used = _daemon_models()
    default = default or default_model()
    rows = []
    built = cache_root(cache_dir) / "models"
    for name in BUILTIN_NAMES:
        ready = any(built.glob(f"{name}-v*/unet/config.json")) or any(built.glob(f"{name}-v*/transformer/config.json"))
        rows.append({"model": name, "kind": "built-in", "where": str(built) if ready else "built on first use"})
    rows.extend(_checkpoint_rows(models_dirs or []))
    for repo in cached_hub_models():
        rows.append({"model": repo, "kind": "hub", "where": str(hub_cache())})
    for spec in sorted({default, *used} - {row["model"] for row in rows}):
        path = Path(spec).expanduser()
        if path.is_dir():
            rows.append({"model": spec, "kind": "folder", "where": str(path)})
        elif path.is_file() and path.suffix.lower() in (".safetensors", ".ckpt"):  # a checkpoint the daemon named
            rows.append(_checkpoint_row(path.parent, path) | {"model": spec})
    for row in rows:
        row["resident"] = row["model"] == resident
        row["default"] = row["model"] == default
    if as_json:
        emit_json_list(rows)
        return
    width = max(len(row["model"]) for row in rows)
    for row in rows:
        mark = "*" if row["resident"] else " "
        note = " (the daemon's default)" if row["default"] else ""
        where = _describe(row) if row["kind"] == "file" else row["where"]
        print_line(f"{mark} {row['model']:<{width}}  {row['kind']:<8}  {where}{note}")
    if not any(row["default"] for row in rows):
        say(f"the default model {default} is not here: `v2vz models pull {default}` fetches it")


def _checkpoint_rows(given: list[Path]) -> list[dict]:
    """A row per checkpoint file in the model folders: its family, prediction type and size, read from its header
    (no weights, no torch); a file --model would refuse is listed with the reason."""
    from v2vz_engine.single_file import find_checkpoints, model_dirs

    return [_checkpoint_row(folder, path) for folder, path in find_checkpoints(model_dirs(given))]


def _checkpoint_row(folder: Path, path: Path) -> dict:
    """One checkpoint file's row; a file --model would refuse says why instead of a family."""
    from v2vz_engine.single_file import inspect

    row = {"model": str(path), "kind": "file", "where": str(folder)}
    try:
        info = inspect(path)
    except ModelUnavailable as exc:
        problem = getattr(exc, "reason", str(exc))
        return row | {"family": None, "prediction": None, "size_bytes": _size(path), "problem": problem}
    return row | {"family": info.family_name, "prediction": info.prediction, "size_bytes": info.size, "problem": None}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _describe(row: dict) -> str:
    """What the `where` column says of a checkpoint file: family, prediction, size; or why it cannot be used."""
    size = human_size(row["size_bytes"])
    if row["problem"]:
        return f"not usable: {row['problem']} ({size})"
    return f"{row['family']}, {row['prediction']}, {size}"


def human_size(size: int) -> str:
    """Bytes as a person reads them: 2.13 GiB, 319.5 MiB, 1.2 KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{size} B"


def _daemon_models() -> tuple[str | None, str | None, set[str]]:
    """The model on the daemon's device, its default, and the models of its recent jobs (all empty without one)."""
    from v2vz.client import Client

    try:
        with Client(timeout=3) as client:
            info = client.info()
            used = {job.model for job in client.jobs(limit=200) if job.model}
    except V2vzError:
        return None, None, set()
    return info.model or None, info.default_model or info.model or None, used


@models_app.command()
def pull(
    repo_id: Annotated[str, typer.Argument(metavar="ID", help="A hub id, e.g. CompVis/stable-diffusion-v1-4.")],
) -> None:
    """Download a Stable Diffusion model from the Hugging Face hub into its cache (with a progress bar); the daemon
    and `edit --local` then find it without the network."""
    from v2vz_engine.model_source import COMPONENTS, cached_snapshot, looks_like_hub_id, offline

    if not looks_like_hub_id(repo_id):
        raise fail(f"{repo_id!r} is not a hub id (owner/name); a model folder needs no pull: pass it as --model")
    if offline():
        raise fail(f"HF_HUB_OFFLINE is set: unset it to pull {repo_id}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = ["model_index.json", *(f"{part}/*" for part in COMPONENTS)]
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns)
    except RepositoryNotFoundError:
        raise fail(f"the hub has no model {repo_id!r} (or it needs a login: `hf auth login`)") from None
    except LocalEntryNotFoundError:
        raise fail(f"cannot reach the hub to pull {repo_id}: pull it on a machine with a network") from None
    except (HfHubHTTPError, OSError) as exc:
        raise fail(f"pulling {repo_id} failed: {str(exc).splitlines()[0]}") from None
    if cached_snapshot(repo_id) is None:
        raise refuse(ModelUnavailable(f"{repo_id} has no diffusers Stable Diffusion layout (unet/, vae/, ...)"))
    say(f"pulled {repo_id} into {folder}: `v2vz edit ... --model {repo_id}`")
