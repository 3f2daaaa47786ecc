"""`v2vz serve`: the daemon in the foreground, logging to stderr (the engine is imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from v2vz.api.endpoint import cache_root
from v2vz.api.errors import V2vzError
from v2vz.cli.output import fail, refuse


def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help="A diffusers folder, a hub id, or a built-in model (tiny, sd15-random). Default: $V2VZ_MODEL."
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            help="unix:/path or HOST:PORT. Default: a Unix socket in a private folder (127.0.0.1 on Windows)."
        ),
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow --listen on an address other than loopback.")
    ] = False,
    media_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--media-root",
            help="With --allow-remote: a folder remote clients may read sources from and write edits to "
            "(repeatable). Without any, remote clients upload their media and stream the frames back.",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Models, inversion cache and job journal (default ~/.cache/v2vz).")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="The daemon's own folder: job journal, inversion cache, uploads and log (default: CACHE_DIR/daemon). "
            "Two daemons never share one."
        ),
    ] = None,
    cache_size: Annotated[
        float, typer.Option(help="Inversion cache cap in GiB (least recently used goes first).")
    ] = 4.0,
    allow_model: Annotated[
        list[str] | None,
        typer.Option("--allow-model", help="With --allow-remote: a model remote clients may name too (repeatable)."),
    ] = None,
    max_attempts: Annotated[
        int,
        typer.Option(
            help="A job interrupted by this many daemon deaths (e.g. out of memory) fails instead of rerunning."
        ),
    ] = 3,
) -> None:
    """Run the daemon: it loads the model once and runs edits one at a time, in order, surviving restarts."""
    from v2vz_engine.model_source import default_model, locate

    try:
        located = locate(model or default_model())  # before torch is imported: a wrong name fails in milliseconds
    except V2vzError as exc:
        raise refuse(exc) from None

    roots = tuple(Path(root).expanduser().resolve() for root in media_root or ())
    if (roots or allow_model) and not allow_remote:
        raise fail("--media-root and --allow-model are for remote clients: they need --allow-remote")
    for root in roots:
        if not root.is_dir():
            raise fail(f"--media-root {root} is not a folder")
    if max_attempts < 1:
        raise fail(f"--max-attempts must be 1 or more, got {max_attempts}")
    if cache_size < 0 or cache_size != cache_size:
        raise fail(f"--cache-size must be 0 or more GiB, got {cache_size:g}")
    from v2vz_daemon.server import DaemonConfig, serve_forever

    config = DaemonConfig(
        model=located.spec,
        cache_dir=cache_root(cache_dir),
        device=device,
        listen=listen,
        allow_remote=allow_remote,
        cache_max_bytes=int(cache_size * 1024**3),
        media_roots=roots,
        max_attempts=max_attempts,
        allowed_models=tuple(allow_model or ()),
        state_root=state_dir.expanduser().absolute() if state_dir else None,
    )
    try:
        serve_forever(config)
    except V2vzError as exc:
        raise refuse(exc) from None
