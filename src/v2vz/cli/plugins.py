"""`v2vz plugin install resolve|blender`: put a host plugin where its host finds it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from v2vz.cli.output import fail, say

plugin_app = typer.Typer(help="Install the host plugins (DaVinci Resolve, Blender).", no_args_is_help=True)

RESOLVE_SCRIPT = "v2vz Re-prompt clip.py"
CLIENT_FILE = "v2vz-client.txt"  # read by the script: this `v2vz` command's path, then the folder of HOST_MODULE
HOST_MODULE = "v2vz_host.py"  # the client reader both plugins use (plugins/host/, MIT so the GPL extension may ship it)
REPOSITORY = Path(__file__).resolve().parents[3]
PACKAGED = Path(__file__).resolve().parents[1] / "_plugins"  # plugins/ as the wheel ships it (pyproject's package-dir)


def plugins_root() -> Path:
    """The host plugins' sources: inside the installed package (a wheel), else the checkout (an editable install)."""
    return PACKAGED if PACKAGED.is_dir() else REPOSITORY / "plugins"


def resolve_script() -> Path:
    """The Resolve menu script (plugins/davinci/)."""
    return plugins_root() / "davinci" / RESOLVE_SCRIPT


def host_module() -> Path:
    """plugins/host/v2vz_host.py: how both plugins run the client and read its events."""
    return plugins_root() / "host" / HOST_MODULE


def resolve_scripts_folder(platform: str | None = None, env: dict[str, str] | None = None) -> Path:
    """The per-user Scripts/Edit folder of DaVinci Resolve on this OS."""
    platform = platform or sys.platform
    env = os.environ if env is None else env
    home = Path.home()
    if platform == "darwin":
        base = home / "Library" / "Application Support" / "Blackmagic Design" / "DaVinci Resolve" / "Fusion"
    elif platform.startswith("win"):
        appdata = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        base = appdata / "Blackmagic Design" / "DaVinci Resolve" / "Support" / "Fusion"
    else:
        base = home / ".local" / "share" / "DaVinciResolve" / "Fusion"
    return base / "Scripts" / "Edit"


def client_path() -> Path:
    """The absolute path of the `v2vz` command that runs now (the script starts it as a subprocess)."""
    beside = Path(sys.executable).with_name("v2vz.exe" if os.name == "nt" else "v2vz")
    if beside.is_file():
        return beside.absolute()
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name.startswith("v2vz") and argv0.is_file():
        return argv0.resolve()
    found = shutil.which("v2vz")
    return Path(found).absolute() if found else beside.absolute()


@plugin_app.command()
def install(
    host: Annotated[str, typer.Argument(help="resolve (DaVinci Resolve) or blender (the VSE extension zip).")],
    dest: Annotated[
        Path | None,
        typer.Option(
            help="Where to install: resolve: the script goes here instead of Resolve's per-user Scripts/Edit folder; "
            "blender: the extension zip is written here instead of the current folder."
        ),
    ] = None,
) -> None:
    """Install a host plugin: `v2vz plugin install resolve` adds Workspace > Scripts > Edit > v2vz Re-prompt clip."""
    host = host.strip().lower()
    if host == "blender":
        install_blender(dest)
        return
    if host not in ("resolve", "davinci"):
        raise fail(f"unknown host {host!r}: use resolve or blender")
    install_resolve(dest)


def install_resolve(dest: Path | None) -> None:
    """`v2vz plugin install resolve`: the script alone into Scripts/Edit (Resolve makes every .py file there a menu
    entry), and beside it v2vz-client.txt naming the client and the folder of v2vz_host.py in this installation."""
    script, host = resolve_script(), host_module()
    for needed, what in ((script, "the Resolve script"), (host, "the host client module")):
        if not needed.is_file():
            raise fail(f"{what} is not in this installation (looked for {needed}): reinstall v2vz")
    folder = dest if dest is not None else resolve_scripts_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(script, folder / RESOLVE_SCRIPT)
        client = client_path()
        (folder / CLIENT_FILE).write_text(f"{client}\n{host.parent}\n", encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot install into {folder}: {exc.strerror or exc}") from None
    say(f"installed {folder / RESOLVE_SCRIPT} (it runs the client {client} through {host})")
    say(
        "in DaVinci Resolve: Workspace > Scripts > Edit > v2vz Re-prompt clip (restart Resolve if it is not listed); "
        "start the daemon first with `v2vz serve`"
    )


# ---------------------------------------------------------------------------------------------------------------
# Blender: an extension zip for Preferences > Get Extensions > Install from Disk


def blender_package() -> Path:
    """The Blender extension's folder (plugins/blender/v2vz_blender/)."""
    return plugins_root() / "blender" / "v2vz_blender"


def build_blender_zip(
    dest: Path, package: Path | None = None, host: Path | None = None, client: Path | None = None
) -> Path:
    """Zip the Blender extension (blender_manifest.toml at the zip's root) into dest, with v2vz_host.py inside the
    package (`from . import v2vz_host`) and v2vz-client.txt naming this client; returns the zip's path."""
    import tomllib
    import zipfile

    package = package or blender_package()
    host = host or host_module()
    client = client or client_path()
    manifest = tomllib.loads((package / "blender_manifest.toml").read_text(encoding="utf-8"))
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{manifest['id']}-{manifest['version']}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*")):
            name = path.relative_to(package).as_posix()
            added = name in (HOST_MODULE, CLIENT_FILE)  # below: the current ones, also over an unpacked build's
            if path.is_file() and not added and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                archive.write(path, name)
        archive.write(host, HOST_MODULE)
        archive.writestr(CLIENT_FILE, f"{client}\n")  # the extension's default client, after $V2VZ_CLIENT
    return target


def install_blender(dest: Path | None) -> None:
    """`v2vz plugin install blender`: build the extension zip and say how to install it."""
    package = blender_package()
    for needed in (package / "blender_manifest.toml", host_module()):
        if not needed.is_file():
            raise fail(f"the Blender extension is not in this installation (looked for {needed}): reinstall v2vz")
    folder = (dest if dest is not None else Path.cwd()).expanduser().absolute()
    try:
        target = build_blender_zip(folder, package)
    except OSError as exc:
        raise fail(f"cannot write the extension into {folder}: {exc.strerror or exc}") from None
    say(f"built {target} (Blender 4.2 or later)")
    say(
        "in Blender: Edit > Preferences > Get Extensions > the menu at the top right > Install from Disk..., pick "
        f"that zip; the extension runs the client {client_path()} (set another in its preferences or with "
        "V2VZ_CLIENT); start the daemon with `v2vz serve`, then right-click a movie or image strip > Re-prompt Strip..."
    )
