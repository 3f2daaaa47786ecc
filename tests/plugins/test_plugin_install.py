"""`v2vz plugin install blender`: an extension zip Blender's "Install from Disk" accepts."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

V2VZ = str(Path(sys.executable).with_name("v2vz"))
HOST_CLIENT = Path(__file__).resolve().parents[2] / "plugins" / "host" / "v2vz_host.py"


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
    assert (tmp_path / "resolve" / "v2vz Re-prompt clip.py").is_file()
    # Resolve lists every .py file of Scripts/Edit: only the script goes there; v2vz-client.txt names the client
    # (line 1) and the wheel's folder of v2vz_host.py (line 2)
    assert [p.name for p in (tmp_path / "resolve").glob("*.py")] == ["v2vz Re-prompt clip.py"]
    lines = (tmp_path / "resolve" / "v2vz-client.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and lines[1] == str(shipped / "host")
