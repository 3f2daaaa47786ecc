"""Train `toyworld`: a small but real latent diffusion model of the toy world (v2vz.world), in Stable Diffusion's
folder layout, so that edit quality can be measured where the truth is known (benchmarks/bench_quality.py).

    python benchmarks/train_toyworld.py                 # the committed weights: about 80 min on one CPU thread
    python benchmarks/train_toyworld.py --device cuda   # the same recipe on a GPU (a minute or two)
    python benchmarks/train_toyworld.py --quick         # a smoke run (a few minutes), to another folder

Two stages, deterministic (seeds, fixed step counts, one torch thread by default: on a busy 2-core machine one thread
is faster than two):
1. the VAE (AutoencoderKL, 64x64 -> 8x8x4) on whole frames, L1 + MSE and a small KL; its scaling factor from the
   latents' standard deviation, as Stable Diffusion's was chosen;
2. the UNet (UNet2DConditionModel with cross-attention) and a 2-layer CLIP text encoder (the real CLIP tokenizer)
   jointly, epsilon prediction on Stable Diffusion's noise schedule, 10% empty captions so classifier-free guidance
   works, on latents of scenes drawn from the world.
The result is written in fp16 safetensors (unet/, vae/, text_encoder/, scheduler/; the tokenizer is built from the
shipped CLIP merges when the model is first used) with training.json, which records the recipe and its run time.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from v2vz.world.scene import COLOURS, WORLD_SIZE, random_scene, render
from v2vz_engine.models import SCHEDULER_CONFIG as SD_SCHEDULER

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "v2vz_engine" / "data" / "toyworld"

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 64, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=WORLD_SIZE,
)
UNET_CONFIG = dict(
    sample_size=WORLD_SIZE // 8,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64,
    attention_head_dim=4,
    norm_num_groups=8,
)
TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
SCHEDULER_CONFIG = {**SD_SCHEDULER, "prediction_type": "epsilon"}  # Stable Diffusion 1.x's


def batch_of_scenes(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, list[str]]:
    """n pictures of the world in [-1, 1] (n, 3, 64, 64) and their captions."""
    scenes = [random_scene(rng) for _ in range(n)]
    pictures = np.stack([render(scene)[0] for scene in scenes])
    tensor = torch.from_numpy(pictures).permute(0, 3, 1, 2).float() / 127.5 - 1
    return tensor, [scene.caption for scene in scenes]


def cosine_lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def train_vae(args: argparse.Namespace, device: torch.device, log) -> tuple[object, float]:
    """Stage 1: the autoencoder; returns it and its scaling factor (1 / std of the latents)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vae = AutoencoderKL(**VAE_CONFIG).to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.vae_lr)
    start = time.perf_counter()
    for step in range(args.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.vae_steps, args.vae_lr, 100)
        pictures, _ = batch_of_scenes(rng, args.vae_batch)
        pictures = pictures.to(device)
        posterior = vae.encode(pictures).latent_dist
        decoded = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / (4 * (WORLD_SIZE // 8) ** 2)
        loss = F.l1_loss(decoded, pictures) + F.mse_loss(decoded, pictures) + args.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == args.vae_steps - 1:
            log(
                f"vae step {step}/{args.vae_steps} loss {loss.item():.4f} kl {kl.item():.2f} "
                f"{time.perf_counter() - start:.0f} s"
            )
    vae.eval()
    with torch.no_grad():
        pictures, _ = batch_of_scenes(np.random.default_rng(args.seed + 1), 512)
        latents = vae.encode(pictures.to(device)).latent_dist.sample()
    scaling = float(1.0 / latents.std())
    log(
        f"vae done in {time.perf_counter() - start:.0f} s; latent std {latents.std().item():.3f}, scaling {scaling:.4f}"
    )
    log(f"vae check: {colour_kept(vae, device)}")
    return vae, scaling


def colour_kept(vae, device: torch.device, n: int = 256) -> str:
    """How well reconstructions keep the object's colour: the median error of the object's median colour (grey
    levels) and the share of scenes whose reconstructed colour is nearest the true one (a quick look; the gates are
    measured by benchmarks/bench_toyworld_gates.py)."""
    rng = np.random.default_rng(12345)
    scenes = [random_scene(rng) for _ in range(n)]
    rendered = [render(scene) for scene in scenes]
    pictures = torch.from_numpy(np.stack([p for p, _ in rendered])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        decoded = vae.decode(vae.encode(pictures.to(device)).latent_dist.mean).sample.cpu()
    decoded = ((decoded.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    palette = np.array(list(COLOURS.values()), np.float32)
    errors, right = [], 0
    for (_, mask), scene, picture in zip(rendered, scenes, decoded, strict=True):
        colour = np.median(picture[mask], axis=0)
        errors.append(np.abs(colour - np.array(COLOURS[scene.colour])).max())
        right += list(COLOURS)[int(np.argmin(((palette - colour) ** 2).sum(1)))] == scene.colour
    spread = f"median {np.median(errors):.1f}, p95 {np.percentile(errors, 95):.1f}"
    return f"object colour error {spread}; nearest right {right}/{n}"


def encode_dataset(vae, n: int, seed: int, device: torch.device, log) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The stage-2 data: posterior means and stds of n scenes (sampled afresh each time they are used)."""
    rng = np.random.default_rng(seed + 2)
    means, stds, captions = [], [], []
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, n, 256):
            pictures, texts = batch_of_scenes(rng, min(256, n - first))
            posterior = vae.encode(pictures.to(device)).latent_dist
            means.append(posterior.mean.cpu())
            stds.append(posterior.std.cpu())
            captions += texts
    log(f"encoded {n} scenes in {time.perf_counter() - start:.0f} s")
    return torch.cat(means), torch.cat(stds), captions


def train_unet(args, vae, scaling: float, device: torch.device, log) -> tuple[object, object]:
    """Stage 2: the UNet and the text encoder, jointly."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from v2vz_engine.tokenizer import build_clip_tokenizer

    means, stds, captions = encode_dataset(vae, args.scenes, args.seed, device, log)
    tokenizer = build_clip_tokenizer()
    vocabulary = sorted({caption for caption in captions}) + [""]
    token_ids = tokenizer(vocabulary, padding="max_length", max_length=77, return_tensors="pt").input_ids
    row_of = {text: row for row, text in enumerate(vocabulary)}
    caption_rows = torch.tensor([row_of[caption] for caption in captions])
    empty_row = row_of[""]

    torch.manual_seed(args.seed + 3)
    unet = UNet2DConditionModel(**UNET_CONFIG).to(device)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).to(device)
    training_keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    noise_schedule = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k in training_keys})
    alphas = noise_schedule.alphas_cumprod.to(device)
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.unet_lr, weight_decay=0.0)
    averaged = [p.detach().clone() for p in parameters]  # an exponential moving average: what is saved
    generator = torch.Generator().manual_seed(args.seed + 4)
    start = time.perf_counter()
    running = 0.0
    for step in range(args.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.unet_steps, args.unet_lr, 200)
        index = torch.randint(0, len(captions), (args.unet_batch,), generator=generator)
        latents = means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)
        latents = (latents * scaling).to(device)
        rows = caption_rows[index].clone()
        rows[torch.rand(args.unet_batch, generator=generator) < args.empty_share] = empty_row
        noise = torch.randn(latents.shape, generator=generator).to(device)
        t = torch.randint(0, 1000, (args.unet_batch,), generator=generator).to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        text = text_encoder(token_ids.to(device))[0][rows.to(device)]  # the few distinct captions, once a step
        predicted = unet(noisy, t, encoder_hidden_states=text).sample
        loss = F.mse_loss(predicted, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(
                averaged, [p.detach() for p in parameters], 1 - min(args.ema, (step + 1) / (step + 10))
            )
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 200 == 0 or step == args.unet_steps - 1:
            log(f"unet step {step}/{args.unet_steps} loss {running:.4f} {time.perf_counter() - start:.0f} s")
    log(f"unet done in {time.perf_counter() - start:.0f} s")
    with torch.no_grad():
        for parameter, average in zip(parameters, averaged, strict=True):
            parameter.copy_(average)
    return unet.eval(), text_encoder.eval()


def save(out: Path, vae, scaling: float, unet, text_encoder, record: dict) -> None:
    """The model folder in fp16 safetensors, written beside and moved into place (never half a model)."""
    from diffusers import DDIMScheduler

    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    vae.register_to_config(scaling_factor=scaling)
    for part, module in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
        module.to("cpu", torch.float16).save_pretrained(staging / part, safe_serialization=True)
    DDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(staging / "scheduler")
    (staging / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}\n')
    (staging / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-batch", type=int, default=24)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--scenes", type=int, default=20000)
    parser.add_argument("--unet-steps", type=int, default=9000)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--unet-batch", type=int, default=64)
    parser.add_argument("--unet-lr", type=float, default=1e-3)
    parser.add_argument("--empty-share", type=float, default=0.1)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, written to /tmp/toyworld-quick")
    args = parser.parse_args(argv)
    if args.quick:
        args.vae_steps, args.scenes, args.unet_steps = 60, 512, 200
        args.out = Path("/tmp/toyworld-quick") if args.out == DEFAULT_OUT else args.out
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    began = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f} s] {line}", flush=True)

    log(f"training toyworld on {device} ({args.threads} thread(s)) into {args.out}; world colours {list(COLOURS)}")
    vae, scaling = train_vae(args, device, log)
    unet, text_encoder = train_unet(args, vae, scaling, device, log)
    seconds = time.perf_counter() - began
    record = {
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "scaling_factor": scaling,
        "run_time_s": round(seconds),
        "torch": torch.__version__,
    }
    save(args.out, vae, scaling, unet, text_encoder, record)
    log(f"wrote {args.out} in {seconds / 60:.1f} min in all")


if __name__ == "__main__":
    sys.exit(main())
