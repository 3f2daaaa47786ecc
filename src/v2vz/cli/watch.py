"""`v2vz watch`: a folder people drop clips into, edits collected from another, every file edited exactly once.

Torch-free: the standard library, watchdog, rich and our client. A job is a video file plus an optional sidecar
`NAME.toml` beside it; `v2vz.toml` in the folder gives defaults for every file (watchfolder/settings.py). A file is
picked up once its size and modification time have not changed for `--settle` seconds and it can be opened. The jobs
go to the daemon, which writes `OUT/NAME.mp4` under a temporary name and renames it when complete.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from v2vz.api.errors import V2vzError
from v2vz.cli.output import fail, refuse
from v2vz.watchfolder.reporter import Reporter
from v2vz.watchfolder.watcher import Watcher


def watch(
    in_dir: Annotated[
        Path, typer.Argument(metavar="IN_DIR", help="The folder clips (and NAME.toml sidecars) are dropped into.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the edits go, as OUT/NAME.mp4.")],
    once: Annotated[
        bool, typer.Option("--once", help="Process the files that are there, then exit (for cron and CI).")
    ] = False,
    settle: Annotated[
        float, typer.Option(help="Seconds a file's size and time must stay unchanged before it is picked up.")
    ] = 2.0,
) -> None:
    """Edit every clip dropped into IN_DIR through the daemon, exactly once, into OUT/NAME.mp4.

    NAME.toml beside a clip (and v2vz.toml in IN_DIR, for every clip) gives prompt, source_prompt, start, frames,
    preset and any edit option; for a local edit also matte (relative: in IN_DIR), matte_start and save_mask
    (relative: in OUT). A video a sidecar names as its matte, or named NAME.matte.mp4, is never edited itself.
    Edited clips move to IN_DIR/done/, the others to IN_DIR/failed/ with NAME.error.txt.
    """
    if not in_dir.is_dir():
        raise fail(f"{in_dir} is not a folder: give the folder clips are dropped into")
    if settle < 0:
        raise fail(f"--settle must be 0 or more seconds, got {settle:g}")
    in_dir, out_dir = in_dir.resolve(), out.expanduser().resolve()
    if out_dir == in_dir:
        raise fail("--out is the watched folder itself: give another folder for the edits")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create {out_dir} ({exc.strerror or type(exc).__name__})") from None
    with Reporter(Console(stderr=True)) as reporter:
        watcher = Watcher(in_dir, out_dir, settle, once, reporter)
        previous = None
        if threading.current_thread() is threading.main_thread():

            def on_sigterm(signum: int, frame: object) -> None:
                watcher.stop.set()
                watcher.wake.set()

            previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            watcher.run()
        except V2vzError as exc:
            raise refuse(exc) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
