"""`v2vz plugin install blender`: an extension zip Blender's "Install from Disk" accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import typer

from v2vz.cli import plugins

V2VZ = str(Path(sys.executable).with_name("v2vz"))
REPO = Path(__file__).resolve().parents[2]
HOST_CLIENT = REPO / "plugins" / "host" / "v2vz_host.py"


def test_blender_zip_has_the_manifest_at_its_root(tmp_path):
    done = subprocess.run(
        [V2VZ, "plugin", "install", "blender", "--dest", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("*.zip")
    assert str(archive) in done.stdout + done.stderr and "Install from Disk" in done.stdout + done.stderr
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        manifest = tomllib.loads(zipped.read("blender_manifest.toml").decode())
        shipped_host = zipped.read("v2vz_host.py")  # the shared host client ships inside the package
        client = zipped.read("v2vz-client.txt").decode()  # and the client the extension runs by default
    assert {"blender_manifest.toml", "__init__.py", "compat.py", "strips.py", "jobs.py", "ui.py"} <= names
    assert shipped_host == HOST_CLIENT.read_bytes() and "job.py" not in names
    assert client == V2VZ + "\n" and f"runs the client {V2VZ}" in done.stdout + done.stderr
    assert not any("__pycache__" in name for name in names)
    assert manifest["id"] == "v2vz" and manifest["type"] == "add-on" and manifest["blender_version_min"] == "4.2.0"


def test_unknown_host_is_one_line(tmp_path):
    done = subprocess.run([V2VZ, "plugin", "install", "premiere"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "premiere" in done.stderr


def test_a_wheel_install_carries_the_plugins_and_installs_them(tmp_path):
    """Not only an editable checkout: the wheel ships plugins/ as v2vz/_plugins and `plugin install` finds it."""
    repo = Path(__file__).resolve().parents[2]
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(repo),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("v2vz-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    shipped = site / "v2vz" / "_plugins"
    assert (shipped / "davinci" / "v2vz Re-prompt clip.py").read_bytes() == (
        repo / "plugins" / "davinci" / "v2vz Re-prompt clip.py"
    ).read_bytes()
    assert (shipped / "blender" / "v2vz_blender" / "blender_manifest.toml").is_file()
    host_client = HOST_CLIENT.read_bytes()
    assert (shipped / "host" / "v2vz_host.py").read_bytes() == host_client
    run_cli = "import sys; from v2vz.cli.main import app; sys.argv = ['v2vz', *sys.argv[1:]]; app()"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for host in ("blender", "resolve"):
        done = subprocess.run(
            [sys.executable, "-c", run_cli, "plugin", "install", host, "--dest", str(tmp_path / host)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
    where = subprocess.run(
        [sys.executable, "-c", "from v2vz.cli import plugins; print(plugins.plugins_root())"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert where.stdout.strip() == str(shipped)  # the wheel's copy, not this checkout's
    (extension,) = (tmp_path / "blender").glob("*.zip")
    with zipfile.ZipFile(extension) as archive:
        assert "blender_manifest.toml" in archive.namelist() and "__init__.py" in archive.namelist()
        assert archive.read("v2vz_host.py") == host_client
    # Resolve lists every .py and .lua file of Scripts/Edit: only the launchers go there, every one the wheel ships;
    # v2vz-client.txt names the client (line 1), the wheel's folders of v2vz_host.py (line 2) and of the Resolve
    # script's modules (line 3)
    launchers = sorted(
        path.name for pattern in ("v2vz *.py", "v2vz *.lua") for path in shipped.glob(f"davinci/{pattern}")
    )
    assert "v2vz Re-prompt clip.py" in launchers
    assert launchers == sorted(path.name for path in (repo / "plugins" / "davinci").glob("v2vz *.*"))
    installed = sorted(path.name for path in (tmp_path / "resolve").iterdir() if path.suffix in (".py", ".lua"))
    assert installed == launchers
    lines = (tmp_path / "resolve" / "v2vz-client.txt").read_text(encoding="utf-8").splitlines()
    assert lines[1:] == [str(shipped / "host"), str(shipped / "davinci")]


# ---------------------------------------------------------------------------------------------------------------
# The per-user folders, launcher versions and `v2vz plugin status`


def run_v2vz(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI, with `home` as the user's home folder when given (Resolve's and Blender's folders hang off it)."""
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "BLENDER_USER_RESOURCES", "APPDATA"):
        env.pop(name, None)
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run([V2VZ, *args], capture_output=True, text=True, timeout=60, env=env)


def test_installs_into_the_per_user_folders_of_a_home_with_spaces_and_non_ascii(tmp_path):
    home = tmp_path / "Jürgen Müller"
    done = run_v2vz("plugin", "install", "resolve", home=home)
    assert done.returncode == 0, done.stderr
    edit = home / ".local" / "share" / "DaVinciResolve" / "Fusion" / "Scripts" / "Edit"
    assert (edit / "v2vz Re-prompt clip.py").read_bytes() == (
        REPO / "plugins" / "davinci" / "v2vz Re-prompt clip.py"
    ).read_bytes()
    client, host, modules = (edit / "v2vz-client.txt").read_text(encoding="utf-8").splitlines()
    assert client == V2VZ and Path(host, "v2vz_host.py").is_file() and Path(modules).is_dir()
    status = run_v2vz("plugin", "status", "resolve", home=home)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"up to date: {edit / 'v2vz Re-prompt clip.py'}" in status.stdout

    done = run_v2vz("plugin", "install", "blender", "--blender", "4.2", home=home)
    assert done.returncode == 0, done.stderr
    extension = home / ".config" / "blender" / "4.2" / "extensions" / "user_default" / "v2vz"
    assert str(extension) in done.stderr and "enable v2vz" in done.stderr
    assert (extension / "blender_manifest.toml").is_file() and (extension / "__init__.py").is_file()
    assert (extension / "v2vz_host.py").read_bytes() == HOST_CLIENT.read_bytes()
    assert (extension / "v2vz-client.txt").read_text(encoding="utf-8") == V2VZ + "\n"
    assert not list(extension.rglob("__pycache__")) and not list(home.glob("*.zip"))
    assert run_v2vz("plugin", "status", "blender", "--blender", "4.2", home=home).returncode == 0
    (extension / "stale.py").write_text("")  # a reinstall replaces the folder whole
    assert run_v2vz("plugin", "install", "blender", "--blender", "4.2", home=home).returncode == 0
    assert not (extension / "stale.py").exists()


@pytest.mark.parametrize("version", ["4", "4.2.1", "four.two", "4.1"])
def test_a_malformed_or_too_old_blender_version_is_one_line(tmp_path, version):
    done = run_v2vz("plugin", "install", "blender", "--blender", version, home=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and version in done.stderr
    assert not (tmp_path / ".config").exists()


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A v2vz installation whose plugins/davinci has a Python and a Lua launcher of version 3."""
    root = tmp_path / "installed plugins"
    shutil.copytree(REPO / "plugins" / "host", root / "host")
    davinci = root / "davinci"
    davinci.mkdir()
    (davinci / "v2vz Re-prompt clip.py").write_text("LAUNCHER_VERSION = 3\n", encoding="utf-8")
    (davinci / "v2vz Re-prompt clip.lua").write_text("local LAUNCHER_VERSION = 3\n", encoding="utf-8")
    (davinci / "v2vz_resolve.py").write_text("", encoding="utf-8")
    (davinci / "helper.py").write_text("", encoding="utf-8")  # not a launcher: stays in the installation
    monkeypatch.setattr(plugins, "plugins_root", lambda: root)
    return root


def test_an_older_launcher_is_replaced_in_one_line(package, tmp_path, capsys):
    dest = tmp_path / "Scripts für Jürgen" / "Edit"
    dest.mkdir(parents=True)
    (dest / "v2vz Re-prompt clip.py").write_text("# an old launcher\nLAUNCHER_VERSION = 0\n", encoding="utf-8")
    plugins.install_resolve(dest)
    said = capsys.readouterr().err
    older = [line for line in said.splitlines() if "launcher" in line and "replaced" in line]
    assert older == [f"replaced an older launcher {dest / 'v2vz Re-prompt clip.py'} (version 0 -> 3)"]
    assert (dest / "v2vz Re-prompt clip.py").read_text(encoding="utf-8") == "LAUNCHER_VERSION = 3\n"
    assert sorted(path.name for path in dest.iterdir()) == [
        "v2vz Re-prompt clip.lua",
        "v2vz Re-prompt clip.py",
        "v2vz-client.txt",
    ]
    lines = (dest / "v2vz-client.txt").read_bytes().decode("utf-8").split("\n")
    assert lines[1:] == [str(package / "host"), str(package / "davinci"), ""]  # \n on every OS, no BOM
    assert "Workspace > Scripts > Edit > v2vz Re-prompt clip" in said
    plugins.install_resolve(dest)  # the same versions again: nothing to say about them
    assert "replaced" not in capsys.readouterr().err


def resolve_status(dest: Path, capsys) -> tuple[int, list[str]]:
    """`v2vz plugin status resolve --dest DEST` in this process: its exit status and lines."""
    try:
        plugins.status("resolve", dest)
        code = 0
    except typer.Exit as exit:
        code = exit.exit_code
    return code, capsys.readouterr().out.splitlines()


def test_status_says_what_is_older_or_missing(package, tmp_path, capsys):
    dest = tmp_path / "Edit ü"
    plugins.install_resolve(dest)
    capsys.readouterr()
    code, lines = resolve_status(dest, capsys)
    assert code == 0 and len(lines) == 5 and all(not line.startswith(("older", "missing")) for line in lines)
    (dest / "v2vz Re-prompt clip.lua").write_text("-- no version line: version 0\n", encoding="utf-8")
    (dest / "v2vz Re-prompt clip.py").unlink()
    code, lines = resolve_status(dest, capsys)
    assert code == 1
    assert f"older: {dest / 'v2vz Re-prompt clip.lua'} is launcher version 0, this v2vz has 3" in lines[0]
    assert lines[1].startswith(f"missing: {dest / 'v2vz Re-prompt clip.py'}") and len(lines) == 5
    plugins.install_resolve(dest)
    (dest / "v2vz-client.txt").write_text("/no/such/v2vz\n", encoding="utf-8")
    capsys.readouterr()
    code, lines = resolve_status(dest, capsys)
    assert code == 1
    assert (
        lines[2]
        == f'v2vz-client.txt line 1 names no client (/no/such/v2vz): run `v2vz plugin install resolve --dest "{dest}"`'
    )
    assert "line 2 names no folder of v2vz_host.py (empty)" in lines[3] and "line 3" in lines[4]


def test_status_exit_codes_of_the_cli(tmp_path):
    dest = tmp_path / "Müller Scripts" / "Edit"
    assert run_v2vz("plugin", "status", "resolve", "--dest", str(dest)).returncode == 1  # nothing installed
    assert run_v2vz("plugin", "install", "resolve", "--dest", str(dest)).returncode == 0
    done = run_v2vz("plugin", "status", "resolve", "--dest", str(dest))
    assert done.returncode == 0 and done.stdout.count("up to date:") == len(list(dest.glob("v2vz *.*")))
    (dest / "v2vz Re-prompt clip.py").unlink()
    done = run_v2vz("plugin", "status", "resolve", "--dest", str(dest))
    assert done.returncode == 1 and "missing:" in done.stdout and "Traceback" not in done.stderr
