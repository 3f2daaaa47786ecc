"""Local edits, part by part (local_edit.py, self_replace.py): word maps -> shares -> a region, the blend, the
composite, and the self-attention swap; and the blend inside the samplers on `tiny` (exact where it must be)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from v2vz.api.job import EditOptions
from v2vz_engine.local_edit import (
    LocalEdit,
    WordMaps,
    blend,
    composite,
    empty_frames,
    local_positions,
    smooth_in_time,
    word_start,
)
from v2vz_engine.pipeline import Region
from v2vz_engine.self_replace import SelfReplace
from v2vz_engine.spatial_regularization import DIRECT_BRANCHES, PromptControl, SpatialRegularizationProcessor

SOURCE, TARGET = "a rabbit on grass", "a tiger on grass"
STEPS = 6


def blob_maps(
    frames: int, height: int, width: int, centres: list[tuple[int, int]], token: int, heads: int = 2
) -> torch.Tensor:
    """Attention probabilities (groups=3, frames, heads, pixels, 77) whose `token` column is a blob at each frame's
    centre (the rest uniform): what an attn2 layer would see of a word that covers that place."""
    probs = torch.full((3, frames, heads, height * width, 77), 1 / 77)
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    for frame, (cy, cx) in enumerate(centres):
        blob = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 2.0).flatten()
        probs[:, frame, :, :, token] = blob
    return probs


def test_word_maps_follow_the_words_maps_across_layer_sizes():
    maps = WordMaps(source_positions=(2,), target_positions=(2,), latent_size=(8, 8), frames=2)
    maps.add(blob_maps(2, 8, 8, [(2, 2), (5, 6)], token=2), source_present=True)
    maps.add(blob_maps(2, 4, 4, [(1, 1), (2, 3)], token=2), source_present=True)  # a coarser layer, upsampled
    shares = maps.shares()
    assert shares.shape == (2, 8, 8)
    assert shares.amax(dim=(1, 2)).tolist() == [1.0, 1.0]  # each frame is a share of its own maximum
    for frame, (cy, cx) in enumerate([(2, 2), (5, 6)]):
        peak = divmod(int(shares[frame].argmax()), 8)
        assert abs(peak[0] - cy) <= 1 and abs(peak[1] - cx) <= 1
        assert shares[frame, (cy + 4) % 8, (cx + 4) % 8] < 0.3  # far from the blob: outside


def test_a_word_past_the_tokens_read_has_no_positions_and_no_region(tiny_model):
    long_prompt = " ".join(["word"] * 80) + " car"
    assert local_positions(long_prompt, ("car",), tiny_model.tokenizer) == ()
    assert local_positions("a red Car, fast", ("car",), tiny_model.tokenizer) != ()
    maps = WordMaps((), (), (4, 4), 1)
    maps.add(blob_maps(1, 4, 4, [(1, 1)], token=5), source_present=True)
    edit = LocalEdit(STEPS, (0,), maps, threshold=0.3)
    assert edit.weight(STEPS - 1).sum() == 0
    assert empty_frames(edit.final_region.numpy()) == [0]


def test_the_processor_hands_each_branchs_maps_to_the_word_maps(tiny_model):
    """A synthetic map fed through the attn2 processor gives the expected region: source words from the cond-source
    group, target words from the cond-edit group."""
    unet = tiny_model.unet
    name = next(n for n in unet.attn_processors if n.endswith("attn2.processor"))
    attn = unet.get_submodule(name.removesuffix(".processor"))
    control = PromptControl.for_prompts(
        SOURCE, TARGET, tiny_model.tokenizer, 2, STEPS, 1, 0.5, 0.5, branches=DIRECT_BRANCHES
    )
    control.maps = WordMaps((2,), (), (4, 4), 2)  # "rabbit", source words only
    heads = attn.heads
    synthetic = blob_maps(2, 4, 4, [(0, 0), (3, 3)], token=2, heads=heads)  # the cond-source group is [1]
    synthetic[2, :, :, :, 2] = blob_maps(2, 4, 4, [(3, 0), (0, 3)], token=2, heads=heads)[2, :, :, :, 2]  # cond-edit
    attn.get_attention_scores = lambda q, k, mask=None: synthetic.flatten(0, 2)  # noqa: ARG005
    try:
        hidden = torch.zeros(3 * 2, 16, attn.to_q.in_features)
        text = torch.zeros(3 * 2, 77, attn.to_k.in_features)
        SpatialRegularizationProcessor(control)(attn, hidden, text)
    finally:
        del attn.get_attention_scores
    shares = control.maps.shares()
    assert shares[0, 0, 0] == 1 and shares[1, 3, 3] == 1  # the source branch's blobs
    assert shares[0, 3, 3] < 0.3 and shares[1, 0, 0] < 0.3
    assert shares[0, 3, 0] < 0.3 and shares[1, 0, 3] < 0.3  # the edit branch's maps of a source word: not counted


def test_smoothing_in_time_sees_neighbours_by_clip_position_and_anchors():
    shares = torch.tensor([[1.0], [0.0], [0.0], [0.0]]).view(4, 1, 1)
    smoothed = smooth_in_time(shares, (10, 11, 12, 20))  # 20 has no neighbour: itself
    assert smoothed.flatten().tolist() == [0.75, 0.25, 0.0, 0.0]
    # A window's first frame sees the anchor before it (recorded in its own window): no seam.
    edit = LocalEdit(
        STEPS,
        (4, 5),
        WordMaps((), (3,), (1, 1), 3),
        threshold=0.3,
        anchor_indices=(3,),
        anchor_shares=torch.ones(STEPS, 1, 1, 1),
    )
    edit.maps.sums = torch.tensor([0.0, 0.0, 0.0]).view(1, 3, 1, 1).repeat(2, 1, 1, 1)  # the window's own: nothing
    edit.maps.sums[1, 0] = 5.0  # the anchor's maps in this call are ignored: its recorded shares count
    region = edit._word_region(word_start(STEPS))
    assert region.flatten().tolist() == [0.0, 0.0]  # 0.25 * 1 < 0.3
    edit.threshold = 0.2
    assert edit._word_region(word_start(STEPS)).flatten().tolist() == [1.0, 0.0]


def test_blend_and_composite_are_exact_at_zero_and_one():
    edit, source = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    weight = torch.zeros(2, 1, 3, 3)
    weight[..., 1:] = 1
    mixed = blend(edit, source, weight)
    assert torch.equal(mixed[..., :1], source[..., :1]) and torch.equal(mixed[..., 1:], edit[..., 1:])
    assert blend(edit, source, None) is edit
    edited = np.full((1, 2, 2, 3), 200, np.uint8)
    shot = np.full((1, 2, 2, 3), 10, np.uint8)
    out = composite(edited, shot, np.array([[[0.0, 1.0], [0.5, 0.25]]], np.float32))
    assert out[0, :, :, 0].tolist() == [[10, 200], [105, 58]]


def test_self_replace_swaps_the_cond_edit_groups_queries_and_keys_only_in_coarse_layers_and_early_steps(tiny_model):
    control = PromptControl.for_prompts(
        SOURCE, TARGET, tiny_model.tokenizer, 2, STEPS, 1, 0.0, 0.0, branches=DIRECT_BRANCHES
    )
    rule = SelfReplace.for_edit(control, 0.5, STEPS, (8, 8), "nearest")
    assert control.self_cutoff_step == 3 and control.source_needed(2) and not control.source_needed(3)
    q, k = torch.randn(3 * 2, 4, 8), torch.randn(3 * 2, 4, 8)  # 4 tokens: a coarse layer of an 8x8 latent
    swapped_q, swapped_k = rule.swap(q, k)
    assert torch.equal(swapped_q[4:], q[2:4]) and torch.equal(swapped_k[4:], k[2:4])
    assert torch.equal(swapped_q[:4], q[:4])
    fine = torch.randn(3 * 2, 64, 8)
    assert rule.swap(fine, fine)[0] is fine  # a latent-sized layer keeps its own
    control.calls = 3  # step 3: past the cutoff
    assert rule.swap(q, k)[0] is q
    assert SelfReplace.for_edit(control, 0.0, STEPS, (8, 8), "nearest") is None
    assert EditOptions.preset("published").self_replace == 0.0


@pytest.mark.parametrize("inversion", ["direct", "null-text", "negative-prompt"])
def test_a_matte_keeps_the_source_branch_outside_and_all_ones_is_the_unmasked_edit(pipeline, clip_frames, inversion):
    """Where the matte is 0 the edit's latents are the source branch's exactly: the clip's own z_0 with direct
    inversion, the reconstruction branch otherwise; an all-ones matte is the edit without one, bit for bit."""
    options = EditOptions(steps=4, inversion=inversion, null_inner_steps=1)
    z0 = pipeline.encode_frames(clip_frames, options)
    inversion_result, _ = pipeline.invert(z0, SOURCE, options)
    matte = np.zeros((4, 64, 64), np.float32)
    matte[:, :, 32:] = 1
    indices = (0, 1, 2, 3)
    local = pipeline.sample(inversion_result, SOURCE, TARGET, options, keep_source=True, region=Region(indices, matte))
    source, edit = local.latents[:4], local.latents[4:]
    assert torch.equal(edit[..., :3], source[..., :3])  # latent columns 0..2 see only the matte's zeros
    if inversion == "direct":
        assert torch.equal(edit[..., :3], z0[..., :3])
    plain = pipeline.sample(inversion_result, SOURCE, TARGET, options)
    assert not torch.equal(edit[..., 5:], source[..., 5:])  # inside, the edit is the edit
    ones = pipeline.sample(inversion_result, SOURCE, TARGET, options, region=Region(indices, np.ones_like(matte)))
    assert torch.equal(ones.latents, plain.latents)
