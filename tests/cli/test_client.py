"""The daemon's client without the real daemon: endpoint discovery, error mapping, events as JSON, and the CLI
commands against no daemon, a dead one, and a small fake Editor servicer on a real in-process gRPC server.

The tests against the real daemon live beside the daemon's own tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from v2vz import client as client_module
from v2vz.api.endpoint import Endpoint, endpoint_path, read_endpoint
from v2vz.api.errors import (
    DaemonUnauthenticated,
    DaemonUnavailable,
    InternalError,
    InvalidArgument,
    JobNotFound,
    MediaError,
    MediaNotFound,
    ResourceExhausted,
    V2vzError,
)
from v2vz.api.events import event_to_dict
from v2vz.api.job import EditJob, EditOptions
from v2vz.api.v1 import editor_pb2 as pb
from v2vz.api.v1 import editor_pb2_grpc
from v2vz.cli.main import app
from v2vz.client import Client, raise_for_rpc_error

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TOKEN = "0123abcd" * 4


def lines(text: str) -> list[str]:
    return [line for line in ANSI.sub("", text).splitlines() if line.strip()]


def squeeze(text: str) -> str:
    return "".join(ANSI.sub("", text).split())


@pytest.fixture(autouse=True)
def no_real_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never talk to a daemon that happens to run on this machine: by default the endpoint file does not exist."""
    missing = tmp_path / "no-daemon" / "endpoint.json"
    monkeypatch.setenv("V2VZ_ENDPOINT", str(missing))
    return missing


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: a Unix socket's path must fit in about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="v2vz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def write_endpoint(path: Path, address: str, token: str = TOKEN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"address": address, "token": token, "pid": os.getpid(), "version": "0.1.0"}))
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Endpoint discovery


def test_endpoint_path_prefers_v2vz_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V2VZ_ENDPOINT", str(tmp_path / "mine.json"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert endpoint_path() == tmp_path / "mine.json"


def test_endpoint_path_then_xdg_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("V2VZ_ENDPOINT")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert endpoint_path() == tmp_path / "run" / "v2vz" / "endpoint.json"


def test_endpoint_path_then_home_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("V2VZ_ENDPOINT")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert endpoint_path() == tmp_path / "home" / ".cache" / "v2vz" / "run" / "endpoint.json"


def test_empty_variables_do_not_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("V2VZ_ENDPOINT", "")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert endpoint_path() == tmp_path / ".cache" / "v2vz" / "run" / "endpoint.json"


def test_read_endpoint_reads_what_the_daemon_writes(tmp_path: Path) -> None:
    path = write_endpoint(tmp_path / "e.json", "unix:/run/user/1/v2vz/daemon.sock")
    assert read_endpoint(path) == Endpoint("unix:/run/user/1/v2vz/daemon.sock", TOKEN, os.getpid(), "0.1.0")


def test_read_endpoint_defaults_to_endpoint_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_endpoint(tmp_path / "x" / "e.json", "127.0.0.1:5050")
    monkeypatch.setenv("V2VZ_ENDPOINT", str(path))
    assert read_endpoint().address == "127.0.0.1:5050"


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ["no v2vz daemon is running", "no endpoint file at", "v2vz serve"]),  # --local: `edit` alone says it
        ("{not json", ["malformed", "not JSON", "v2vz serve"]),
        ("", ["malformed", "not JSON"]),
        ("[1, 2]", ["malformed", "not a JSON object"]),
        ('{"token": "abc"}', ["malformed", "no 'address'"]),
        ('{"address": "127.0.0.1:1"}', ["malformed", "no 'token'"]),
        ('{"address": "127.0.0.1:1", "token": ""}', ["'token' is not a non-empty string"]),
        ('{"address": 5, "token": "t"}', ["'address' is not a non-empty string"]),
        ('{"address": "127.0.0.1:1", "token": "t", "pid": "12"}', ["'pid' is not an integer"]),
    ],
    ids=["missing", "bad json", "empty", "a list", "no address", "no token", "empty token", "number", "pid"],
)
def test_read_endpoint_errors_are_one_line(tmp_path: Path, content: str | None, words: list[str]) -> None:
    path = tmp_path / "endpoint.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DaemonUnavailable) as caught:
        read_endpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


def test_read_endpoint_of_a_folder_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailable) as caught:
        read_endpoint(tmp_path)
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# Events as JSON


def event(sequence: int, **kind: object) -> pb.JobEvent:
    return pb.JobEvent(job_id="job-1", sequence=sequence, time_unix=1700000000.5 + sequence, **kind)


def test_event_to_dict_queued() -> None:
    assert event_to_dict(event(1, queued=pb.Queued(position=3))) == {
        "job_id": "job-1",
        "sequence": 1,
        "time": 1700000001.5,
        "type": "queued",
        "position": 3,
    }


def test_event_to_dict_progress() -> None:
    data = event_to_dict(event(4, progress=pb.Progress(stage="inversion", step=2, total=50, cached=True)))
    assert data["type"] == "progress"
    assert {k: data[k] for k in ("stage", "step", "total", "cached")} == {
        "stage": "inversion",
        "step": 2,
        "total": 50,
        "cached": True,
    }


def test_event_to_dict_frame_leaves_the_png_out() -> None:
    frame = pb.FrameReady(index=2, path="/out/frame_000002.png", png=b"\x89PNG" * 100, chunk=0, chunks=1)
    data = event_to_dict(event(9, frame=frame))
    assert data == {
        "job_id": "job-1",
        "sequence": 9,
        "time": 1700000009.5,
        "type": "frame",
        "index": 2,
        "path": "/out/frame_000002.png",
    }
    assert event_to_dict(event(9, frame=pb.FrameReady(index=0)))["path"] is None


def test_event_to_dict_done() -> None:
    done = pb.Done(output="/out/x.mp4", frame_paths=["/f/0.png", "/f/1.png"], inversion_cached=True)
    done.timings.update({"inversion": 1.5, "edit": 2.0})
    data = event_to_dict(event(12, done=done))
    assert data["type"] == "done"
    assert data["output"] == "/out/x.mp4" and data["frame_paths"] == ["/f/0.png", "/f/1.png"]
    assert data["timings"] == {"edit": 2.0, "inversion": 1.5} and data["inversion_cached"] is True
    assert event_to_dict(event(12, done=pb.Done(frame_paths=["/f/0.png"])))["output"] is None


def test_event_to_dict_failed_and_cancelled() -> None:
    failed = event_to_dict(event(5, failed=pb.Failed(reason="the GPU ran out of memory", code="RESOURCE_EXHAUSTED")))
    assert failed["type"] == "failed" and failed["reason"] == "the GPU ran out of memory"
    assert failed["code"] == "RESOURCE_EXHAUSTED"
    cancelled = event_to_dict(event(6, cancelled=pb.Cancelled(reason="cancelled by the user")))
    assert cancelled["type"] == "cancelled" and cancelled["reason"] == "cancelled by the user"


def test_every_event_dict_is_json() -> None:
    kinds = [
        {"queued": pb.Queued(position=0)},
        {"progress": pb.Progress(stage="edit", step=1, total=2)},
        {"frame": pb.FrameReady(index=0, path="/p.png", png=b"\x00\xff")},
        {"done": pb.Done(output="/o.mp4")},
        {"failed": pb.Failed(reason="r", code="INTERNAL")},
        {"cancelled": pb.Cancelled(reason="r")},
    ]
    for sequence, kind in enumerate(kinds, 1):
        data = event_to_dict(event(sequence, **kind))
        assert json.loads(json.dumps(data)) == data
        assert data["type"] == next(iter(kind))


# ---------------------------------------------------------------------------------------------------------------
# Status codes -> errors


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    "code, job_id, kind, words",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, None, InvalidArgument, ["the prompt is empty"]),
        (grpc.StatusCode.NOT_FOUND, None, MediaNotFound, ["the prompt is empty"]),
        (grpc.StatusCode.NOT_FOUND, "job-9", JobNotFound, ["the prompt is empty"]),
        (grpc.StatusCode.FAILED_PRECONDITION, None, MediaError, ["the prompt is empty"]),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, None, ResourceExhausted, ["the prompt is empty"]),
        (grpc.StatusCode.UNAUTHENTICATED, None, DaemonUnauthenticated, ["refused the token in", "v2vz serve"]),
        (grpc.StatusCode.UNAVAILABLE, None, DaemonUnavailable, ["not reachable", "v2vz serve"]),
        (grpc.StatusCode.DEADLINE_EXCEEDED, None, DaemonUnavailable, ["did not answer"]),
        (grpc.StatusCode.INTERNAL, None, InternalError, ["INTERNAL", "the prompt is empty"]),
    ],
)
def test_status_codes_map_to_our_errors(
    code: grpc.StatusCode, job_id: str | None, kind: type[Exception], words: list[str]
) -> None:
    with pytest.raises(V2vzError) as caught:
        raise_for_rpc_error(FakeRpcError(code, "the prompt is empty:\n  say what"), job_id=job_id)
    assert type(caught.value) is kind
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_unauthenticated_names_the_endpoint_file(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnauthenticated) as caught:
        raise_for_rpc_error(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, ""), endpoint_file=tmp_path / "e.json")
    assert str(tmp_path / "e.json") in str(caught.value) and "V2VZ_ENDPOINT" in str(caught.value)


def test_not_found_without_details_still_says_something() -> None:
    with pytest.raises(JobNotFound) as caught:
        raise_for_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, ""), job_id="job-9")
    assert "job-9" in str(caught.value) and "v2vz jobs" in str(caught.value)


def test_unreachable_keeps_the_useful_part_of_grpcs_details() -> None:
    details = (
        "failed to connect to all addresses; last error: UNKNOWN: unix:/x/daemon.sock: connect failed: "
        "addr: unix:/x/daemon.sock error: Connection refused"
    )
    with pytest.raises(DaemonUnavailable) as caught:
        raise_for_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, details), address="unix:/x/daemon.sock")
    assert "at unix:/x/daemon.sock is not reachable (Connection refused)" in str(caught.value)


# ---------------------------------------------------------------------------------------------------------------
# The CLI without a daemon: one line, exit 2


def invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def assert_one_error_line(result, *words: str, jsonl_error: str | None = None) -> str:
    """One `error:` line on stderr and exit 2; stdout empty, or with --events jsonl only the typed `error` line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if jsonl_error is None:
        assert result.stdout == ""
    else:
        (line,) = lines(result.stdout)
        typed = json.loads(line)
        assert typed["type"] == "error" and typed["error"] == jsonl_error, typed
        assert typed["status"] == "UNAVAILABLE" and "error: " + typed["message"] == lines(result.stderr)[0]
    said = lines(result.stderr)
    assert len(said) == 1 and said[0].startswith("error:"), said
    for word in words:
        assert word in said[0], said
    return said[0]


NO_DAEMON_COMMANDS = {
    "edit": lambda tmp: ["edit", str(tmp / "clip.mp4"), "-p", "a jeep", "-s", "a car", "--out", str(tmp / "o.mp4")],
    "edit jsonl": lambda tmp: ["edit", str(tmp / "clip.mp4"), "-p", "a jeep", "-s", "a car", "--events", "jsonl"],
    "jobs": lambda tmp: ["jobs"],
    "jobs json": lambda tmp: ["jobs", "--json"],
    "cancel": lambda tmp: ["cancel", "x"],
    "attach": lambda tmp: ["attach", "x"],
    "attach jsonl": lambda tmp: ["attach", "x", "--events", "jsonl"],
}


@pytest.mark.parametrize("command", NO_DAEMON_COMMANDS)
def test_without_a_daemon_says_to_start_one(
    command: str, tmp_path: Path, no_real_daemon: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(NO_DAEMON_COMMANDS[command](tmp_path))
    jsonl = "DaemonUnavailable" if command.endswith("jsonl") else None
    line = assert_one_error_line(result, "no v2vz daemon is running", "v2vz serve", jsonl_error=jsonl)
    assert ("pass --local" in line) == command.startswith("edit"), line  # the one command that has --local
    assert str(no_real_daemon) in line
    assert not list(tmp_path.glob("*.mp4"))


def test_edit_checks_its_arguments_before_looking_for_a_daemon(tmp_path: Path) -> None:
    result = invoke(["edit", str(tmp_path / "clip.mp4"), "-p", "", "-s", "a car"])
    assert_one_error_line(result, "prompt is empty")


def test_events_with_local_is_refused(tmp_path: Path) -> None:
    result = invoke(["edit", str(tmp_path / "c.mp4"), "-p", "a", "-s", "b", "--local", "--events", "jsonl"])
    assert_one_error_line(result, "--events", "--local")


@pytest.fixture
def dead_endpoint(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An endpoint file left behind by a daemon that is gone: its socket file exists but nobody listens."""
    sock = short_dir / "daemon.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    listener.close()
    path = write_endpoint(short_dir / "endpoint.json", f"unix:{sock}")
    monkeypatch.setenv("V2VZ_ENDPOINT", str(path))
    return path


@pytest.mark.parametrize("command", NO_DAEMON_COMMANDS)
def test_a_dead_daemon_is_one_line_quickly(
    command: str, tmp_path: Path, dead_endpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    began = time.monotonic()
    result = invoke(NO_DAEMON_COMMANDS[command](tmp_path))
    assert time.monotonic() - began < 5
    jsonl = "DaemonUnavailable" if command.endswith("jsonl") else None
    assert_one_error_line(
        result, "not reachable", "v2vz serve", str(dead_endpoint.parent / "daemon.sock"), jsonl_error=jsonl
    )


def test_client_to_a_dead_daemon_fails_at_once(dead_endpoint: Path) -> None:
    began = time.monotonic()
    with Client() as client, pytest.raises(DaemonUnavailable, match="not reachable"):
        list(client.follow("job-1"))
    with Client() as client, pytest.raises(DaemonUnavailable, match="not reachable"):
        client.info()
    assert time.monotonic() - began < 5


# ---------------------------------------------------------------------------------------------------------------
# A fake daemon


def job_events(job_id: str, outcome: str) -> list[pb.JobEvent]:
    kinds: list[dict[str, object]] = [
        {"queued": pb.Queued(position=1)},
        {"progress": pb.Progress(stage="start", step=0, total=1)},
        {"progress": pb.Progress(stage="decode", step=1, total=1)},
        {"progress": pb.Progress(stage="inversion", step=1, total=2)},
        {"progress": pb.Progress(stage="inversion", step=2, total=2)},
        {"progress": pb.Progress(stage="edit", step=1, total=2)},
        {"progress": pb.Progress(stage="edit", step=2, total=2)},
        {"frame": pb.FrameReady(index=0, path="/daemon/out/frame_000000.png")},
        {"progress": pb.Progress(stage="write", step=1, total=1)},
    ]
    if outcome == "done":
        done = pb.Done(output="/daemon/out/x.mp4", frame_paths=["/daemon/out/frame_000000.png"])
        done.timings.update({"decode": 0.1, "inversion": 1.0, "edit": 2.0})
        kinds.append({"done": done})
    elif outcome == "cancelled":
        kinds.append({"cancelled": pb.Cancelled(reason="cancelled by the user")})
    else:
        reason, code = outcome.split(":", 1)
        kinds.append({"failed": pb.Failed(reason=reason, code=code)})
    return [
        pb.JobEvent(job_id=job_id, sequence=n, time_unix=1700000000.0 + n, **kind) for n, kind in enumerate(kinds, 1)
    ]


class FakeEditor(editor_pb2_grpc.EditorServicer):
    """Just enough of the daemon: checks the token, records what it got, replays a fixed list of events."""

    def __init__(self, token: str = TOKEN, outcome: str = "done", drop_after: int | None = None) -> None:
        self.token = token
        self.outcome = outcome
        self.drop_after = drop_after  # the first WatchJob stream fails with UNAVAILABLE after this many events
        self.on_drop: Callable[[], None] = lambda: None
        self.authorization: list[tuple[str, str | None]] = []
        self.submitted: list[pb.SubmitEditRequest] = []
        self.watches: list[int] = []
        self.cancelled: list[str] = []
        self.jobs = {"job-1"}

    def _check(self, context: grpc.ServicerContext, method: str) -> None:
        got = dict(context.invocation_metadata()).get("authorization")
        self.authorization.append((method, got))
        if got != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

    def GetInfo(self, request, context):
        self._check(context, "GetInfo")
        return pb.DaemonInfo(version="0.1.0", protocol_version=1, model="tiny", device="cpu", ready=True)

    def SubmitEdit(self, request, context):
        self._check(context, "SubmitEdit")
        if not request.prompt.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the prompt is empty: say what the clip should show")
        self.submitted.append(request)
        return pb.SubmitEditReply(job_id="job-1", queue_position=1)

    def WatchJob(self, request, context):
        self._check(context, "WatchJob")
        if request.job_id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}: `v2vz jobs` lists the known ones")
        self.watches.append(request.after_sequence)
        first = len(self.watches) == 1
        every = job_events(request.job_id, self.outcome)
        # Like the daemon: past the end of an ended job, the terminal event comes again.
        events = [e for e in every if e.sequence > request.after_sequence] or every[-1:]
        for sent, item in enumerate(events):
            if first and self.drop_after is not None and sent == self.drop_after:
                self.on_drop()
                context.abort(grpc.StatusCode.UNAVAILABLE, "the daemon is restarting")
            yield item

    def CancelJob(self, request, context):
        self._check(context, "CancelJob")
        if request.job_id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}: `v2vz jobs` lists the known ones")
        self.cancelled.append(request.job_id)
        return pb.CancelJobReply(state="cancelled")

    def ListJobs(self, request, context):
        self._check(context, "ListJobs")
        return pb.ListJobsReply(
            jobs=[
                pb.JobSummary(
                    job_id="job-2",
                    state="failed",
                    source="/clips/notes.mp4",
                    prompt="a jeep",
                    start=0,
                    frames=8,
                    submitted_unix=1700000100.0,
                    finished_unix=1700000101.0,
                    reason="notes.mp4 cannot be read as video",
                    attempts=1,
                ),
                pb.JobSummary(
                    job_id="job-1",
                    state="running",
                    source="/clips/bikes.mp4",
                    prompt="a jeep on snow",
                    start=100,
                    frames=6,
                    submitted_unix=1700000000.0,
                    attempts=1,
                ),
            ][: request.limit or None]
        )


class FakeDaemon:
    def __init__(self, editor: FakeEditor, address: str, endpoint_file: Path) -> None:
        self.editor = editor
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        editor_pb2_grpc.add_EditorServicer_to_server(editor, self.server)
        port = self.server.add_insecure_port(address)
        self.address = address if address.startswith("unix:") else f"127.0.0.1:{port}"
        self.server.start()
        self.endpoint_file = write_endpoint(endpoint_file, self.address, editor.token)

    def stop(self) -> None:
        self.server.stop(grace=None)


@pytest.fixture(params=["tcp", "unix"])
def daemon(request, short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    address = "127.0.0.1:0" if request.param == "tcp" else f"unix:{short_dir / 'daemon.sock'}"
    fake = FakeDaemon(FakeEditor(), address, short_dir / "endpoint.json")
    monkeypatch.setenv("V2VZ_ENDPOINT", str(fake.endpoint_file))
    yield fake
    fake.stop()


@pytest.fixture
def tcp_daemon(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(FakeEditor(), "127.0.0.1:0", short_dir / "endpoint.json")
    monkeypatch.setenv("V2VZ_ENDPOINT", str(fake.endpoint_file))
    yield fake
    fake.stop()


def a_job(tmp_path: Path) -> EditJob:
    return EditJob(
        source=tmp_path / "clip.mp4",
        prompt="a jeep",
        source_prompt="a car",
        start=3,
        frames=4,
        options=EditOptions(steps=7),
        output=tmp_path / "o.mp4",
    )


def test_every_call_carries_the_bearer_token(daemon: FakeDaemon, tmp_path: Path) -> None:
    with Client() as client:
        assert client.info().model == "tiny"
        reply = client.submit(a_job(tmp_path))
        assert reply.job_id == "job-1" and reply.queue_position == 1
        events = list(client.follow(reply.job_id))
        assert [e.sequence for e in events] == list(range(1, 11))
        assert events[-1].WhichOneof("kind") == "done"
        assert client.cancel("job-1") == "cancelled"
        assert [job.job_id for job in client.jobs(limit=1)] == ["job-2"]
    methods = [method for method, _ in daemon.editor.authorization]
    assert methods == ["GetInfo", "SubmitEdit", "WatchJob", "CancelJob", "ListJobs"]
    assert {token for _, token in daemon.editor.authorization} == {f"Bearer {TOKEN}"}
    request = daemon.editor.submitted[0]
    assert (request.start, request.frames, request.options["steps"]) == (3, 4, "7")


def test_submit_sends_absolute_paths(tcp_daemon: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = EditJob(
        source=Path("clip.mp4"), prompt="a", source_prompt="b", output=Path("o.mp4"), out_frames_dir=Path("f")
    )
    with Client() as client:
        client.submit(job)
    request = tcp_daemon.editor.submitted[0]
    assert request.source_path == str(tmp_path.resolve() / "clip.mp4")
    assert request.output == str(tmp_path.resolve() / "o.mp4")
    assert request.out_frames_dir == str(tmp_path.resolve() / "f")


def test_a_wrong_token_is_one_clear_error(tcp_daemon: FakeDaemon) -> None:
    with Client(Endpoint(tcp_daemon.address, "not-the-token")) as client, pytest.raises(DaemonUnauthenticated) as e:
        client.info()
    assert "refused the token" in str(e.value) and "v2vz serve" in str(e.value)
    tcp_daemon.endpoint_file.write_text(json.dumps({"address": tcp_daemon.address, "token": "stale"}))
    result = invoke(["jobs"])
    assert_one_error_line(result, "refused the token in", str(tcp_daemon.endpoint_file))


def test_unknown_job_is_job_not_found(tcp_daemon: FakeDaemon) -> None:
    with Client() as client:
        with pytest.raises(JobNotFound, match="no job 'nope'"):
            list(client.follow("nope"))
        with pytest.raises(JobNotFound, match="no job 'nope'"):
            client.cancel("nope")
    assert_one_error_line(invoke(["attach", "nope"]), "no job 'nope'", "v2vz jobs")
    assert_one_error_line(invoke(["cancel", "nope"]), "no job 'nope'")


def test_submit_refused_is_the_daemons_line(tcp_daemon: FakeDaemon, tmp_path: Path) -> None:
    job = EditJob(source=tmp_path / "c.mp4", prompt=" ", source_prompt="b", output=tmp_path / "o.mp4")
    with Client() as client, pytest.raises(InvalidArgument, match="the prompt is empty"):
        client.submit(job)  # the client does not validate: the daemon does


def test_watch_reattaches_after_the_last_sequence_seen(daemon: FakeDaemon) -> None:
    daemon.editor.drop_after = 2
    with Client() as client:
        events = list(client.follow("job-1"))
    assert daemon.editor.watches == [0, 2]
    assert [e.sequence for e in events] == list(range(1, 11))
    assert events[-1].WhichOneof("kind") == "done"


def test_watch_resumes_from_after(tcp_daemon: FakeDaemon) -> None:
    tcp_daemon.editor.drop_after = 3
    with Client() as client:
        events = list(client.follow("job-1", after=4))
    assert tcp_daemon.editor.watches == [4, 7]
    assert [e.sequence for e in events] == list(range(5, 11))


def test_watch_without_reconnect_says_how_to_reattach(tcp_daemon: FakeDaemon) -> None:
    tcp_daemon.editor.drop_after = 2
    seen = []
    with Client() as client, pytest.raises(DaemonUnavailable) as caught:
        for item in client.follow("job-1", reconnect=False):
            seen.append(item.sequence)
    assert seen == [1, 2]
    assert "v2vz attach job-1 --after 2" in str(caught.value)


def test_watch_follows_a_restarted_daemon_to_its_new_address_and_token(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint_file = short_dir / "endpoint.json"
    first = FakeDaemon(FakeEditor(drop_after=3), "127.0.0.1:0", endpoint_file)
    monkeypatch.setenv("V2VZ_ENDPOINT", str(endpoint_file))
    second: list[FakeDaemon] = []

    def restart() -> None:  # the new daemon is up, with a new port and token, before the old stream breaks
        second.append(FakeDaemon(FakeEditor(token="new-token"), "127.0.0.1:0", endpoint_file))

    first.editor.on_drop = restart
    try:
        with Client() as client:
            events = list(client.follow("job-1"))
    finally:
        first.stop()
        for fake in second:
            fake.stop()
    assert [e.sequence for e in events] == list(range(1, 11))
    assert second[0].editor.watches == [3]
    assert second[0].editor.authorization == [("WatchJob", "Bearer new-token")]


def test_watch_gives_up_after_its_reconnect_budget(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDaemon(FakeEditor(drop_after=2), "127.0.0.1:0", short_dir / "endpoint.json")
    monkeypatch.setenv("V2VZ_ENDPOINT", str(fake.endpoint_file))

    def gone() -> None:  # the daemon goes away for good, its endpoint file with it
        fake.endpoint_file.unlink()
        fake.stop()

    fake.editor.on_drop = gone
    try:
        began = time.monotonic()
        with Client(reconnect_for=0.6) as client, pytest.raises(DaemonUnavailable) as caught:
            list(client.follow("job-1"))
        assert time.monotonic() - began < 5
    finally:
        fake.stop()
    message = str(caught.value)
    assert "\n" not in message and "v2vz attach job-1 --after 2" in message and "v2vz serve" in message


# ---------------------------------------------------------------------------------------------------------------
# The CLI against the fake daemon


def jsonl(stdout: str) -> list[dict]:
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert all(isinstance(row, dict) for row in rows)
    return rows


def test_edit_events_jsonl(daemon: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    daemon.editor.drop_after = 4  # and the daemon restarts in the middle
    result = invoke(["edit", "clip.mp4", "-p", "a jeep", "-s", "a car", "--out", "o.mp4", "--events", "jsonl"])
    assert result.exit_code == 0, (result.output, result.exception)
    rows = jsonl(result.stdout)
    out = str(tmp_path.resolve() / "o.mp4")
    assert rows[0] == {
        "type": "submitted",
        "job_id": "job-1",
        "position": 1,
        "take": None,
        "output": out,
        "preview": False,
    }
    assert [row["sequence"] for row in rows[1:]] == list(range(1, 11))
    assert all(row["job_id"] == "job-1" for row in rows)
    assert rows[1]["type"] == "queued" and rows[-1]["type"] == "done"
    assert rows[-1]["output"] == "/daemon/out/x.mp4"
    assert {row["type"] for row in rows} == {"submitted", "queued", "progress", "frame", "done"}
    assert daemon.editor.watches == [0, 4]
    request = daemon.editor.submitted[0]
    assert request.source_path == str(tmp_path.resolve() / "clip.mp4")
    assert request.output == str(tmp_path.resolve() / "o.mp4")
    assert lines(result.stderr) == []


def test_edit_with_a_progress_bar(tcp_daemon: FakeDaemon, tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    result = invoke(["edit", str(tmp_path / "clip.mp4"), "-p", "a jeep", "-s", "a car", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout == ""
    said = squeeze(result.stderr)
    assert "DDIMinversion" in said and "editing" in said
    assert lines(result.stderr)[-1].startswith("wrote /daemon/out/x.mp4, 1 PNG frames in /daemon/out: 8 frames in")


def test_edit_with_another_model_sends_it_with_the_job(tcp_daemon: FakeDaemon, tmp_path: Path) -> None:
    """Issue 14: the job names its model (the daemon loads it); it no longer edits with its own behind a note."""
    args = ["edit", str(tmp_path / "c.mp4"), "-p", "a", "-s", "b", "--model", "sd15-random", "-q"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "applies to --local only" not in result.stderr
    assert [request.model for request in tcp_daemon.editor.submitted] == ["sd15-random"]


@pytest.mark.parametrize(
    "outcome, code, words",
    [
        ("clip.mp4 cannot be read as video:FAILED_PRECONDITION", 2, ["clip.mp4 cannot be read as video"]),
        ("frames 248..255 are outside the clip:INVALID_ARGUMENT", 2, ["outside the clip"]),
        ("the GPU ran out of memory: try fewer frames:RESOURCE_EXHAUSTED", 1, ["ran out of memory"]),
        ("cancelled", 1, ["job-1 was cancelled", "cancelled by the user"]),
    ],
    ids=["undecodable", "range", "out of memory", "cancelled"],
)
@pytest.mark.parametrize("events", [False, True], ids=["bar", "jsonl"])
def test_edit_that_does_not_finish(
    outcome: str, code: int, words: list[str], events: bool, tcp_daemon: FakeDaemon, tmp_path: Path
) -> None:
    tcp_daemon.editor.outcome = outcome
    args = ["edit", str(tmp_path / "clip.mp4"), "-p", "a jeep", "-s", "a car"] + (["--events", "jsonl"] * events)
    result = invoke(args)
    assert result.exit_code == code, (result.output, result.exception)
    said = lines(result.stderr)
    assert said[-1].startswith("error:"), said
    for word in words:
        assert word in said[-1], said
    if events:
        rows = jsonl(result.stdout)
        assert rows[-1]["type"] == ("cancelled" if outcome == "cancelled" else "failed")
        assert said == [said[-1]]
    else:
        assert result.stdout == ""


def test_attach_jsonl_after(tcp_daemon: FakeDaemon) -> None:
    result = invoke(["attach", "job-1", "--after", "6", "--events", "jsonl"])
    assert result.exit_code == 0, (result.output, result.exception)
    rows = jsonl(result.stdout)
    assert [row["sequence"] for row in rows] == [7, 8, 9, 10] and rows[-1]["type"] == "done"
    assert tcp_daemon.editor.watches == [6]


@pytest.mark.parametrize("after", [10, 25])
def test_attach_past_the_end_gets_the_outcome(after: int, tcp_daemon: FakeDaemon) -> None:
    result = invoke(["attach", "job-1", "--after", str(after), "--events", "jsonl"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert [(row["sequence"], row["type"]) for row in jsonl(result.stdout)] == [(10, "done")]
    tcp_daemon.editor.outcome = "the GPU ran out of memory:RESOURCE_EXHAUSTED"
    result = invoke(["attach", "job-1", "--after", str(after)])
    assert result.exit_code == 1 and lines(result.stderr)[-1] == "error: the GPU ran out of memory"


def test_attach_with_a_bar(tcp_daemon: FakeDaemon) -> None:
    result = invoke(["attach", "job-1"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert lines(result.stderr)[-1].startswith("wrote /daemon/out/x.mp4")


def test_ctrl_c_detaches_without_cancelling(tcp_daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    real_watch = Client.follow

    def interrupted(self, job_id, after=0, reconnect=True):
        for item in real_watch(self, job_id, after, reconnect):
            yield item
            if item.sequence == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(Client, "follow", interrupted)
    for args in (["attach", "job-1"], ["attach", "job-1", "--events", "jsonl"]):
        result = invoke(args)
        assert result.exit_code == 130, (result.output, result.exception)
        said = lines(result.stderr)
        assert len(said) >= 1 and "v2vz attach job-1" in said[-1] and "v2vz cancel job-1" in said[-1], said
    assert tcp_daemon.editor.cancelled == []


def test_jobs_table_and_json(tcp_daemon: FakeDaemon) -> None:
    result = invoke(["jobs"])
    assert result.exit_code == 0, (result.output, result.exception)
    table = squeeze(result.stdout)
    for word in ("job-1", "running", "bikes.mp4", "100..105", "job-2", "failed", "notes.mp4", "2023-11-1"):
        assert word in table, result.stdout
    result = invoke(["jobs", "--json", "--limit", "1"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 1 and rows[0]["job_id"] == "job-2" and rows[0]["reason"] == "notes.mp4 cannot be read as video"
    assert rows[0]["finished"] == 1700000101.0


def test_cancel_prints_the_state(tcp_daemon: FakeDaemon) -> None:
    result = invoke(["cancel", "job-1"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.strip() == "job-1: cancelled"
    assert tcp_daemon.editor.cancelled == ["job-1"]


def test_message_size_limits_are_raised() -> None:
    options = dict(client_module.CHANNEL_OPTIONS)
    assert options["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    assert options["grpc.max_send_message_length"] == 64 * 1024 * 1024
