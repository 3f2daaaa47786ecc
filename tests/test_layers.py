"""The layers of docs/architecture.md, checked: who may import whom, what stays torch-free, and no import circles.

The import graph is read from the sources (every `import`, at module level or inside a function), so a lazy import
that breaks a rule fails here too. The torch-free promise is checked for real, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("v2vz", "v2vz_daemon", "v2vz_engine")
CONTRACT = "v2vz.api"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (SRC / package).rglob("*.py"):
            if "v1" not in path.relative_to(SRC).parts:  # generated gRPC stubs
                found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """Every module of ours that `name` imports, resolved to the modules that exist."""
    known = modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in names:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate.split(".")[0] in PACKAGES and candidate != name:
                targets.add(candidate)
    return targets


GRAPH = {name: imports_of(name, path) for name, path in modules().items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_graph_is_read_from_every_module():
    assert {"v2vz.api.errors", "v2vz.client", "v2vz.cli.main", "v2vz_daemon.server", "v2vz_engine.run"} <= set(GRAPH)
    assert "v2vz.api.errors" in GRAPH["v2vz.client"] and "v2vz_engine.media" in GRAPH["v2vz_engine.run"]


def test_the_contract_imports_only_itself():
    for name, targets in GRAPH.items():
        if within(name, CONTRACT):
            assert all(within(target, CONTRACT) for target in targets), (name, targets)


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("v2vz_daemon", ("v2vz.cli", "v2vz.client", "v2vz.watchfolder", "v2vz.timeline")),  # only the contract
        ("v2vz_engine", ("v2vz_daemon", "v2vz.cli", "v2vz.client", "v2vz.watchfolder", "v2vz.timeline")),  # never up
        ("v2vz.client", ("v2vz.cli", "v2vz.watchfolder", "v2vz.timeline", "v2vz_daemon", "v2vz_engine")),
        ("v2vz.watchfolder", ("v2vz.cli", "v2vz.timeline", "v2vz_daemon", "v2vz_engine")),
        ("v2vz.timeline", ("v2vz.cli", "v2vz.client", "v2vz.watchfolder", "v2vz_daemon", "v2vz_engine")),
        # the media probe sits below the engine and the timeline: it knows only the contract
        ("v2vz.media", ("v2vz.cli", "v2vz.client", "v2vz.watchfolder", "v2vz.timeline", "v2vz_daemon", "v2vz_engine")),
        # the toy world (pictures and the classifier that reads them): numpy only, nothing of ours
        ("v2vz.world", ("v2vz.api", "v2vz.media", "v2vz.cli", "v2vz.client", "v2vz.watchfolder", "v2vz.timeline")),
        ("v2vz.world", ("v2vz_daemon", "v2vz_engine")),
        # where the host plugins' files are (v2vz_host for the timeline's marker grammar): nothing of ours
        ("v2vz.plugin_files", ("v2vz.api", "v2vz.media", "v2vz.cli", "v2vz.client", "v2vz.watchfolder")),
        ("v2vz.plugin_files", ("v2vz.timeline", "v2vz.world", "v2vz_daemon", "v2vz_engine")),
    ],
)
def test_each_layer_imports_only_what_it_may(layer: str, forbidden: tuple[str, ...]):
    for name, targets in GRAPH.items():
        if within(name, layer):
            bad = sorted(t for t in targets if any(within(t, f) for f in forbidden))
            assert not bad, f"{name} imports {bad}, which docs/architecture.md forbids"


def test_the_cli_reaches_the_daemon_and_engine_only_from_inside_its_commands():
    """`v2vz serve`, `edit --local` and `sample-clip` load them lazily: never at import time."""
    for name, path in modules().items():
        if not within(name, "v2vz.cli"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if isinstance(node, ast.ImportFrom | ast.Import):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert not (module or "").startswith(("v2vz_daemon", "v2vz_engine", "torch")), (name, module)


def test_no_import_circles():
    seen: dict[str, str] = {}  # name -> "active" | "done"

    def visit(name: str, trail: list[str]) -> None:
        seen[name] = "active"
        for target in sorted(GRAPH.get(name, ())):
            if seen.get(target) == "active":
                loop = trail[trail.index(target) :] if target in trail else trail
                raise AssertionError("import circle: " + " -> ".join([*loop, target]))
            if target not in seen:
                visit(target, [*trail, target])
        seen[name] = "done"

    for name in sorted(GRAPH):
        if name not in seen:
            visit(name, [name])


def loaded_by(modules_imported: str, heavy: tuple[str, ...]) -> list[str]:
    """The modules in `heavy` (or below them) that importing `modules_imported` loads, in a fresh interpreter."""
    script = (
        "import json, sys\n"
        f"import {modules_imported}\n"
        f"heavy = {heavy!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_the_command_the_client_and_the_watch_folder_leave_torch_out():
    """What plugins and a render box's watcher import: no torch, no diffusers, no engine, no daemon."""
    imported = "v2vz.cli.main, v2vz.client, v2vz.watchfolder.watcher, v2vz.api.events, v2vz.api.wire"
    heavy = ("torch", "diffusers", "transformers", "numpy", "av", "v2vz_engine", "v2vz_daemon")
    assert loaded_by(imported, heavy) == []


def test_the_media_probe_and_the_timeline_leave_torch_out():
    """`v2vz timeline` probes with v2vz.media: PyAV, numpy and Pillow, never torch, the engine or the daemon."""
    imported = (
        "v2vz.media.probe, v2vz.media.image_sequence, v2vz.media.timecode, v2vz.timeline.media, v2vz.timeline.run"
    )
    heavy = ("torch", "diffusers", "transformers", "v2vz_engine", "v2vz_daemon", "v2vz.cli", "v2vz.client")
    assert loaded_by(imported, heavy) == []


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_ray_is_imported_only_by_the_cluster_package():
    """The cluster is an optional extra: no other module names Ray, and the daemon without --workers/--ray (its
    server, worker and the engine, all imported) loads none of it."""
    users = {name for name, path in modules().items() if "ray" in third_party_imports(path)}
    assert users and all(within(name, "v2vz_daemon.cluster") for name in users), users
    script = (
        "import json, sys\n"
        "import v2vz_daemon.server, v2vz_daemon.job_loop, v2vz_engine.run, v2vz.cli.serve\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'ray' or 'cluster' in m)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_the_media_probe_imports_only_pyav_numpy_pillow_and_the_contract():
    """What keeps v2vz.media torch-free for good: a new import of torch (or of anything heavy) fails here at once."""
    allowed = {"av", "numpy", "PIL", "v2vz", "__future__", *sys.stdlib_module_names}
    media = {name: path for name, path in modules().items() if within(name, "v2vz.media")}
    assert "v2vz.media.probe" in media
    for name, path in media.items():
        assert third_party_imports(path) <= allowed, (name, third_party_imports(path) - allowed)
