"""v2vz Re-prompt clip: a DaVinci Resolve menu script (Workspace > Scripts > Edit > v2vz Re-prompt clip).

A launcher: the script itself (v2vz_resolve.py) stays in the v2vz installation, so upgrading v2vz upgrades it without
installing this file again. `v2vz plugin install resolve` puts this file into Resolve's Scripts/Edit folder with a
`v2vz-client.txt` beside it: line 1 the `v2vz` command, line 2 the folder of v2vz_host.py, line 3 the folder of
v2vz_resolve.py. Standard library only (Resolve runs menu scripts in the user's own Python 3, 3.8 or later). The free
edition of Resolve 21.1 and later lists Lua scripts only: `v2vz Re-prompt clip.lua` is its entry.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
import sys
from pathlib import Path

LAUNCHER_VERSION = 1  # `v2vz plugin install resolve` says when an installed launcher is older than the package's
CLIENT_FILE = "v2vz-client.txt"
MODULE_FILE = "v2vz_resolve.py"
MODULE_NAME = "_v2vz_resolve_of_the_menu_script"
LIB_ENV = "V2VZ_RESOLVE_LIB"  # overrides line 3: a folder holding v2vz_resolve.py, or the file itself
MISSING = (
    "v2vz: cannot find v2vz_resolve.py, the script this menu entry runs: run `v2vz plugin install resolve` again "
    "(after reinstalling or moving v2vz, too)"
)


def launcher_folder() -> Path | None:
    here = globals().get("__file__")
    return Path(here).resolve().parent if here else None


def module_candidates() -> list[Path]:
    """Where v2vz_resolve.py may be: $V2VZ_RESOLVE_LIB, line 3 of v2vz-client.txt (else line 2's sibling `davinci`
    folder: an installer before line 3), beside this launcher (a checkout's plugins/davinci)."""
    candidates = []
    explicit = os.environ.get(LIB_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        candidates.append(path if path.suffix == ".py" else path / MODULE_FILE)
    folder = launcher_folder()
    if folder is not None:
        try:
            lines = [line.strip() for line in (folder / CLIENT_FILE).read_text(encoding="utf-8-sig").splitlines()]
        except (OSError, UnicodeError):
            lines = []
        if len(lines) > 2 and lines[2]:
            candidates.append(Path(lines[2]) / MODULE_FILE)
        if len(lines) > 1 and lines[1]:
            candidates.append(Path(lines[1]).parent / "davinci" / MODULE_FILE)
        candidates.append(folder / MODULE_FILE)
    return candidates


def load():
    """The script's module, loaded from its file with LAUNCHER_FOLDER set (it reads v2vz-client.txt there), or None.
    Resolve's sys.path and sys.modules, which every script shares, stay as they are."""
    for path in module_candidates():
        if path.is_file():
            spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
            module = importlib.util.module_from_spec(spec)
            module.LAUNCHER_FOLDER = launcher_folder()
            sys.modules[MODULE_NAME] = module  # only while it runs: its dataclasses look their module up
            try:
                spec.loader.exec_module(module)
            finally:
                sys.modules.pop(MODULE_NAME, None)
            return module
    return None


def injected(name: str):
    """A name Resolve injects into a menu script (this file's globals, or builtins under fuscript)."""
    value = globals().get(name)
    return value if value is not None else getattr(builtins, name, None)


def main(resolve=None, fusion=None, ui=None) -> list[dict]:
    """Run the script on what Resolve gave this launcher. Returns one result dict per clip."""
    module = load()
    if module is None:
        print(MISSING, flush=True)
        return [{"clip": None, "state": "refused", "message": MISSING}]
    fusion = fusion if fusion is not None else (injected("fusion") or injected("app"))
    return module.main(resolve or injected("resolve"), fusion, ui, injected("bmd"))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
