"""Run the Lua Resolve script (`plugins/davinci/v2vz Re-prompt clip.lua`) under luajit from Python tests: one luajit
process per call, every case of the call batched into it (tests/plugins/lua/driver.lua)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LUA_SCRIPT = REPO / "plugins" / "davinci" / "v2vz Re-prompt clip.lua"
DRIVER = Path(__file__).resolve().parent / "lua" / "driver.lua"
LUAJIT = shutil.which("luajit") or "luajit"


def run_driver(mode: str, request: list, env: Mapping[str, str] | None = None, timeout: float = 120) -> list:
    """The driver's answer for `request` in `mode` (parse, split, scenarios); AssertionError with luajit's stderr
    when it fails."""
    with tempfile.TemporaryDirectory(prefix="v2vz-lua-") as folder:
        given, answer = Path(folder) / "in.json", Path(folder) / "out.json"
        given.write_text(json.dumps(request), encoding="utf-8")
        done = subprocess.run(
            [LUAJIT, str(DRIVER), mode, str(given), str(answer)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
        )
        assert done.returncode == 0, f"luajit {mode} failed: {done.stderr}{done.stdout}"
        return json.loads(answer.read_text(encoding="utf-8"))


def lua_parse_markers(texts: list[str]) -> list[dict]:
    """Per marker text, what the Lua parser makes of it: the fields as MarkerPrompts.as_dict() gives them, or
    {"error": {"code", "key"}} (docs/markers.md's codes); self_replace as a float."""
    results = []
    for answer in run_driver("parse", list(texts)):
        if "error" in answer:
            results.append({"error": {"code": answer["error"]["code"], "key": answer["error"]["key"]}})
        else:
            results.append({**answer, "self_replace": float(answer["self_replace"])})
    return results


def lua_marker_messages(texts: list[str]) -> list[str]:
    """The Lua parser's one-line message per malformed marker text ("" for one it reads)."""
    return [answer.get("error", {}).get("message", "") for answer in run_driver("parse", list(texts))]


def lua_shell_split(texts: list[str]) -> list[list[str] | None]:
    """The Lua script's shlex.split (POSIX) of each text; None where shlex.split raises."""
    return [None if isinstance(words, dict) else words for words in run_driver("split", list(texts))]
