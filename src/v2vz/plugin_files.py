"""The host plugins' files in this installation, and `v2vz_host` loaded from them for the client's own use.

The plugins' sources (plugins/ in a checkout) ship inside the wheel as `v2vz/_plugins`, data rather than a package:
each host loads them by path. `v2vz timeline` reads markers with the same parser the Resolve scripts use
(`v2vz_host.parse_marker`, docs/markers.md), so it loads that module here the same way.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGED = Path(__file__).resolve().parent / "_plugins"  # plugins/ as the wheel ships it (pyproject's package-dir)
HOST_MODULE = "v2vz_host.py"
HOST_MODULE_NAME = "v2vz._plugin_host"  # where the loaded module is registered (its dataclasses look it up)


def plugins_root() -> Path:
    """The host plugins' sources: inside the installed package (a wheel), else the checkout (an editable install)."""
    return PACKAGED if PACKAGED.is_dir() else REPOSITORY / "plugins"


def host_module_path() -> Path:
    """plugins/host/v2vz_host.py: the client reader, the marker grammar and the command lines every host shares."""
    return plugins_root() / "host" / HOST_MODULE


@functools.cache
def host() -> ModuleType:
    """v2vz_host, loaded once from this installation."""
    path = host_module_path()
    spec = importlib.util.spec_from_file_location(HOST_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is missing from this installation: reinstall v2vz")
    module = importlib.util.module_from_spec(spec)
    sys.modules[HOST_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module
