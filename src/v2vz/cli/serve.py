"""`v2vz serve`: the daemon in the foreground, logging to stderr (the engine is imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from v2vz.api.endpoint import STATE_FOLDER, cache_root, endpoint_path
from v2vz.api.errors import V2vzError
from v2vz.cli.output import fail, refuse

if TYPE_CHECKING:
    from v2vz_daemon.security import StateLock

MAX_CACHE_GIB = 1024**2  # a pebibyte: any real disk, and far from overflowing a byte count


def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help="A diffusers folder, a hub id, or a built-in model (tiny, sd15-random). Default: $V2VZ_MODEL, "
            "else CompVis/stable-diffusion-v1-4 (from the hub cache: `v2vz models pull` fetches it)."
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
    workers: Annotated[
        str | None,
        typer.Option(
            metavar="N|auto",
            help="Model workers on a local Ray cluster the daemon starts: N, or auto for one per GPU (with --ray: "
            "one per free GPU of that cluster); with --device cpu, N CPU workers. Needs the cluster extra.",
            rich_help_panel="Cluster",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Join the Ray cluster at ADDRESS (its head's HOST:PORT) and run the model workers on its nodes.",
            rich_help_panel="Cluster",
        ),
    ] = None,
    ray_token_file: Annotated[
        Path | None,
        typer.Option(
            help="With --ray: the file holding that cluster's token (`ray get-auth-token` on its head).",
            rich_help_panel="Cluster",
        ),
    ] = None,
    ray_node_ip: Annotated[
        str | None,
        typer.Option(
            help="This machine's address as a node of the cluster, when Ray does not find it itself (a node "
            "started with --node-ip-address), or the local cluster's node address (default 127.0.0.2).",
            rich_help_panel="Cluster",
        ),
    ] = None,
    worker_retries: Annotated[
        int,
        typer.Option(
            help="A window whose worker died runs again on another this many times before its job fails.",
            rich_help_panel="Cluster",
        ),
    ] = 2,
    worker_threads: Annotated[
        int, typer.Option(help="Torch threads of each CPU worker.", rich_help_panel="Cluster")
    ] = 1,
) -> None:
    """Run the daemon: it loads the model once and runs edits one at a time, in order, surviving restarts.

    With --workers or --ray, the model workers are Ray actors: jobs run side by side, and one job's anchored
    windows (--window-links anchored) are spread over them.
    """
    state_lock = hold_state_folder(cache_dir, state_dir)  # a second daemon is refused before anything is loaded
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
    if not 0 <= cache_size <= MAX_CACHE_GIB:  # NaN fails too; inf or 1e300 GiB would overflow the byte count
        raise fail(f"--cache-size must be between 0 and {MAX_CACHE_GIB} GiB, got {cache_size:g}")
    cluster = None
    if workers is not None or ray is not None:
        cluster = cluster_config(workers, ray, ray_token_file, ray_node_ip, device, worker_retries, worker_threads)
    elif ray_token_file is not None:
        raise fail("--ray-token-file goes with --ray ADDRESS (a local cluster makes a token of its own)")
    elif ray_node_ip is not None:
        raise fail("--ray-node-ip goes with --workers N or --ray ADDRESS")
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
        cluster=cluster,
    )
    try:
        serve_forever(config, state_lock)
    except V2vzError as exc:
        raise refuse(exc) from None


def hold_state_folder(cache_dir: Path | None, state_dir: Path | None) -> StateLock | None:
    """The state folder locked for this daemon's life, and no live daemon on the endpoint: a second daemon is
    refused in one line in milliseconds, before the model, torch or the journal are touched.

    A folder that does not exist yet is left alone (no daemon holds it, and a refused option must make nothing):
    the daemon makes it and takes its lock as it starts, before it reads or sweeps anything.
    """
    from v2vz_daemon import security

    folder = state_dir.expanduser().absolute() if state_dir else cache_root(cache_dir) / STATE_FOLDER
    try:
        security.refuse_second_daemon(endpoint_path())
        if not folder.exists():
            return None
        security.own_private_folder(folder)
        lock = security.StateLock(folder)
        lock.acquire()
    except V2vzError as exc:
        raise refuse(exc) from None
    return lock


def cluster_config(workers, address, token_file, node_ip, device, retries, threads):
    """The cluster's settings, checked (and Ray's presence) before anything starts."""
    from v2vz_daemon.cluster.connect import ClusterConfig, check_cluster, import_ray, read_token, require_ray

    count = 0  # auto
    if workers is not None and workers != "auto":
        if not workers.isdigit() or int(workers) < 1:
            raise fail(f"--workers must be a number of workers (1 or more) or auto, got {workers!r}")
        count = int(workers)
    try:
        config = ClusterConfig(
            workers=count,
            address=address,
            token_file=token_file.expanduser() if token_file else None,
            node_ip=node_ip,
            device=device,
            threads=threads,
            retries=retries,
        )
        require_ray()
        if config.address:  # a wrong address or token fails now, in seconds, before the daemon makes anything
            import_ray(read_token(config.token_file))
            check_cluster(config.address, config.token_file)
    except V2vzError as exc:
        raise refuse(exc) from None
    return config
