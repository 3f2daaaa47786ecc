"""`v2vz status`: the daemon at a glance (where, which version, model, device, memory, queue, the running job)."""

from __future__ import annotations

from typing import Annotated

import typer

from v2vz import __version__
from v2vz.api.errors import V2vzError
from v2vz.cli.output import emit_json, print_line, refuse

# status --json: its names <- DaemonInfo's fields
STATUS_FIELDS = (
    ("version", "version"),
    ("protocol", "protocol_version"),
    ("model", "model"),
    ("default_model", "default_model"),
    ("device", "device"),
    ("dtype", "dtype"),
    ("memory_total_bytes", "memory_total_bytes"),
    ("memory_used_bytes", "memory_allocated_bytes"),
    ("queued", "queued_jobs"),
    ("running_job", "running_job"),
    ("running_stage", "running_stage"),
    ("journal_writable", "journal_writable"),
)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout instead of lines.")] = False,
) -> None:
    """Show the running daemon: address, version and protocol, model, device and memory, queue, running job."""
    from v2vz.client import Client

    try:
        with Client(timeout=5) as client:
            info = client.info()
            endpoint = client.endpoint
    except V2vzError as exc:
        raise refuse(exc) from None
    ready = "ready" if info.ready else ("failed" if info.device.startswith("failed") else "loading")
    data = {name: getattr(info, field) for name, field in STATUS_FIELDS}
    data |= {"address": info.address or endpoint.address, "pid": endpoint.pid, "model_state": ready}
    data |= {"client_version": __version__, "log": endpoint.log_file}
    data |= {name: data[name] or None for name in ("running_job", "running_stage")}
    data["workers"] = [worker_view(worker) for worker in info.workers]  # a cluster's model workers; [] without
    if as_json:
        emit_json(data)
        return
    gib = 1024**3
    memory = f"{info.memory_allocated_bytes / gib:.1f} of {info.memory_total_bytes / gib:.1f} GiB in use"
    pid = f" (pid {endpoint.pid})" if endpoint.pid else ""
    version = f"v2vz {info.version}, protocol {info.protocol_version}"
    if info.version != __version__:
        version += f" (this client is {__version__}: restart `v2vz serve` to match)"
    running = f"{info.running_job}: {info.running_stage}" if info.running_job else "nothing"
    rows = [
        ("daemon", f"{data['address']}{pid}"),
        ("version", version),
        ("model", f"{info.model} ({ready})"),
        ("method", method_row(info.model)),
        ("device", device_row(info, memory)),
        ("queue", f"{info.queued_jobs} job(s) waiting" if info.queued_jobs else "empty"),
        ("running", running),
        ("journal", "writable" if info.journal_writable else "the disk is full: submits are refused until it has room"),
    ]
    if endpoint.log_file:
        rows.append(("log", endpoint.log_file))
    rows += [("worker", describe_worker(worker)) for worker in info.workers]
    for name, value in rows:
        print_line(f"{name:<9}{value}")  # a model folder, a running stage: control characters escaped


def method_row(model: str) -> str:
    """What the resident model edits with, and what a re-prompt reuses (docs/methods.md)."""
    from v2vz_engine.model_source import model_family

    if model_family(model) == "wan":
        return "flowedit (no inversion, so no inversion cache: a re-prompt costs what a first edit costs)"
    return "vid2vid-zero (inversions are cached: a re-prompt of the same frames skips them)"


def device_row(info, memory: str) -> str:
    """The device, dtype and memory; a cluster's memory is its workers' own (this process holds no model)."""
    if not info.ready:
        return info.device
    dtype = info.dtype or "dtype unknown"
    return f"{info.device}, {dtype}" if info.workers else f"{info.device}, {dtype}, {memory}"


def worker_view(worker) -> dict:
    return {
        name: getattr(worker, name) for name in ("name", "node", "device", "pid", "state", "job_id", "window", "stage")
    }


def describe_worker(worker) -> str:
    """e.g. `worker-2 on 10.0.0.7 (cuda:0 (NVIDIA H100), pid 4711): busy, job 3f9c2a51d0b4 window 3, edit 12/50`."""
    text = f"{worker.name} on {worker.node} ({worker.device}, pid {worker.pid}): {worker.state}"
    if worker.job_id:
        text += f", job {worker.job_id} " + (f"window {worker.window}" if worker.window else "anchor frames")
        text += f", {worker.stage}" if worker.stage else ""
    return text
