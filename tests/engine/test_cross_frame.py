"""Cross-frame attention (attn1) processors and the frame-joint ResNet GroupNorm (method.md section 3)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from v2vz_engine.cross_frame import (
    CrossFrameAttnProcessor,
    FrameContext,
    FrameJointGroupNorm,
    frame_attention,
    install_frame_joint_groupnorm,
    layout_modes,
)

HEADS = 2


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v per head, written out: (tokens_q, C), (tokens_k, C) -> (tokens_q, C)."""
    d = q.shape[-1] // HEADS
    qh, kh, vh = (x.view(x.shape[0], HEADS, d).transpose(0, 1) for x in (q, k, v))
    probs = torch.softmax(qh @ kh.transpose(1, 2) / d**0.5, dim=-1)
    return (probs @ vh).transpose(0, 1).reshape(q.shape[0], -1)


def qkv(clips: int, frames: int, tokens: int = 6, channels: int = 8, seed: int = 0):
    torch.manual_seed(seed)
    return [torch.randn(clips * frames, tokens, channels, dtype=torch.float64) for _ in range(3)]


def test_dense_equals_each_frame_against_all_frames_keys():
    clips, frames = 2, 3
    q, k, v = qkv(clips, frames)
    out = frame_attention(q, k, v, frames, HEADS, "dense")
    for c in range(clips):
        keys = torch.cat([k[c * frames + j] for j in range(frames)])  # all frames' tokens of clip c
        values = torch.cat([v[c * frames + j] for j in range(frames)])
        for i in range(frames):
            expected = explicit_attention(q[c * frames + i], keys, values)
            torch.testing.assert_close(out[c * frames + i], expected)


def test_dense_equals_the_kv_repeat_reference():
    q, k, v = qkv(2, 4, seed=1)
    torch.testing.assert_close(
        frame_attention(q, k, v, 4, HEADS, "dense"), frame_attention(q, k, v, 4, HEADS, "dense_kv_repeat")
    )


def test_one_frame_equals_standard_attention():
    q, k, v = qkv(3, 1, seed=2)
    for mode in ("dense", "sparse_causal", "per_frame"):
        out = frame_attention(q, k, v, 1, HEADS, mode)
        for b in range(3):
            torch.testing.assert_close(out[b], explicit_attention(q[b], k[b], v[b]))


def test_sparse_causal_uses_first_and_previous_frame():
    frames = 4
    q, k, v = qkv(1, frames, seed=3)
    out = frame_attention(q, k, v, frames, HEADS, "sparse_causal")
    for i in range(frames):
        prev = max(i - 1, 0)
        expected = explicit_attention(q[i], torch.cat([k[0], k[prev]]), torch.cat([v[0], v[prev]]))
        torch.testing.assert_close(out[i], expected)


@pytest.mark.parametrize("mode", ["dense", "sparse_causal", "per_frame", "dense_kv_repeat"])
def test_batch_elements_never_mix(mode):
    clips, frames = 3, 4
    q, k, v = qkv(clips, frames, seed=4)
    out = frame_attention(q, k, v, frames, HEADS, mode)
    k2, v2 = k.clone(), v.clone()
    k2[frames : 2 * frames] += 5.0  # change clip 1 only
    v2[frames : 2 * frames] -= 3.0
    out2 = frame_attention(q, k2, v2, frames, HEADS, mode)
    torch.testing.assert_close(out2[:frames], out[:frames])  # clip 0 untouched
    torch.testing.assert_close(out2[2 * frames :], out[2 * frames :])  # clip 2 untouched
    assert not torch.allclose(out2[frames : 2 * frames], out[frames : 2 * frames])


def test_dense_attends_across_frames_but_per_frame_does_not():
    frames = 3
    q, k, v = qkv(1, frames, seed=5)
    k2, v2 = k.clone(), v.clone()
    v2[2] += 1.0  # change the last frame's values
    dense = frame_attention(q, k, v, frames, HEADS, "dense"), frame_attention(q, k2, v2, frames, HEADS, "dense")
    single = (
        frame_attention(q, k, v, frames, HEADS, "per_frame"),
        frame_attention(q, k2, v2, frames, HEADS, "per_frame"),
    )
    assert not torch.allclose(dense[0][0], dense[1][0])  # frame 0 sees frame 2
    torch.testing.assert_close(single[0][0], single[1][0])  # frame 0 does not


def test_processor_on_a_diffusers_attention_layer():
    torch.manual_seed(6)
    attn = Attention(query_dim=16, heads=HEADS, dim_head=8).eval()
    context = FrameContext(frames=3, cross_frame=True)
    x = torch.randn(2 * 3, 5, 16)
    with torch.no_grad():
        reference = AttnProcessor2_0()(attn, x)
        per_frame = CrossFrameAttnProcessor("dense", FrameContext(frames=3, cross_frame=False))(attn, x)
        dense = CrossFrameAttnProcessor("dense", context)(attn, x)
        expected = attn.to_out[0](frame_attention(attn.to_q(x), attn.to_k(x), attn.to_v(x), 3, HEADS, "dense"))
    torch.testing.assert_close(per_frame, reference)  # cross_frame=False: plain self-attention
    torch.testing.assert_close(dense, expected)
    assert not torch.allclose(dense, reference)


def test_layouts_on_the_unet(tiny_model):
    published = layout_modes(tiny_model.unet, "published")
    assert len(published) == 16
    dense = sorted(name for name, mode in published.items() if mode == "dense")
    assert dense == [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor",
        "mid_block.attentions.0.transformer_blocks.0.attn1.processor",
        "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor",
    ]
    assert sum(mode == "sparse_causal" for mode in published.values()) == 13
    assert set(layout_modes(tiny_model.unet, "dense").values()) == {"dense"}
    with pytest.raises(ValueError, match="unknown attention layout"):
        layout_modes(tiny_model.unet, "diagonal")


def test_frame_joint_groupnorm_uses_statistics_over_all_frames():
    torch.manual_seed(7)
    source = nn.GroupNorm(2, 4)
    nn.init.normal_(source.weight)
    nn.init.normal_(source.bias)
    context = FrameContext(frames=3, joint_groupnorm=True)
    norm = FrameJointGroupNorm(source, context)
    x = torch.randn(2 * 3, 4, 5, 5, dtype=torch.float64)
    norm, source = norm.double(), source.double()
    out = norm(x)
    for clip in range(2):
        video = x[clip * 3 : clip * 3 + 3]  # (F, C, H, W)
        for g in range(2):
            chunk = video[:, 2 * g : 2 * g + 2]
            mean, var = chunk.mean(), chunk.var(unbiased=False)
            normed = (chunk - mean) / torch.sqrt(var + source.eps)
            expected = (
                normed * source.weight[2 * g : 2 * g + 2, None, None] + source.bias[2 * g : 2 * g + 2, None, None]
            )
            torch.testing.assert_close(out[clip * 3 : clip * 3 + 3, 2 * g : 2 * g + 2], expected)
    context.joint_groupnorm = False
    torch.testing.assert_close(norm(x), source(x))  # off: plain per-frame GroupNorm
    context.joint_groupnorm, context.frames = True, 1
    torch.testing.assert_close(norm(x), source(x))  # one frame: identical


def test_installing_joint_groupnorm_keeps_weights_and_state_dict():
    from diffusers import UNet2DConditionModel

    from v2vz_engine.models import TINY

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY.configs()["unet"]).eval()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    context = FrameContext(frames=2, joint_groupnorm=False)
    replaced = install_frame_joint_groupnorm(unet, context)
    resnets = sum(1 for m in unet.modules() if type(m).__name__ == "ResnetBlock2D")
    assert replaced == 2 * resnets + 1  # norm1 and norm2 of every ResNet, plus conv_norm_out
    after = unet.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    # Transformer GroupNorms stay per frame.
    assert all(type(m.norm) is nn.GroupNorm for m in unet.modules() if type(m).__name__ == "Transformer2DModel")


def test_per_frame_processors_reproduce_the_stock_unet(tiny_model):
    """Installed on the real UNet, per-frame attn1 + past-cutoff attn2 give exactly diffusers' own forward."""
    from v2vz_engine.spatial_regularization import PromptControl, SpatialRegularizationProcessor

    unet = tiny_model.unet
    original = dict(unet.attn_processors)
    # a pipeline made on this session's model earlier has put its frame-joint norms in: per frame here, like stock
    contexts = {id(m.context): m.context for m in unet.modules() if isinstance(m, FrameJointGroupNorm)}.values()
    joint = [(context, context.joint_groupnorm) for context in contexts]
    torch.manual_seed(8)
    z, text = torch.randn(4, 4, 8, 8), torch.randn(4, 77, 32)
    try:
        for context, _ in joint:
            context.joint_groupnorm = False
        unet.set_attn_processor(AttnProcessor2_0())
        with torch.no_grad():
            stock = unet(z, 500, encoder_hidden_states=text).sample
        context = FrameContext(frames=1, cross_frame=False)
        control = PromptControl(mode="replace", frames=1, cutoff_step=0, layers=16)
        unet.set_attn_processor(
            {
                name: CrossFrameAttnProcessor("dense", context)
                if name.endswith("attn1.processor")
                else SpatialRegularizationProcessor(control)
                for name in unet.attn_processors
            }
        )
        with torch.no_grad():
            ours = unet(z, 500, encoder_hidden_states=text).sample
    finally:
        unet.set_attn_processor(original)
        for context, was in joint:
            context.joint_groupnorm = was
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-6)
    assert control.calls == 16  # one call per attn2 layer: the step counter counts UNet calls
