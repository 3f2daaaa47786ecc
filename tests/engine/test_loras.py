"""LoRAs on the resident model (issue 26, "LoRAs"): both file formats, scale 0 exactness, the inversion cache key,
and the one-line refusals of files that are not LoRAs.

The LoRA files are made here for the built-in `tiny` model, from the documented key names: diffusers/peft
(`unet.<module>.lora_A.weight`) and kohya/A1111 (`lora_unet_<module_with_underscores>.lora_down.weight`, `.alpha`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditJob, EditOptions, Lora
from v2vz_engine.inversion import Inversion
from v2vz_engine.loras import applied_key, apply_loras, file_digest, resolve_loras, unload_loras
from v2vz_engine.spans import SpanTask, edit_span

OPTIONS = EditOptions(steps=3, size=32, inversion="direct")
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def lora_weights(model, kind: str, seed: int = 0, rank: int = 4) -> dict[str, torch.Tensor]:
    """A LoRA of every attention projection of the UNet and the text encoder, in `kind`'s key layout."""
    generator = torch.Generator().manual_seed(seed)
    weights: dict[str, torch.Tensor] = {}
    for part, module, targets in (("unet", model.unet, UNET_TARGETS), ("te", model.text_encoder, TEXT_TARGETS)):
        for name, layer in module.named_modules():
            layer = getattr(layer, "base_layer", layer)  # a projection peft wraps already (an adapter resident)
            if not isinstance(layer, torch.nn.Linear) or not name.endswith(targets) or ".base_layer" in name:
                continue
            down = torch.randn(rank, layer.in_features, generator=generator) * 0.5
            up = torch.randn(layer.out_features, rank, generator=generator) * 0.5
            if kind == "diffusers":
                prefix = "unet" if part == "unet" else "text_encoder"
                weights[f"{prefix}.{name}.lora_A.weight"] = down
                weights[f"{prefix}.{name}.lora_B.weight"] = up
            else:
                text_name = name if part == "unet" else f"text_model.{name}"
                key = f"lora_{part}_{text_name.replace('.', '_')}"
                weights[f"{key}.lora_down.weight"] = down
                weights[f"{key}.lora_up.weight"] = up
                weights[f"{key}.alpha"] = torch.tensor(float(rank))
    return weights


def write_lora(path: Path, model, kind: str = "diffusers", seed: int = 0) -> Path:
    save_file(lora_weights(model, kind, seed), str(path))
    return path


def moving_ball(count: int = 2, size: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        ball = (x - 8 - 6 * i) ** 2 + (y - size / 2) ** 2 <= 25
        frames[i, ..., 0] = np.where(ball, 220, 40 + x * 4)
        frames[i, ..., 1] = np.where(ball, 40, 120 + y * 2)
        frames[i, ..., 2] = 60
    return frames


def task(tmp_path: Path, *loras: Lora) -> SpanTask:
    job = EditJob(
        source=tmp_path / "clip.mp4",
        prompt="a blue ball on white snow",
        source_prompt="a red ball on green grass",
        frames=2,
        options=OPTIONS,
        out_frames_dir=tmp_path / "out",
        loras=loras,
    )
    return SpanTask(job, 0, (0, 1), moving_ball(), trajectory_positions=(0, 1))


class KeyedCache:
    """An InversionStore in memory that remembers the keys it was asked for."""

    def __init__(self) -> None:
        self.entries: dict[str, Inversion] = {}
        self.asked: list[str] = []

    def get(self, key: str) -> Inversion | None:
        self.asked.append(key)
        return self.entries.get(key)

    def put(self, key: str, inversion: Inversion) -> None:
        self.entries[key] = inversion


@pytest.fixture
def base(pipeline):
    """The session's tiny pipeline, given back as the base model whatever a test applied."""
    yield pipeline
    unload_loras(pipeline)  # no peft layer left for the session's other tests


@pytest.fixture(scope="module")
def plain(pipeline, tmp_path_factory):
    """The span edited by the base model: what every LoRA-less or scale-0 edit must equal."""
    apply_loras(pipeline, ())
    return edit_span(pipeline, task(tmp_path_factory.mktemp("plain")))


@pytest.mark.parametrize("kind", ["diffusers", "kohya"])
def test_a_lora_of_either_format_changes_the_edit(base, plain, tmp_path, kind):
    path = write_lora(tmp_path / f"style-{kind}.safetensors", base.model, kind)
    job = resolve_loras(task(tmp_path, Lora(path)).job)
    edited = edit_span(base, dataclasses.replace(task(tmp_path), job=job))
    attn1 = base.model.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert type(attn1.to_q).__module__.startswith("peft"), "peft wraps the projections our processors call"
    assert applied_key(base) == ((file_digest(path), 1.0),)
    assert not np.array_equal(edited.frames, plain.frames)
    unload_loras(base)
    assert isinstance(attn1.to_q, torch.nn.Linear) and applied_key(base) == ()
    assert not torch.equal(edited.trajectories, plain.trajectories)


def test_a_lora_at_scale_0_gives_exactly_the_edit_without_it(base, plain, tmp_path):
    path = write_lora(tmp_path / "style.safetensors", base.model)
    edit_span(base, task(tmp_path, Lora(path, 0.7)))  # a job with a LoRA first: the next one must be the base
    result = edit_span(base, task(tmp_path, Lora(path, 0.0)))
    assert applied_key(base) == ()
    assert np.array_equal(result.frames, plain.frames)
    assert torch.equal(result.trajectories, plain.trajectories)


def test_the_text_encoder_part_reaches_the_prompt_embeddings(base, tmp_path):
    path = write_lora(tmp_path / "style.safetensors", base.model, "kohya")
    before = base.encode_prompt("a red ball").clone()
    apply_loras(base, (Lora(path, 1.0),))
    assert not torch.equal(base.encode_prompt("a red ball"), before), "the prompt cache was cleared"
    apply_loras(base, ())
    assert torch.equal(base.encode_prompt("a red ball"), before)


class KeyOnly(KeyedCache):
    """Stops the span once its key is asked for: the key of each LoRA set without editing."""

    def get(self, key: str) -> Inversion | None:
        super().get(key)
        raise LookupError(key)


def test_the_inversion_cache_hits_with_the_same_lora_set_and_misses_with_any_other(base, tmp_path):
    first = write_lora(tmp_path / "first.safetensors", base.model, seed=1)
    second = write_lora(tmp_path / "second.safetensors", base.model, seed=2)
    cache = KeyedCache()
    assert not edit_span(base, task(tmp_path, Lora(first, 1.0)), cache=cache).cached
    assert edit_span(base, task(tmp_path, Lora(first, 1.0)), cache=cache).cached  # same base and set: reused

    def key(*loras: Lora) -> str:
        with pytest.raises(LookupError) as stopped:
            edit_span(base, task(tmp_path, *loras), cache=KeyOnly())
        return stopped.value.args[0]

    same = key(Lora(first, 1.0))
    assert same == cache.asked[0]
    others = [
        key(Lora(first, 0.5)),  # another scale
        key(Lora(second, 1.0)),  # another file
        key(),  # the base model alone
        key(Lora(first, 1.0), Lora(second, 1.0)),  # a set of two
        key(Lora(second, 1.0), Lora(first, 1.0)),  # the same two in another order (peft sums them: still a miss)
    ]
    assert len({same, *others}) == 6
    assert key(Lora(first, 0.0)) == key()  # scale 0 is the base model: its inversion is the base's


def test_the_job_records_each_loras_digest_when_resolved(base, tmp_path):
    path = write_lora(tmp_path / "style.safetensors", base.model)
    job = resolve_loras(task(tmp_path, Lora(path, 0.8)).job)
    assert job.loras == (Lora(path, 0.8, file_digest(path)),)
    assert EditJob.from_dict(job.to_dict()).loras == job.loras


def test_a_lora_file_changed_after_submit_is_refused_when_applied(base, tmp_path):
    path = write_lora(tmp_path / "style.safetensors", base.model, seed=6)  # a LoRA no other test loaded
    job = resolve_loras(task(tmp_path, Lora(path)).job)
    write_lora(path, base.model, seed=5)
    with pytest.raises(InvalidArgument, match="changed since the job was submitted"):
        apply_loras(base, job.loras)


def refused(path: Path) -> str:
    with pytest.raises(InvalidArgument) as caught:
        resolve_loras(EditJob(path.parent / "clip.mp4", "b", "a", out_frames_dir=path.parent, loras=(Lora(path),)))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_files_that_are_not_loras_are_refused_in_one_line(tmp_path, tiny_model):
    assert "does not exist" in refused(tmp_path / "missing.safetensors")
    (tmp_path / "folder.safetensors").mkdir()
    assert "is not a file" in refused(tmp_path / "folder.safetensors")
    (tmp_path / "style.pt").write_bytes(b"\x80\x04pickle")
    assert "only .safetensors" in refused(tmp_path / "style.pt")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    assert "not a safetensors file" in refused(tmp_path / "empty.safetensors")
    (tmp_path / "noise.safetensors").write_bytes(b"\xff" * 64)
    assert "not a safetensors file" in refused(tmp_path / "noise.safetensors")
    save_file({"conv_in.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    assert "no LoRA weights" in refused(tmp_path / "model.safetensors")


def test_a_lora_of_another_model_is_refused_when_applied(base, tmp_path):
    path = tmp_path / "other.safetensors"
    weights = {
        "unet.nowhere.to_q.lora_A.weight": torch.zeros(4, 7),
        "unet.nowhere.to_q.lora_B.weight": torch.zeros(7, 4),
    }
    save_file(weights, str(path))
    with pytest.raises(InvalidArgument, match="does not fit this model"):
        apply_loras(base, (Lora(path),))
    assert applied_key(base) == ()
