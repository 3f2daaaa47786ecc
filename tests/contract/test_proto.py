"""proto/ is the single source of truth: the committed Python stubs must be what protoc makes of it today."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("editor_pb2.py", "editor_pb2.pyi", "editor_pb2_grpc.py")
# The generator stamps its own release into the stubs (grpcio-tools' GRPC_GENERATED_VERSION, protoc's version): a new
# grpcio-tools on PyPI is not a change of the proto, so those stamps are compared as "some version".
_TOOL_VERSION = re.compile(r"(GRPC_GENERATED_VERSION = |Protobuf Python Version: )[^\n]*")
_RUNTIME_VERSION_ARGS = re.compile(r"_runtime_version\.Domain\.PUBLIC,\n(\s*\d+,\n){3}\s*'[^']*',")


def _without_tool_versions(text: str) -> str:
    text = _RUNTIME_VERSION_ARGS.sub("_runtime_version.Domain.PUBLIC, <version>", text)
    return _TOOL_VERSION.sub(lambda match: match.group(1) + "<version>", text)


def test_generated_stubs_match_the_proto(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(ROOT / "proto"),
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "proto/v2vz/api/v1/editor.proto"),
        ],
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "v2vz/api/v1" / name).read_text()
        committed = (ROOT / "src/v2vz/api/v1" / name).read_text()
        stale = f"src/v2vz/api/v1/{name} is stale: regenerate it from proto/ (see docs/daemon.md)"
        assert _without_tool_versions(fresh) == _without_tool_versions(committed), stale


def test_the_package_is_versioned_and_the_service_complete():
    from v2vz.api.v1 import editor_pb2

    service = editor_pb2.DESCRIPTOR.services_by_name["Editor"]
    assert service.full_name == "v2vz.v1.Editor"
    assert {m.name for m in service.methods} == {
        "GetInfo",
        "UploadMedia",
        "SubmitEdit",
        "WatchJob",
        "CancelJob",
        "ListJobs",
    }
