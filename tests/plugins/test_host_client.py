"""plugins/host/v2vz_host.py, the one client reader of both plugins: its names are the contract's, both plugins read
the same JSON lines into the same state, and the Resolve script acts on the typed `error` line, not on words.

No daemon here: a fake `v2vz` (this Python running a few lines) prints what the real client would.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import runpy
import sys
import time
from pathlib import Path

import pytest

from v2vz.api.errors import ERROR_CLASSES, DaemonUnavailable, JobLost
from v2vz.api.events import TERMINAL_TYPES, EventType, Stage

from .test_blender_extension import unpack_extension, without_blender
from .test_resolve_script import NOTE, install_script, load_script, project_with_clip

REPO = Path(__file__).resolve().parents[2]
HOST_FILE = REPO / "plugins" / "host" / "v2vz_host.py"
RESOLVE_SCRIPT = REPO / "plugins" / "davinci" / "v2vz Re-prompt clip.py"  # the launcher
RESOLVE_BODY = REPO / "plugins" / "davinci" / "v2vz_resolve.py"  # the script it runs from the installation
EVENTS = Path(__file__).resolve().parents[1] / "data" / "events.jsonl"  # per docs/events.md, with an unknown type/field


@pytest.fixture(scope="module")
def host():
    """plugins/host/v2vz_host.py loaded by its path, as the Resolve script loads it."""
    name = "v2vz_host_under_test"
    spec = importlib.util.spec_from_file_location(name, HOST_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def upper_names(namespace) -> dict[str, str]:
    return {name: value for name, value in vars(namespace).items() if name.isupper()}


def test_the_names_are_the_contracts(host):
    assert upper_names(host.Stage) == {stage.name: stage.value for stage in Stage}
    assert upper_names(host.EventType) == {kind.name: kind.value for kind in EventType}
    assert host.TERMINAL_TYPES == TERMINAL_TYPES
    assert set(upper_names(host.ErrorKind).values()) <= set(ERROR_CLASSES)
    unreachable = {name for name, cls in ERROR_CLASSES.items() if issubclass(cls, DaemonUnavailable)}
    unreachable.discard(JobLost.__name__)  # a lost job is not a missing daemon: it may still run
    assert set(host.DAEMON_UNREACHABLE) == unreachable


@pytest.mark.parametrize(
    "path", [HOST_FILE, RESOLVE_SCRIPT, RESOLVE_BODY], ids=["v2vz_host", "resolve-launcher", "resolve-script"]
)
def test_runs_in_a_users_python(path):
    """Resolve runs the script (and so v2vz_host) in the user's own Python: 3.8 syntax, the standard library only."""
    tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_status_names_the_anchor_pass_and_a_retry(host):
    """An anchored job's anchor pass (window 0) and a cluster's retry read as what they are, in every host."""
    state = host.JobTracker()
    state.apply({"type": "progress", "stage": "edit", "step": 4, "total": 10, "window": 0, "windows": 0})
    assert state.status == "anchor frames: edit 4/10"
    retry = {"type": "progress", "stage": "retry", "step": 1, "total": 2, "window": 3, "windows": 4}
    state.apply({**retry, "reason": "worker worker-2 (pid 4711 on 10.0.0.7) died: ..."})
    assert state.status == "window 3/4: a worker died, editing it again (retry 1 of 2)"


def test_status_names_the_window_of_a_long_clip(host):
    state = host.JobTracker()
    state.apply({"type": "progress", "stage": "edit", "step": 3, "total": 50, "cached": False})  # an old daemon
    assert state.status == "edit 3/50" and state.progress == pytest.approx(0.06)
    state.apply({"type": "progress", "stage": "edit", "step": 5, "total": 50, "window": 1, "windows": 1})
    assert state.status == "edit 5/50"  # one window: nothing to say about windows
    state.apply({"type": "progress", "stage": "inversion", "step": 10, "total": 50, "window": 2, "windows": 5})
    assert state.status == "window 2/5: inversion 10/50"
    state.apply(
        {"type": "progress", "stage": "inversion", "step": 1, "total": 1, "cached": True, "window": 3, "windows": 5}
    )
    assert state.status == "window 3/5: inversion 1/1 (cached)"


# ---------------------------------------------------------------------------------------------------------------
# A fake client


def fake_client(folder: Path, body: str) -> Path:
    """An executable `v2vz` that runs `body` in this Python; every call's arguments go to folder/calls.jsonl."""
    path = folder / "v2vz"
    log = folder / "calls.jsonl"
    head = f"#!{sys.executable}\nimport json, sys\nwith open({str(log)!r}, 'a') as f:\n"
    head += "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    path.write_text(head + body, encoding="utf-8")
    path.chmod(0o755)
    return path


def calls(client: Path) -> list[list[str]]:
    log = client.parent / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


REPLAY = f"sys.stdout.write(open({str(EVENTS)!r}).read())\nsys.stderr.write('note: a line the readers skip\\n')\n"


def error_body(kind: str, status: str, message: str, code: int, job_id: str = "") -> str:
    """A client that prints what the CLI prints when it cannot submit or follow a job: the typed line, then exits."""
    submitted = {"type": "submitted", "job_id": job_id, "position": 0}
    body = f"print(json.dumps({submitted!r}), flush=True)\n" if job_id else ""
    error = {"type": "error", "error": kind, "status": status, "message": message}
    body += f"print(json.dumps({error!r}), flush=True)\n"
    return body + f"sys.stderr.write('error: ' + {message!r} + '\\n')\nsys.exit({code})\n"


@pytest.fixture
def script(tmp_path, monkeypatch):
    """The Resolve script as `v2vz plugin install resolve` installs it, loaded as a module; frames under tmp."""
    monkeypatch.delenv("V2VZ_HOST_LIB", raising=False)
    monkeypatch.setenv("V2VZ_OUTPUT_DIR", str(tmp_path / "out"))
    return load_script(install_script(tmp_path / "Scripts" / "Edit"))


def fixture_events() -> list[dict]:
    return [json.loads(line) for line in EVENTS.read_text().splitlines()]


def test_both_plugins_read_the_same_lines_into_the_same_state(script, tmp_path, monkeypatch, capsys):
    client = fake_client(tmp_path, REPLAY)
    monkeypatch.setenv("V2VZ_CLIENT", str(client))
    # Resolve: the blocking run, on_event per line
    seen: list[dict] = []
    resolve = script["run_client"](["edit", "/clips/a.mp4"], seen.append).state
    # Blender: the extension as it ships, its runner drained the way its timer drains it
    jobs = without_blender(unpack_extension(tmp_path / "blender"), "jobs")
    request = jobs.EditRequest("/clips/a.mp4", 0, 4, "horses", "bikes", str(tmp_path / "png"))
    runner = jobs.start_runner(request, str(client))
    drained, deadline = [], time.monotonic() + 30
    while not runner.state.finished and time.monotonic() < deadline:
        drained += runner.drain()
        time.sleep(0.01)
    events = fixture_events()
    assert seen == events and drained[:-1] == events and drained[-1]["type"] == "exit"
    assert dataclasses.asdict(runner.state) == dataclasses.asdict(resolve)
    frames = {index: f"/daemon/out/frame_{index:06d}.png" for index in range(4)}
    assert dataclasses.asdict(resolve) == {
        "job_id": "3f9c2a51d0b4",
        "status": "done",
        "progress": 1.0,
        "frames": frames,
        "outcome": "done",
        "reason": "",
        "terminal": events[-1],
        "error_kind": "",
        "error": "note: a line the readers skip",  # stderr's last line: a host shows it only when a job fails
        "returncode": 0,
    }
    assert calls(client)[0] == ["edit", "/clips/a.mp4", "--events", "jsonl"]
    assert calls(client)[1] == request.command("v2vz")[1:]
    # the status lines come from the same text
    progress = script["Progress"]("shot")
    capsys.readouterr()
    for event in events:
        progress(event)
    out = capsys.readouterr().out
    assert "v2vz: 'shot': window 1/2: inversion 10/10 (cached)\n" in out and "'shot': window 2/2: edit 2/2" in out


# ---------------------------------------------------------------------------------------------------------------
# The typed `error` line: what the Resolve script says, without reading the message's words

UNREACHABLE = "nothing answers at unix:/tmp/v2vz-1000/v2vz.sock (connection refused)"  # no "daemon", no "endpoint"


def test_a_lost_job_says_run_again_to_re_attach(script, tmp_path, monkeypatch, capsys):
    message = "the daemon went away and did not come back in 30 s: `v2vz attach f00dfeed0001 --after 0`"
    client = fake_client(tmp_path, error_body("JobLost", "UNAVAILABLE", message, 3, job_id="f00dfeed0001"))
    monkeypatch.setenv("V2VZ_CLIENT", str(client))
    resolve, _, timeline, item, _ = project_with_clip()
    (result,) = script["main"](resolve)
    assert result["state"] == "failed" and result["job"] == "f00dfeed0001", result
    assert result["message"] == (
        f"'bikes.mp4': lost job f00dfeed0001 before it ended ({message}): run the script again to re-attach"
    )
    assert item.GetClipColor() == "Pink" and timeline.GetTrackCount("video") == 1
    (job,) = script["job_markers"](item)
    assert job["job"] == "f00dfeed0001" and script["job_state"](job) is None  # the next run re-attaches
    # ... and re-attaching to a job that is lost again says the same (the id from the marker: no submitted line)
    fake_client(tmp_path, error_body("JobLost", "UNAVAILABLE", message, 3))
    (again,) = script["main"](resolve)
    assert calls(client)[-1] == ["attach", "f00dfeed0001", "--events", "jsonl"]
    assert "lost job f00dfeed0001 before it ended" in again["message"], again


def test_no_daemon_says_start_v2vz_serve(script, tmp_path, monkeypatch, capsys):
    client = fake_client(tmp_path, error_body("DaemonUnavailable", "UNAVAILABLE", UNREACHABLE, 2))
    monkeypatch.setenv("V2VZ_CLIENT", str(client))
    resolve, project, timeline, item, _ = project_with_clip()
    (result,) = script["main"](resolve)
    assert result["state"] == "failed", result
    assert result["message"] == (
        "'bikes.mp4': the v2vz daemon is not running or not reachable: start it in a terminal with `v2vz serve`, "
        f"then run Workspace > Scripts > Edit > v2vz Re-prompt clip again ({UNREACHABLE})"
    )
    assert item.GetClipColor() == "Pink" and [m["name"] for m in item.GetMarkers().values()] == ["v2vz"]
    assert not project.media_pool.GetRootFolder().GetSubFolderList()


def test_the_blender_reader_keeps_the_typed_error(tmp_path):
    client = fake_client(tmp_path, error_body("DaemonUnavailable", "UNAVAILABLE", UNREACHABLE, 2))
    jobs = without_blender(unpack_extension(tmp_path / "blender"), "jobs")
    request = jobs.EditRequest("/clips/a.mp4", 0, 4, "horses", "bikes", str(tmp_path / "png"))
    state = jobs.start_runner(request, str(client)).wait()  # what background mode does
    assert (state.outcome, state.reason, state.error_kind, state.returncode) == (
        "failed",
        UNREACHABLE,
        "DaemonUnavailable",
        2,
    )


EDIT_WRITES_FRAMES = """
args = sys.argv[1:]
if args[0] == "attach":
    error = {"type": "error", "error": "JobNotFound", "status": "NOT_FOUND", "message": "no such job"}
    print(json.dumps(error))
    sys.stderr.write("error: no such job\\n")
    sys.exit(2)
import os
out, frames = args[args.index("--out") + 1], int(args[args.index("--frames") + 1])
print(json.dumps({"type": "submitted", "job_id": "new000000002", "position": 0}), flush=True)
paths = []
for index in range(frames):
    paths.append(os.path.join(out, "frame_%06d.png" % index))
    open(paths[-1], "wb").write(b"png")
    frame = {"job_id": "new000000002", "sequence": index + 1, "type": "frame", "index": index, "path": paths[-1]}
    print(json.dumps(frame))
print(json.dumps({"job_id": "new000000002", "sequence": frames + 1, "type": "done", "frame_paths": paths}))
"""


def test_attaching_to_a_job_the_daemon_does_not_know_starts_a_new_one(script, tmp_path, monkeypatch, capsys):
    client = fake_client(tmp_path, EDIT_WRITES_FRAMES)
    monkeypatch.setenv("V2VZ_CLIENT", str(client))
    resolve, _, timeline, item, _ = project_with_clip()
    old = tmp_path / "old-job"
    data = {"job": "gone00000001", "dir": str(old), "submitted": "2026-01-01T00:00:00"}
    item.AddMarker(4, "Yellow", "v2vz job", "v2vz job gone00000001", 1, json.dumps(data))
    capsys.readouterr()
    (result,) = script["main"](resolve)
    assert result["state"] == "placed" and result["job"] == "new000000002", result
    assert "'bikes.mp4': the daemon has no job gone00000001 any more; starting a new one" in capsys.readouterr().out
    assert [call[0] for call in calls(client)] == ["attach", "edit"]
    assert json.loads((old / "v2vz-state.json").read_text()) == {"job": "gone00000001", "state": "lost"}
    assert timeline.GetTrackCount("video") == 2 and item.GetClipColor() == "Green"
    assert NOTE.splitlines()[1].split(": ", 1)[1] in calls(client)[1]  # the marker's prompt went to the new job


# ---------------------------------------------------------------------------------------------------------------
# Where the Resolve script finds v2vz_host


def test_without_v2vz_resolve_the_launcher_says_install_again(tmp_path, monkeypatch, capsys):
    """A launcher whose installation moved (v2vz-client.txt names no folder that exists): one line, nothing done."""
    monkeypatch.delenv("V2VZ_RESOLVE_LIB", raising=False)
    installed = install_script(tmp_path / "Edit")
    client_file = installed.with_name("v2vz-client.txt")
    client_file.write_text(client_file.read_text().splitlines()[0] + "\n/gone/host\n/gone/davinci\n")
    launcher = runpy.run_path(str(installed), run_name="v2vz_reprompt")
    resolve, _, timeline, item, _ = project_with_clip()
    capsys.readouterr()
    (result,) = launcher["main"](resolve)
    assert result["state"] == "refused" and "run `v2vz plugin install resolve` again" in result["message"]
    assert capsys.readouterr().out.count("\n") == 1 and item.GetClipColor() == ""


def test_an_older_installer_without_line_3_still_finds_the_script(tmp_path, monkeypatch):
    """v2vz-client.txt of an installer before the launcher (two lines): the script is beside line 2's folder."""
    monkeypatch.delenv("V2VZ_RESOLVE_LIB", raising=False)
    installed = install_script(tmp_path / "Edit")
    client_file = installed.with_name("v2vz-client.txt")
    client_file.write_text("\n".join(client_file.read_text().splitlines()[:2]) + "\n")
    module = runpy.run_path(str(installed), run_name="v2vz_reprompt")["load"]()
    assert module is not None and Path(module.__file__) == RESOLVE_BODY and module.host is not None


def test_without_v2vz_host_the_script_says_install_again(tmp_path, monkeypatch, capsys):
    """The script copied away from its installation, with no v2vz_host.py anywhere it looks: one line."""
    monkeypatch.delenv("V2VZ_HOST_LIB", raising=False)
    alone = tmp_path / "alone" / "davinci"
    alone.mkdir(parents=True)
    (alone / "v2vz_resolve.py").write_bytes(RESOLVE_BODY.read_bytes())
    script = runpy.run_path(str(alone / "v2vz_resolve.py"), run_name="v2vz_resolve_alone")
    assert script["host"] is None
    resolve, _, timeline, item, _ = project_with_clip()
    capsys.readouterr()
    (result,) = script["main"](resolve)
    assert result["state"] == "refused" and "run `v2vz plugin install resolve` again" in result["message"]
    assert capsys.readouterr().out.count("\n") == 1 and item.GetClipColor() == ""


def test_v2vz_host_lib_names_it_and_nothing_is_left_on_sys_path(tmp_path, monkeypatch):
    installed = install_script(tmp_path / "Edit")
    path, modules = list(sys.path), set(sys.modules)
    monkeypatch.setenv("V2VZ_HOST_LIB", str(HOST_FILE.parent))
    assert load_script(installed)["host"].progress_text({"stage": "edit", "step": 1, "total": 2}) == "edit 1/2"
    monkeypatch.setenv("V2VZ_HOST_LIB", str(HOST_FILE))  # the file itself will do too
    assert load_script(installed)["host"] is not None
    assert sys.path == path and not {name for name in set(sys.modules) - modules if "v2vz" in name}
