"""How a prompt becomes the UNet's conditioning, for each model family, as one tensor per prompt.

The method's stages (inversion, null-text, both branches, spatial regularization) concatenate, expand and optimize
"the text" of a UNet call as one tensor of rows, one row per frame. Stable Diffusion 1.x/2.x conditions on the text
encoder's last hidden state, (77, D): that is the tensor. SDXL conditions on more: the two text encoders' penultimate
hidden states side by side (77, 768 + 1280), the second encoder's pooled, projected embedding (1280) and the "time
ids" (original size, crop, target size). So an SDXL prompt is packed as 78 rows: the 77 token rows, then the pooled
embedding zero-padded to the row width; `unet_inputs` unpacks it for every UNet call and adds the time ids of the
working size. Packing keeps every stage family-blind, and it decides what null-text optimizes on SDXL: the whole
unconditional input, its token rows and its pooled row, one per step shared by all frames (as for SD 1.x).

The cross-attention (attn2) layers see the 77 token rows only, so prompt-to-prompt's maps and token mappers work as
for SD 1.x: both SDXL tokenizers are CLIP's BPE over one vocabulary (they differ only in the padding token), so a
word occupies the same positions in both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from v2vz_engine.models import LoadedModel

TOKENS = 77


def encode(model: LoadedModel, text: str) -> torch.Tensor:
    """The conditioning of one prompt: (1, 77, D), or SDXL's (1, 78, D) with the pooled embedding as row 77."""
    ids = _ids(model.tokenizer, text, model.device)
    if model.text_encoder_2 is None:
        return model.text_encoder(ids)[0]
    first = model.text_encoder(ids, output_hidden_states=True)
    second = model.text_encoder_2(_ids(model.tokenizer_2, text, model.device), output_hidden_states=True)
    tokens = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    pooled = second.text_embeds
    if not text and model.zeros_for_empty_prompt:  # SDXL's unconditional input is zeros, as its pipeline makes it
        tokens, pooled = torch.zeros_like(tokens), torch.zeros_like(pooled)
    row = torch.zeros(1, 1, tokens.shape[-1], dtype=tokens.dtype, device=tokens.device)
    row[..., : pooled.shape[-1]] = pooled[:, None, :]
    return torch.cat([tokens, row], dim=1)


def unet_inputs(
    model: LoadedModel, text: torch.Tensor, latent_size: tuple[int, int]
) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
    """(encoder_hidden_states, added_cond_kwargs) of a UNet call whose rows are `text` (B, 77 or 78, D)."""
    if model.text_encoder_2 is None:
        return text, None
    pooled = text[:, TOKENS, : model.pooled_width]
    height, width = (side * model.vae_scale_factor for side in latent_size)
    time_ids = torch.tensor([height, width, 0, 0, height, width], dtype=text.dtype, device=text.device)
    return text[:, :TOKENS], {"text_embeds": pooled, "time_ids": time_ids.expand(text.shape[0], -1)}


def _ids(tokenizer, text: str, device: torch.device) -> torch.Tensor:
    return tokenizer(text, padding="max_length", max_length=TOKENS, truncation=True, return_tensors="pt").input_ids.to(
        device
    )
