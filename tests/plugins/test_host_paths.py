"""The OS path rules of the host plugins, all three OSes checked on this one: where `v2vz plugin install` puts the
Resolve launchers and the Blender extension (v2vz.cli.plugins), and where v2vz_host.find_client looks for the client
(drive letters, backslashes, spaces and non-ASCII characters kept as they are)."""

from __future__ import annotations

import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from v2vz.cli.plugins import blender_extensions_folder, resolve_scripts_folder
from v2vz.plugin_files import host as installed_host

HOST_FILE = Path(__file__).resolve().parents[2] / "plugins" / "host" / "v2vz_host.py"
WINDOWS_HOME = r"C:\Users\Jürgen Müller"
WINDOWS_ENV = {"USERPROFILE": WINDOWS_HOME, "APPDATA": r"D:\Roaming Profiles\Jürgen Müller\AppData\Roaming"}
POSIX_HOME = "/home/jürgen müller"


@pytest.fixture(scope="module")
def host():
    """plugins/host/v2vz_host.py loaded by its path, as the plugins load it."""
    module = installed_host()
    assert Path(module.__file__) == HOST_FILE
    return module


# ---------------------------------------------------------------------------------------------------------------
# Where the plugins install: Resolve's and Blender's per-user folders


def test_resolve_scripts_folder_on_each_os():
    """Resolve's scripting README: the per-user Fusion/Scripts folder of each OS; the launchers go into its Edit."""
    linux = resolve_scripts_folder("linux", {}, POSIX_HOME)
    macos = resolve_scripts_folder("darwin", {}, "/Users/jürgen müller")
    windows = resolve_scripts_folder("win32", WINDOWS_ENV)
    assert linux == PurePosixPath(POSIX_HOME, ".local/share/DaVinciResolve/Fusion/Scripts/Edit")
    assert macos == PurePosixPath(
        "/Users/jürgen müller/Library/Application Support/Blackmagic Design/DaVinci Resolve/Fusion/Scripts/Edit"
    )
    assert isinstance(windows, PureWindowsPath)
    assert str(windows) == (
        r"D:\Roaming Profiles\Jürgen Müller\AppData\Roaming\Blackmagic Design\DaVinci Resolve\Support\Fusion\Scripts"
        r"\Edit"
    )
    # no %APPDATA%: the roaming folder under %USERPROFILE%
    assert str(resolve_scripts_folder("win32", {"USERPROFILE": WINDOWS_HOME})) == (
        WINDOWS_HOME + r"\AppData\Roaming\Blackmagic Design\DaVinci Resolve\Support\Fusion\Scripts\Edit"
    )


def test_blender_extensions_folder_on_each_os():
    """Blender's manual ("Directory Layout"): the per-user folder of each OS, its extensions/user_default repository."""
    assert blender_extensions_folder("4.2", "linux", {}, POSIX_HOME) == PurePosixPath(
        POSIX_HOME, ".config/blender/4.2/extensions/user_default"
    )
    xdg = {"XDG_CONFIG_HOME": "/data/config files"}
    assert blender_extensions_folder("4.5", "linux", xdg, POSIX_HOME) == PurePosixPath(
        "/data/config files/blender/4.5/extensions/user_default"
    )
    assert blender_extensions_folder("4.5", "linux", {"XDG_CONFIG_HOME": "relative"}, POSIX_HOME) == PurePosixPath(
        POSIX_HOME, ".config/blender/4.5/extensions/user_default"
    )  # a relative XDG_CONFIG_HOME is not one (the XDG spec)
    assert blender_extensions_folder("5.0", "darwin", {}, "/Users/jürgen müller") == PurePosixPath(
        "/Users/jürgen müller/Library/Application Support/Blender/5.0/extensions/user_default"
    )
    windows = blender_extensions_folder("4.2", "win32", WINDOWS_ENV)
    assert str(windows) == (
        r"D:\Roaming Profiles\Jürgen Müller\AppData\Roaming\Blender Foundation\Blender\4.2\extensions\user_default"
    )
    custom = blender_extensions_folder("4.2", "win32", {**WINDOWS_ENV, "BLENDER_USER_RESOURCES": r"E:\Blender user"})
    assert str(custom) == r"E:\Blender user\extensions\user_default"  # it replaces the whole user folder


# ---------------------------------------------------------------------------------------------------------------
# Where the plugins find the client: Windows rules


def test_windows_finds_the_client_of_a_virtual_environment(host):
    venv = r"D:\Tools\v2vz env\Jürgen"
    candidates = host.client_candidates("", "", {"VIRTUAL_ENV": venv + "\\"}, "nt")
    assert candidates == [venv + r"\Scripts\v2vz.exe", venv + r"\Scripts\v2vz.cmd", "v2vz.exe", "v2vz.cmd"]


def test_windows_paths_keep_drive_letters_backslashes_spaces_and_non_ascii(host):
    """A path without a program suffix is tried as it is, then as `.exe` and `.cmd`; one with a suffix as it is; a
    path pasted with Explorer's quotes loses them."""
    installed = r"C:\Users\Jürgen Müller\My Envs\v2vz\Scripts\v2vz"
    configured = r'"C:\Program Files\v2vz\v2vz.EXE"'
    candidates = host.client_candidates(configured, installed, {"V2VZ_CLIENT": r"\\server\share\v2vz.cmd"}, "nt")
    assert candidates == [
        r"C:\Program Files\v2vz\v2vz.EXE",
        r"\\server\share\v2vz.cmd",
        installed,
        installed + ".exe",
        installed + ".cmd",
        "v2vz.exe",
        "v2vz.cmd",
    ]


def test_windows_reads_the_installed_line_with_a_byte_order_mark(host, tmp_path):
    """Notepad saves v2vz-client.txt with a byte order mark and CRLF: the first line is still the client's path."""
    client_file = tmp_path / "v2vz-client.txt"
    installed = r"C:\Users\Jürgen Müller\venv\Scripts\v2vz.exe"
    client_file.write_bytes(("\ufeff" + installed + "\r\n" + r"C:\v2vz\plugins\host" + "\r\n").encode("utf-8"))
    assert host.installed_line(client_file, 0) == installed
    assert host.installed_line(client_file, 1) == r"C:\v2vz\plugins\host"
    assert host.client_candidates("", host.installed_line(client_file, 0), {}, "nt")[0] == installed


# ---------------------------------------------------------------------------------------------------------------
# POSIX rules, and the real lookup on this machine


def test_posix_order_ends_with_the_virtual_environment_then_path(host):
    environ = {"V2VZ_CLIENT": " /opt/v2vz/bin/v2vz ", "VIRTUAL_ENV": "/home/jürgen müller/.venvs/v2vz"}
    candidates = host.client_candidates("~/bin/v2vz", "/usr/local/bin/v2vz", environ, "posix")
    assert candidates == [
        "~/bin/v2vz",
        "/opt/v2vz/bin/v2vz",
        "/usr/local/bin/v2vz",
        "/home/jürgen müller/.venvs/v2vz/bin/v2vz",
        "v2vz",
    ]


def fake_client(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_client_takes_the_virtual_environments_client(host, tmp_path, monkeypatch):
    venv = tmp_path / "Jürgen Müller" / "my env"
    client = fake_client(venv / "bin" / "v2vz")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert host.find_client(environ={"VIRTUAL_ENV": str(venv), "PATH": str(empty)}) == str(client)
    # a configured path that is not there is passed over; without the environment nothing is found
    assert host.find_client(str(tmp_path / "gone"), environ={"VIRTUAL_ENV": str(venv), "PATH": str(empty)}) == str(
        client
    )
    monkeypatch.chdir(tmp_path)
    fake_client(tmp_path / "v2vz")  # a bare name is looked up on PATH, never taken from the current folder
    assert host.find_client(environ={"PATH": str(empty)}) is None
    assert host.find_client(environ={"PATH": str(venv / "bin")}) == str(client)


def test_find_client_reads_an_installed_path_with_spaces_and_non_ascii(host, tmp_path):
    client = fake_client(tmp_path / "Jürgen Müller" / "v2vz env" / "bin" / "v2vz")
    client_file = tmp_path / "v2vz-client.txt"
    client_file.write_text(f"{client}\n/elsewhere\n", encoding="utf-8")
    assert host.find_client(client_file=client_file, environ={"PATH": str(tmp_path / "none")}) == str(client)
