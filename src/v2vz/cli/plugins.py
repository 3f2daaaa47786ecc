"""`v2vz plugin install|status resolve|blender`: put a host plugin where its host finds it, and say whether an
installed one is this v2vz's.

The per-user folders are computed from an OS name, a home folder and an environment (PurePosixPath/PureWindowsPath),
so the rules of all three OSes are tested on any of them (tests/plugins/test_host_paths.py).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Annotated

import typer

from v2vz.cli.output import fail, print_line, say
from v2vz.plugin_files import HOST_MODULE, plugins_root

plugin_app = typer.Typer(
    help="Install the host plugins (DaVinci Resolve, Blender) and check installed ones.", no_args_is_help=True
)

RESOLVE_SCRIPT = "v2vz Re-prompt clip.py"  # the first launcher: its file name is the menu entry's label
LAUNCHER_GLOBS = ("v2vz *.py", "v2vz *.lua")  # plugins/davinci's launchers: Resolve lists each file as a menu entry
RESOLVE_MODULE = "v2vz_resolve.py"  # the Python launcher's body: it stays in the installation, loaded from line 3
# Beside the launchers: line 1 this `v2vz` command's path, line 2 the folder of HOST_MODULE, line 3 the folder of
# RESOLVE_MODULE (both in this installation, so upgrading v2vz updates what the launchers load).
CLIENT_FILE = "v2vz-client.txt"
# HOST_MODULE: the client reader both plugins use (plugins/host/, MIT so the GPL extension may ship it)
LAUNCHER_VERSION = re.compile(r"^[ \t]*(?:local[ \t]+)?LAUNCHER_VERSION[ \t]*=[ \t]*(\d+)", re.MULTILINE)
BLENDER_VERSION = re.compile(r"(\d+)\.(\d+)")
BLENDER_FIRST = (4, 2)  # the first Blender with extensions (the manifest's blender_version_min)
BLENDER_REPOSITORY = "user_default"  # Blender's own local extensions repository in the user folder
BLENDER_USER_ENV = "BLENDER_USER_RESOURCES"  # replaces Blender's user folder (the manual's "Directory Layout")
WINDOWS, MACOS, LINUX = "windows", "macos", "linux"


def resolve_folder() -> Path:
    """plugins/davinci in this installation: the launchers and RESOLVE_MODULE."""
    return plugins_root() / "davinci"


def resolve_script() -> Path:
    """The Python menu script (plugins/davinci/), a launcher."""
    return resolve_folder() / RESOLVE_SCRIPT


def resolve_launchers(folder: Path | None = None) -> list[Path]:
    """Every launcher of plugins/davinci (`v2vz *.py`, `v2vz *.lua`), sorted: each is one entry of Resolve's menu."""
    folder = resolve_folder() if folder is None else folder
    return sorted({path for pattern in LAUNCHER_GLOBS for path in folder.glob(pattern) if path.is_file()})


def host_module() -> Path:
    """plugins/host/v2vz_host.py: how both plugins run the client and read its events."""
    return plugins_root() / "host" / HOST_MODULE


def launcher_version(path: Path) -> int | None:
    """The `LAUNCHER_VERSION = N` (Lua: `local LAUNCHER_VERSION = N`) of a launcher file: 0 when it has no such line
    (launchers from before the line), None when there is no file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    found = LAUNCHER_VERSION.search(text)
    return int(found.group(1)) if found else 0


# ---------------------------------------------------------------------------------------------------------------
# The per-user folders of each OS


def os_kind(platform: str | None = None) -> str:
    """WINDOWS, MACOS or LINUX (every other POSIX system) for a sys.platform value (default: this one's)."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("win"):
        return WINDOWS
    return MACOS if platform == "darwin" else LINUX


def user_home(kind: str, env: Mapping[str, str], home: str | PurePath | None = None) -> PurePath:
    """The home folder under `kind`'s path rules: `home` when given, else %USERPROFILE% (Windows) or $HOME."""
    flavour = PureWindowsPath if kind == WINDOWS else PurePosixPath
    if home is not None:
        return flavour(home)
    given = env.get("USERPROFILE" if kind == WINDOWS else "HOME", "")
    return flavour(given or Path.home())


def windows_appdata(env: Mapping[str, str], home: PurePath) -> PureWindowsPath:
    """%APPDATA%, the roaming application data folder (default: `<home>\\AppData\\Roaming`)."""
    return PureWindowsPath(env.get("APPDATA") or PureWindowsPath(home, "AppData", "Roaming"))


def resolve_scripts_folder(
    platform: str | None = None, env: Mapping[str, str] | None = None, home: str | PurePath | None = None
) -> PurePath:
    """DaVinci Resolve's per-user Scripts/Edit folder on `platform` (a sys.platform value; default: this OS), as
    Resolve's scripting README gives the per-user Fusion/Scripts folder of each OS."""
    kind = os_kind(platform)
    env = os.environ if env is None else env
    user = user_home(kind, env, home)
    if kind == MACOS:
        fusion = user / "Library" / "Application Support" / "Blackmagic Design" / "DaVinci Resolve" / "Fusion"
    elif kind == WINDOWS:
        fusion = windows_appdata(env, user) / "Blackmagic Design" / "DaVinci Resolve" / "Support" / "Fusion"
    else:
        fusion = user / ".local" / "share" / "DaVinciResolve" / "Fusion"
    return fusion / "Scripts" / "Edit"


def blender_user_folder(
    version: str, platform: str | None = None, env: Mapping[str, str] | None = None, home: str | PurePath | None = None
) -> PurePath:
    """Blender `version`'s (MAJOR.MINOR) per-user folder, as the Blender manual's "Directory Layout" gives it:
    $BLENDER_USER_RESOURCES when set; Linux $XDG_CONFIG_HOME/blender/X.Y (default ~/.config), macOS
    ~/Library/Application Support/Blender/X.Y, Windows %APPDATA%\\Blender Foundation\\Blender\\X.Y."""
    kind = os_kind(platform)
    env = os.environ if env is None else env
    flavour = PureWindowsPath if kind == WINDOWS else PurePosixPath
    if env.get(BLENDER_USER_ENV):
        return flavour(env[BLENDER_USER_ENV])
    user = user_home(kind, env, home)
    if kind == MACOS:
        return user / "Library" / "Application Support" / "Blender" / version
    if kind == WINDOWS:
        return windows_appdata(env, user) / "Blender Foundation" / "Blender" / version
    config = PurePosixPath(env.get("XDG_CONFIG_HOME") or "")
    return (config if config.is_absolute() else user / ".config") / "blender" / version


def blender_extensions_folder(
    version: str, platform: str | None = None, env: Mapping[str, str] | None = None, home: str | PurePath | None = None
) -> PurePath:
    """The folder of Blender's local per-user extensions repository (`user_default`): one folder per extension."""
    return blender_user_folder(version, platform, env, home) / "extensions" / BLENDER_REPOSITORY


def blender_version(text: str) -> str:
    """A `--blender` value as Blender names its folders (`4.2`); a one-line error for anything else."""
    found = BLENDER_VERSION.fullmatch(text.strip())
    if found is None:
        raise fail(f"--blender takes Blender's version as MAJOR.MINOR (4.2, 4.5), not {text!r}")
    major, minor = int(found.group(1)), int(found.group(2))
    if (major, minor) < BLENDER_FIRST:
        raise fail(f"Blender {major}.{minor} has no extensions: the v2vz extension needs Blender 4.2 or later")
    return f"{major}.{minor}"


# ---------------------------------------------------------------------------------------------------------------
# The client the plugins run


def client_path() -> Path:
    """The absolute path of the `v2vz` command that runs now (the plugins start it as a subprocess): beside this
    Python (a venv's bin/v2vz, or Scripts\\v2vz.exe on Windows), else the command that was run, else PATH's."""
    beside = Path(sys.executable).with_name("v2vz.exe" if os.name == "nt" else "v2vz")
    if beside.is_file():
        return beside.absolute()
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name.startswith("v2vz") and argv0.is_file():
        return argv0.resolve()
    found = shutil.which("v2vz")
    return Path(found).absolute() if found else beside.absolute()


def write_client_file(path: Path, lines: list[Path]) -> None:
    """v2vz-client.txt: one path a line, UTF-8 without a byte order mark and with `\\n` on every OS (the Lua and the
    Python launchers both read it)."""
    for line in lines:
        if "\n" in str(line) or "\r" in str(line):
            raise fail(f"cannot write {path}: the path {str(line)!r} has a line break")
    with open(path, "w", encoding="utf-8", newline="\n") as written:
        written.write("".join(f"{line}\n" for line in lines))


def client_file_lines(path: Path) -> list[str]:
    """The lines of an installed v2vz-client.txt ([] when it cannot be read); a byte order mark is dropped."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeError):
        return []


# ---------------------------------------------------------------------------------------------------------------
# The commands


HostArgument = Annotated[str, typer.Argument(help="resolve (DaVinci Resolve) or blender (the VSE extension).")]
BlenderOption = Annotated[
    str | None,
    typer.Option(
        "--blender",
        metavar="MAJOR.MINOR",
        help="blender: install the extension into that Blender's per-user extensions folder (4.2, 4.5, ...) "
        "instead of building a zip for Install from Disk.",
    ),
]


@plugin_app.command()
def install(
    host: HostArgument,
    dest: Annotated[
        Path | None,
        typer.Option(
            help="resolve: the launchers go here instead of Resolve's per-user Scripts/Edit folder; blender: the "
            "zip is written here instead of the current folder (with --blender: the extensions repository folder "
            "the extension goes into, instead of the per-user user_default one)."
        ),
    ] = None,
    blender: BlenderOption = None,
) -> None:
    """Install a host plugin: `v2vz plugin install resolve` adds Workspace > Scripts > Edit > v2vz Re-prompt clip;
    `v2vz plugin install blender` builds the extension zip, `--blender 4.2` installs it for that Blender."""
    host = known_host(host)
    if host == "blender":
        install_blender(dest, blender)
        return
    if blender is not None:
        raise fail("--blender is for `v2vz plugin install blender`")
    install_resolve(dest)


@plugin_app.command()
def status(
    host: HostArgument,
    dest: Annotated[
        Path | None,
        typer.Option(
            help="resolve: the folder the launchers were installed into (default: Resolve's per-user Scripts/Edit); "
            "blender: the extensions repository folder (default: the per-user user_default one)."
        ),
    ] = None,
    blender: BlenderOption = None,
) -> None:
    """Whether an installed plugin is this v2vz's: one line per launcher (Resolve) or for the extension (Blender)
    and per line of v2vz-client.txt. Exit status 0 when all is current, 1 when something is older, newer, missing
    or names what is not there."""
    host = known_host(host)
    if host == "blender":
        if blender is None:
            raise fail("status blender needs --blender MAJOR.MINOR: a zip installed from disk is Blender's to track")
        folder = dest if dest is not None else Path(blender_extensions_folder(blender_version(blender)))
        again = (
            f"run `v2vz plugin install blender --blender {blender_version(blender)}"
            + ("" if dest is None else f' --dest "{dest}"')
            + "`"
        )
        report = blender_status(folder.expanduser().absolute(), again)
    else:
        if blender is not None:
            raise fail("--blender is for `v2vz plugin status blender`")
        report = resolve_status((dest if dest is not None else Path(resolve_scripts_folder())).expanduser().absolute())
    for _, line in report:
        print_line(line)
    if not all(ok for ok, _ in report):
        raise typer.Exit(1)


def known_host(host: str) -> str:
    """resolve or blender (davinci is resolve); a one-line error for another host."""
    host = host.strip().lower()
    if host == "davinci":
        return "resolve"
    if host not in ("resolve", "blender"):
        raise fail(f"unknown host {host!r}: use resolve or blender")
    return host


# ---------------------------------------------------------------------------------------------------------------
# DaVinci Resolve: the launchers into Scripts/Edit, the modules stay in the installation


def install_resolve(dest: Path | None) -> None:
    """`v2vz plugin install resolve`: the launchers alone into Scripts/Edit (Resolve makes every .py and .lua file
    there a menu entry), and beside them v2vz-client.txt naming the client and the folders of v2vz_host.py and
    v2vz_resolve.py in this installation. An installed launcher of another version is replaced, in one line each."""
    launchers, host = resolve_launchers(), host_module()
    if not launchers:
        raise fail(f"the Resolve launchers are not in this installation (looked in {resolve_folder()}): reinstall v2vz")
    if not host.is_file():
        raise fail(f"the host client module is not in this installation (looked for {host}): reinstall v2vz")
    folder = (dest if dest is not None else Path(resolve_scripts_folder())).expanduser().absolute()
    client = client_path()
    notes = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for launcher in launchers:
            target = folder / launcher.name
            old, new = launcher_version(target), launcher_version(launcher)
            shutil.copyfile(launcher, target)
            if old is not None and old != new:
                kind = "an older" if old < new else "a newer"
                notes.append(f"replaced {kind} launcher {target} (version {old} -> {new})")
        write_client_file(folder / CLIENT_FILE, [client, host.parent, resolve_folder()])
    except OSError as exc:
        raise fail(f"cannot install into {folder}: {exc.strerror or exc}") from None
    for note in notes:
        say(note)
    names = ", ".join(launcher.name for launcher in launchers)
    say(f"installed {names} into {folder} (they run the client {client} through {host})")
    entries = sorted(
        {launcher.stem for launcher in launchers}, key=lambda stem: (stem != Path(RESOLVE_SCRIPT).stem, stem)
    )
    say(
        f"in DaVinci Resolve: Workspace > Scripts > Edit > {' / '.join(entries)} (restart Resolve if it is not "
        "listed); start the daemon first with `v2vz serve`"
    )


def resolve_status(folder: Path) -> list[tuple[bool, str]]:
    """`v2vz plugin status resolve`: (current?, one line) for each launcher of this v2vz in `folder` and for each
    line of its v2vz-client.txt."""
    default_folder = Path(resolve_scripts_folder()).expanduser().absolute()
    again = "run `v2vz plugin install resolve" + ("" if folder == default_folder else f' --dest "{folder}"') + "`"
    report = []
    for launcher in resolve_launchers():
        target, new = folder / launcher.name, launcher_version(launcher)
        old = launcher_version(target)
        if old is None:
            report.append((False, f"missing: {target} ({again})"))
        elif old < new:
            report.append((False, f"older: {target} is launcher version {old}, this v2vz has {new} ({again})"))
        elif old > new:
            report.append((False, f"newer: {target} is launcher version {old}, this v2vz has {new} ({again})"))
        else:
            report.append((True, f"up to date: {target} (launcher version {new})"))
    client_file = folder / CLIENT_FILE
    if not client_file.is_file():
        return [*report, (False, f"missing: {client_file} ({again})")]
    lines = [*client_file_lines(client_file), "", "", ""]
    client = lines[0]
    if client and Path(client).is_file():
        report.append((True, f"{CLIENT_FILE} line 1: the client {client}"))
    else:
        report.append((False, f"{CLIENT_FILE} line 1 names no client ({client or 'empty'}): {again}"))
    for number, module, here in ((2, HOST_MODULE, host_module().parent), (3, RESOLVE_MODULE, resolve_folder())):
        named = lines[number - 1]
        needed = Path(named) / module if (here / module).is_file() else Path(named)
        if not named or not needed.exists():
            report.append(
                (False, f"{CLIENT_FILE} line {number} names no folder of {module} ({named or 'empty'}): {again}")
            )
        elif Path(named) != here:
            report.append((False, f"{CLIENT_FILE} line {number} names {named}, not this v2vz's {here}: {again}"))
        else:
            report.append((True, f"{CLIENT_FILE} line {number}: the folder of {module} {named}"))
    return report


# ---------------------------------------------------------------------------------------------------------------
# Blender: an extension zip for Preferences > Get Extensions > Install from Disk, or the extension unpacked into
# Blender's per-user extensions folder


def blender_package() -> Path:
    """The Blender extension's folder (plugins/blender/v2vz_blender/)."""
    return plugins_root() / "blender" / "v2vz_blender"


def blender_manifest(package: Path) -> dict:
    """The extension's blender_manifest.toml."""
    import tomllib

    return tomllib.loads((package / "blender_manifest.toml").read_text(encoding="utf-8"))


def extension_files(package: Path) -> Iterator[tuple[Path, str]]:
    """(file, name inside the extension) of the package's own files: no caches, and not the two files the installer
    adds (the current v2vz_host.py and v2vz-client.txt, also over an unpacked build's)."""
    for path in sorted(package.rglob("*")):
        name = path.relative_to(package).as_posix()
        if (
            path.is_file()
            and name not in (HOST_MODULE, CLIENT_FILE)
            and "__pycache__" not in path.parts
            and path.suffix not in (".pyc", ".pyo")
        ):
            yield path, name


def build_blender_zip(
    dest: Path, package: Path | None = None, host: Path | None = None, client: Path | None = None
) -> Path:
    """Zip the Blender extension (blender_manifest.toml at the zip's root) into dest, with v2vz_host.py inside the
    package (`from . import v2vz_host`) and v2vz-client.txt naming this client; returns the zip's path."""
    import zipfile

    package = package or blender_package()
    host = host or host_module()
    client = client or client_path()
    manifest = blender_manifest(package)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{manifest['id']}-{manifest['version']}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in extension_files(package):
            archive.write(path, name)
        archive.write(host, HOST_MODULE)
        archive.writestr(CLIENT_FILE, f"{client}\n")  # the extension's default client, after $V2VZ_CLIENT
    return target


def unpack_blender_extension(
    repository: Path, package: Path | None = None, host: Path | None = None, client: Path | None = None
) -> Path:
    """The extension as the zip holds it, unpacked into `repository`/<id> (an earlier v2vz extension there is
    replaced whole, so no file of it stays behind); returns that folder."""
    package = package or blender_package()
    host = host or host_module()
    client = client or client_path()
    target = repository / blender_manifest(package)["id"]
    if target.exists():
        try:
            ours = blender_manifest(target).get("id") == target.name
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise fail(f"{target} is there and is not a v2vz extension: remove it or give another --dest")
        shutil.rmtree(target)
    for path, name in extension_files(package):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / name)
    shutil.copyfile(host, target / HOST_MODULE)
    write_client_file(target / CLIENT_FILE, [client])
    return target


def install_blender(dest: Path | None, version: str | None = None) -> None:
    """`v2vz plugin install blender`: build the extension zip and say how to install it; with `--blender X.Y`,
    unpack it into that Blender's per-user extensions folder instead."""
    package = blender_package()
    for needed in (package / "blender_manifest.toml", host_module()):
        if not needed.is_file():
            raise fail(f"the Blender extension is not in this installation (looked for {needed}): reinstall v2vz")
    if version is not None:
        version = blender_version(version)
        repository = dest if dest is not None else Path(blender_extensions_folder(version))
        repository = repository.expanduser().absolute()
        try:
            target = unpack_blender_extension(repository, package)
        except OSError as exc:
            raise fail(f"cannot install the extension into {repository}: {exc.strerror or exc}") from None
        say(f"installed the extension into {target} (Blender {version}; it runs the client {client_path()})")
        say(
            "in Blender: restart it, enable v2vz in Edit > Preferences > Add-ons, start the daemon with `v2vz serve`, "
            "then right-click a movie or image strip > Re-prompt Strip..."
        )
        return
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


def blender_status(repository: Path, again: str) -> list[tuple[bool, str]]:
    """`v2vz plugin status blender --blender X.Y`: (current?, one line) for the unpacked extension in `repository`
    (its version and v2vz_host.py against this v2vz's) and for the client it names; `again` says how to fix it."""
    package = blender_package()
    target = repository / blender_manifest(package)["id"]
    try:
        installed = blender_manifest(target)["version"]
    except (OSError, ValueError, KeyError):
        return [(False, f"missing: {target} ({again})")]
    ours = blender_manifest(package)["version"]
    try:
        same_host = (target / HOST_MODULE).read_bytes() == host_module().read_bytes()
    except OSError:
        same_host = False
    if installed != ours or not same_host:
        report = [(False, f"not this v2vz's: {target} is the extension {installed}, this v2vz has {ours} ({again})")]
    else:
        report = [(True, f"up to date: {target} (the extension {ours})")]
    client = (client_file_lines(target / CLIENT_FILE) or [""])[0]
    if client and Path(client).is_file():
        report.append((True, f"{CLIENT_FILE}: the client {client}"))
    else:
        report.append((False, f"{CLIENT_FILE} names no client ({client or 'empty'}): {again}"))
    return report
