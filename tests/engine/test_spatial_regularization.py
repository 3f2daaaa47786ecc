"""Spatial regularization: the attn2 processor that injects the source branch's maps (method.md section 4)."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from v2vz_engine.prompt_alignment import refine_mapper, replace_mapper
from v2vz_engine.spatial_regularization import PromptControl, SpatialRegularizationProcessor

FRAMES, HEADS, PIXELS, TEXT_DIM = 2, 2, 6, 12


def layer_and_inputs(seed: int = 0, branches: int = 4):
    torch.manual_seed(seed)
    attn = Attention(query_dim=16, cross_attention_dim=TEXT_DIM, heads=HEADS, dim_head=8).eval()
    x = torch.randn(branches * FRAMES, PIXELS, 16)
    text = torch.randn(branches * FRAMES, 77, TEXT_DIM)
    return attn, x, text


def manual(attn, x, text, control: PromptControl, branches: int = 4) -> torch.Tensor:
    """The method written out: explicit maps, cond-edit maps (the last group) from cond-src's through the mapper."""
    q, k, v = (attn.head_to_batch_dim(f(y)) for f, y in ((attn.to_q, x), (attn.to_k, text), (attn.to_v, text)))
    probs = torch.softmax(q @ k.transpose(1, 2) * attn.scale, dim=-1).view(branches, FRAMES, HEADS, PIXELS, 77)
    src, own = probs[branches - 2], probs[branches - 1]
    if control.mode == "replace":
        edit = torch.einsum("fhps,st->fhpt", src, control.replace_matrix)
    else:
        edit = src[..., control.refine_index] * control.refine_alpha + own * (1 - control.refine_alpha)
    probs = torch.cat([probs[: branches - 1], edit[None]]).view(-1, PIXELS, 77)
    return attn.to_out[0](attn.batch_to_head_dim(probs @ v))


def test_replace_injects_source_maps_in_the_conditional_edit_half_only(tiny_model):
    attn, x, text = layer_and_inputs()
    control = PromptControl.for_prompts(
        "a cat is running on the grass",
        "a dog is running on the snow",
        tiny_model.tokenizer,
        FRAMES,
        steps=10,
        layers=1,
        cross_replace=0.2,
        refine_cross_replace=0.4,
    )
    assert control.mode == "replace" and control.cutoff_step == 2
    processor = SpatialRegularizationProcessor(control)
    with torch.no_grad():
        standard = AttnProcessor2_0()(attn, x, text)
        out = processor(attn, x, text)
        expected = manual(attn, x, text, control)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[: 3 * FRAMES], standard[: 3 * FRAMES], rtol=1e-5, atol=1e-5)  # uncond + cond-src
    assert not torch.allclose(out[3 * FRAMES :], standard[3 * FRAMES :], atol=1e-4)  # cond-edit steered
    # Step 1 still before the cutoff (0.2 of 10 steps = 2), step 2 after it: the edit branch's own maps.
    with torch.no_grad():
        processor(attn, x, text)
        after = processor(attn, x, text)
    assert control.calls == 3 and control.step == 3
    torch.testing.assert_close(after, standard, rtol=1e-5, atol=1e-5)


def test_refine_keeps_inserted_tokens_own_maps(tiny_model):
    attn, x, text = layer_and_inputs(seed=1)
    control = PromptControl.for_prompts(
        "a car on the road",
        "a red car on the road",
        tiny_model.tokenizer,
        FRAMES,
        steps=10,
        layers=1,
        cross_replace=0.8,
        refine_cross_replace=0.4,
    )
    assert control.mode == "refine" and control.cutoff_step == 4
    index, alpha = refine_mapper("a car on the road", "a red car on the road", tiny_model.tokenizer)
    assert torch.equal(control.refine_index, index) and torch.equal(control.refine_alpha, alpha)
    with torch.no_grad():
        out = SpatialRegularizationProcessor(control)(attn, x, text)
    torch.testing.assert_close(out, manual(attn, x, text, control), rtol=1e-5, atol=1e-5)


def test_identical_prompts_leave_attention_unchanged(tiny_model):
    attn, x, text = layer_and_inputs(seed=2)
    prompt = "a jeep car is moving on the road"
    control = PromptControl.for_prompts(prompt, prompt, tiny_model.tokenizer, FRAMES, 10, 1, 0.8, 0.8)
    assert torch.equal(control.replace_matrix, replace_mapper(prompt, prompt, tiny_model.tokenizer))
    # With equal inputs for both conditional halves the identity mapper gives the edit half its own maps.
    text[3 * FRAMES :] = text[2 * FRAMES : 3 * FRAMES]
    x[3 * FRAMES :] = x[2 * FRAMES : 3 * FRAMES]
    with torch.no_grad():
        out = SpatialRegularizationProcessor(control)(attn, x, text)
        standard = AttnProcessor2_0()(attn, x, text)
    torch.testing.assert_close(out, standard, rtol=1e-5, atol=1e-5)


def test_direct_layout_steers_the_last_of_three_groups(tiny_model):
    """Direct inversion's batch [uncond-edit, cond-src, cond-edit]: cond-src's maps go into cond-edit."""
    attn, x, text = layer_and_inputs(seed=3, branches=3)
    control = PromptControl.for_prompts(
        "a cat is running on the grass",
        "a dog is running on the snow",
        tiny_model.tokenizer,
        FRAMES,
        10,
        1,
        0.8,
        0.8,
        branches=3,
    )
    with torch.no_grad():
        out = SpatialRegularizationProcessor(control)(attn, x, text)
        standard = AttnProcessor2_0()(attn, x, text)
    torch.testing.assert_close(out, manual(attn, x, text, control, branches=3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[: 2 * FRAMES], standard[: 2 * FRAMES], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[2 * FRAMES :], standard[2 * FRAMES :], atol=1e-4)


def test_the_published_rules_reach_the_control(tiny_model):
    """0.8 of 9 steps: 8 replaced steps by the published formula, 7 by ours; the refine padding follows its rule."""
    source, target = "a car on the road", "a capybara car on the road"
    tokenizer = tiny_model.tokenizer
    same_words = ("a cat on the road", "a dog on the road")
    assert PromptControl.for_prompts(*same_words, tokenizer, FRAMES, 9, 1, 0.8, 0.4).cutoff_step == 7
    published = PromptControl.for_prompts(
        *same_words, tokenizer, FRAMES, 9, 1, 0.8, 0.4, cutoff="published", refine_padding="identity"
    )
    assert published.cutoff_step == 8 and published.replacing(7) and not published.replacing(8)
    refine = PromptControl.for_prompts(source, target, tokenizer, FRAMES, 9, 1, 0.8, 0.4, cutoff="published")
    assert refine.mode == "refine" and refine.cutoff_step == 4  # int(0.4 * 10)
    identity = PromptControl.for_prompts(source, target, tokenizer, FRAMES, 9, 1, 0.8, 0.4, refine_padding="identity")
    index, _ = refine_mapper(source, target, tokenizer, padding="identity")
    assert torch.equal(identity.refine_index, index) and not torch.equal(refine.refine_index, index)
