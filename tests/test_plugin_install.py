"""`v2vz plugin install blender`: an extension zip Blender's "Install from Disk" accepts."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

V2VZ = str(Path(sys.executable).with_name("v2vz"))


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
    assert {"blender_manifest.toml", "__init__.py", "compat.py", "job.py"} <= names
    assert not any("__pycache__" in name for name in names)
    assert manifest["id"] == "v2vz" and manifest["type"] == "add-on" and manifest["blender_version_min"] == "4.2.0"


def test_unknown_host_is_one_line(tmp_path):
    done = subprocess.run([V2VZ, "plugin", "install", "premiere"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "premiere" in done.stderr
