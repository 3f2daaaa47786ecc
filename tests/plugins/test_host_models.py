"""The hosts' model and LoRA fields (issue 26): v2vz_host lists the checkpoints `v2vz models --json` names (a failure
gives [] and never blocks), the Blender extension and the Resolve script offer them and pass `--model` and `--lora`.

No daemon: a fake `v2vz` (test_host_client.fake_client) answers `models` and logs its `edit` call; one test runs the
installed client on header-only checkpoints.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from ..engine.test_single_file import SD1, fake_checkpoint
from .test_blender_extension import BLENDERS, CLIENT_SCENARIO_START, bpy_python, run_scenario, unpack_extension
from .test_host_client import calls, fake_client, host, script  # noqa: F401 - fixtures
from .test_local_edits import CLIP, LOCAL_CLIENT, resolve_run
from .test_resolve_script import NOTE

V2VZ = str(Path(sys.executable).with_name("v2vz"))
ROWS = [
    {"model": "tiny", "kind": "built-in", "where": "/cache"},
    {"model": "/m/dreamshaper_8.safetensors", "kind": "file", "family": "SD 1.x", "prediction": "epsilon",
     "size_bytes": 2 * 2**30, "problem": None},
    {"model": "/m/inpaint.safetensors", "kind": "file", "family": None, "problem": "is an inpainting model"},
    {"model": "/m/v2.safetensors", "kind": "file", "family": "SD 2.x", "prediction": "v_prediction",
     "size_bytes": 5 * 2**20, "problem": None},
]  # fmt: skip
DREAM = ("dreamshaper_8.safetensors (SD 1.x, epsilon, 2.00 GiB)", "/m/dreamshaper_8.safetensors")
V2 = ("v2.safetensors (SD 2.x, v_prediction, 5.0 MiB)", "/m/v2.safetensors")
# `v2vz models` prints ROWS; any other call is LOCAL_CLIENT's `v2vz edit` (frames, then done)
MODELS_BODY = "if sys.argv[1] == 'models':\n    print(json.dumps(ROWS))\n    sys.exit(0)\n"


def models_client(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / "grey.png"
    Image.new("L", (8, 4), 128).save(png)
    return fake_client(folder, f"PNG = {str(png)!r}\nROWS = {ROWS!r}\n" + MODELS_BODY + LOCAL_CLIENT)


# ---------------------------------------------------------------------------------------------------------------
# v2vz_host


def test_the_usable_checkpoints_are_offered_as_label_and_path(host, tmp_path):  # noqa: F811
    client = models_client(tmp_path)
    assert host.model_choices(str(client), ["/a1111", " "]) == [DREAM, V2]
    assert calls(client) == [["models", "--json", "--models-dir", "/a1111"]]


def test_the_installed_client_lists_checkpoint_files_of_a_models_folder(host, tmp_path):  # noqa: F811
    (tmp_path / "models").mkdir()
    mine = fake_checkpoint(tmp_path / "models" / "mine.safetensors", SD1)
    (tmp_path / "models" / "empty.safetensors").write_bytes(b"")  # refused by --model: not offered
    env = {**os.environ, "V2VZ_ENDPOINT": str(tmp_path / "no-daemon.json"), "V2VZ_MODELS": ""}
    (choice,) = host.model_choices(V2VZ, [str(tmp_path / "models")], env=env)
    assert choice[1] == str(mine) and choice[0].startswith("mine.safetensors (SD 1.x, epsilon, "), choice


@pytest.mark.parametrize(
    "body",
    [
        "sys.stderr.write('error: no such command models\\n')\nsys.exit(2)\n",  # a client from before `models`
        "print('not json')\n",
        "print(json.dumps({'model': 'x'}))\n",  # not a list
        "print(json.dumps([1, {'kind': 'file'}, {'kind': 'file', 'model': ''}]))\n",
        "import time\ntime.sleep(10)\n",  # hangs: the timeout ends it
    ],
    ids=["old-client", "not-json", "not-a-list", "bad-rows", "hangs"],
)
def test_a_failing_listing_offers_nothing(host, tmp_path, body):  # noqa: F811
    started = time.monotonic()
    assert host.model_choices(str(fake_client(tmp_path, body)), timeout=1.0) == []
    assert time.monotonic() - started < 5
    assert host.model_choices(None) == [] and host.model_choices(str(tmp_path / "missing")) == []


def test_model_choices_come_on_a_thread_and_a_failure_is_an_empty_list(host):  # noqa: F811
    gate = __import__("threading").Event()
    slow = host.ModelChoices(lambda: [DREAM] if gate.wait(5) else []).start()
    assert slow.get() == []  # not there yet: the UI goes on without them
    gate.set()
    assert slow.get(wait=5) == [DREAM]

    def broken():
        raise RuntimeError("boom")

    assert host.ModelChoices(broken).start().get(wait=5) == []


def test_lora_entries_are_split_and_passed_as_lora_flags(host):  # noqa: F811
    assert host.split_loras(" /l/ink.safetensors:0.6 ;; C:\\l\\grain.safetensors ; ") == [
        "/l/ink.safetensors:0.6",
        "C:\\l\\grain.safetensors",
    ]
    assert [host.lora_path(e) for e in ("/l/ink.safetensors:0.6", "C:\\l\\g.safetensors", "a:-1e-1")] == [
        "/l/ink.safetensors",
        "C:\\l\\g.safetensors",
        "a",
    ]
    edit = host.LocalEdit(loras=["/l/ink.safetensors:0.6", " /l/grain.safetensors "])
    assert edit.args() == ["--lora", "/l/ink.safetensors:0.6", "--lora", "/l/grain.safetensors"] and not edit.local
    assert host.LocalEdit(loras=[" "]).problem() == "a LoRA needs a path: PATH or PATH:SCALE"


# ---------------------------------------------------------------------------------------------------------------
# Resolve: `model:` and `lora:` marker lines; the Studio dialog's Model list and LoRAs field


def test_resolve_passes_the_markers_model_and_every_lora_line(script, tmp_path, monkeypatch):  # noqa: F811
    ink, grain = tmp_path / "ink.safetensors", tmp_path / "grain.safetensors"
    ink.write_bytes(b"lora"), grain.write_bytes(b"lora")
    note = NOTE + f"\nmodel: /m/dreamshaper_8.safetensors\nlora: {ink}:0.6\nLoRA: {grain}"
    result, call, _ = resolve_run(script, tmp_path, monkeypatch, note)
    assert result["state"] == "placed", result
    assert call[call.index("--model") : call.index("--events")] == [
        "--model", "/m/dreamshaper_8.safetensors", "--lora", f"{ink}:0.6", "--lora", str(grain),
    ]  # fmt: skip


def test_resolve_refuses_a_lora_that_does_not_exist(script, tmp_path, monkeypatch):  # noqa: F811
    result, call, _ = resolve_run(script, tmp_path, monkeypatch, NOTE + "\nlora: /no/such/ink.safetensors:0.5")
    assert result["state"] == "refused", result
    assert "the LoRA /no/such/ink.safetensors of 'bikes.mp4' does not exist" in result["message"]
    assert call == []  # nothing was submitted


class Widget(dict):
    """A UIManager element: its properties, and what AddItem gave a ComboBox."""

    def __getattr__(self, name):
        return self.get(name)

    def __setattr__(self, name, value):
        self[name] = value

    def AddItem(self, text):  # noqa: N802 - Resolve's name
        self.setdefault("Items", []).append(text)


class FakeUI:
    """Enough of Resolve's UIManager for the prompt dialog: `typed` is what the user types before Re-prompt."""

    def __init__(self, typed: dict) -> None:
        self.typed, self.widgets, self.given = typed, {}, {}

    def __getattr__(self, kind):
        def make(spec=None):
            widget = Widget(spec) if isinstance(spec, dict) else Widget(children=spec)
            if isinstance(spec, dict) and spec.get("ID"):
                self.widgets[spec["ID"]], self.given[spec["ID"]] = widget, dict(spec)
            widget.kind = kind
            return widget

        return make

    # the dispatcher
    def AddWindow(self, spec, layout):  # noqa: N802
        ui = self

        class Window:
            On = type("On", (), {"ok": Widget(), "no": Widget(), "v2vzPrompt": Widget()})()

            def GetItems(self):  # noqa: N802
                return ui.widgets

            def Show(self):  # noqa: N802
                pass

            Hide = Show

        self.window = Window()
        return self.window

    def RunLoop(self):  # noqa: N802
        for key, value in self.typed.items():
            setattr(self.widgets[key], "CurrentText" if key == "model" else "Text", value)
        self.window.On.ok.Clicked(None)

    def ExitLoop(self):  # noqa: N802
        pass


def test_the_studio_dialog_offers_the_checkpoints_and_takes_loras(script, tmp_path):  # noqa: F811
    ui = FakeUI({"source": "bikes", "prompt": "horses", "model": DREAM[0], "loras": "/l/ink.safetensors:0.6"})
    models = script["host"].ModelChoices(lambda: [DREAM, V2]).start()
    dialog = script["Dialog"](ui, ui, models)
    answer = dialog.ask("shot", {"model": "/m/v2.safetensors", "loras": "/l/a.safetensors"})
    assert ui.widgets["model"]["Items"] == ["/m/v2.safetensors", DREAM[0]]  # the marker's model first, then the rest
    assert ui.given["loras"]["Text"] == "/l/a.safetensors"  # the marker's LoRAs fill the field
    assert (answer["model"], answer["loras"]) == (DREAM[1], "/l/ink.safetensors:0.6")  # a label stands for its path
    typed = FakeUI({"source": "bikes", "prompt": "horses", "model": " sd15-random "})
    no_models = script["Dialog"](typed, typed, script["host"].ModelChoices(lambda: 1 / 0).start())
    assert no_models.ask("shot", {})["model"] == "sd15-random"  # a failed listing: the field takes what is typed
    assert typed.widgets["model"]["Items"] == [""]


# ---------------------------------------------------------------------------------------------------------------
# Blender: the Model field's suggestions, the LoRAs field

BLENDER_SCRIPT = (
    CLIENT_SCENARIO_START
    + r"""
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(work, "loras.blend"))
    open(os.path.join(work, "ink.safetensors"), "wb").write(b"lora")
    scene = compat.sequencer_scene()
    editor = scene.sequence_editor_create()
    movie = compat.strips(editor).new_movie("bikes", clip, 2, 10)
    movie.frame_offset_start, movie.frame_offset_end = 37, 209
    listed = jobs.fetch_models(bpy.context)
    summary["listed"] = listed.get(wait=20)
    summary["same_fetch"] = jobs.fetch_models(bpy.context) is listed
    summary["search"] = jobs.model_suggestions("DREAM")
    summary["field_search"] = v2vz_blender.ui.search_models(None, bpy.context, "v_pred")  # the Model field's

    def local(options):
        try:
            return {"args": jobs.local_edit(scene, movie, options, 37, 4, os.path.join(work, "x"), False).args()}
        except strips.ReportError as exc:
            return {"error": str(exc)}

    summary["missing"] = local({"loras": "//ink.safetensors:0.6; //gone.safetensors"})
    options = dict(prompt="people riding horses", source_prompt="people riding bikes",
                   model="/m/dreamshaper_8.safetensors", loras=" //ink.safetensors:0.6 ; ")
    summary["result"] = sorted(v2vz_blender.run_operator(None, bpy.context, movie, options))
    summary["report"] = dict(v2vz_blender.LAST_REPORT)
finally:
    v2vz_blender.unregister()
print("SUMMARY " + json.dumps(summary), flush=True)
"""
)


@pytest.fixture(scope="module", params=list(BLENDERS), ids=[f"blender-{v}" for v in BLENDERS])
def blender(request, tmp_path_factory) -> tuple[dict, Path, Path]:
    work = tmp_path_factory.mktemp("blender-models")
    extension = unpack_extension(work / "extension")
    client = models_client(work / "client")
    args = [str(extension), CLIP, str(work), str(client)]
    summary = run_scenario(bpy_python(request.param), work / "models.py", BLENDER_SCRIPT, args, dict(os.environ))
    return summary, client, work


def test_blender_offers_the_listed_checkpoints_and_passes_model_and_loras(blender):
    summary, client, work = blender
    assert summary["listed"] == [list(DREAM), list(V2)] and summary["same_fetch"], summary
    assert summary["search"] == [[DREAM[1], DREAM[0]]] and summary["field_search"] == [[V2[1], V2[0]]]
    assert summary["missing"]["error"].startswith(f"v2vz: the LoRA {work / 'gone.safetensors'} does not exist")
    assert summary["result"] == ["FINISHED"], summary["report"]
    models, edit = calls(client)
    assert models == ["models", "--json"]
    assert edit[edit.index("--model") : edit.index("--model") + 2] == ["--model", "/m/dreamshaper_8.safetensors"]
    assert edit[edit.index("--lora") :] == ["--lora", f"{work / 'ink.safetensors'}:0.6", "--events", "jsonl"]
