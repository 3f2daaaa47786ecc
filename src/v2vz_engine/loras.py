"""LoRAs on the resident model: checked and digested when a job is resolved, applied before each of its spans.

A job's LoRA set (EditJob.loras) is applied through diffusers' LoRA loading with peft (kohya/A1111 and diffusers
files alike) to the UNet and the text encoder of the model in hand; the next job's set replaces it without
reloading the base model. peft wraps the attention layers' to_q/to_k/to_v/to_out Linear modules, which our
attention processors call as modules, so cross-frame attention and prompt-to-prompt see the adapted weights.

A LoRA at scale 0 is never loaded (the model is then exactly the base), and the inversion cache key holds the
digests and scales of the LoRAs applied (`applied_key`): the same base and LoRA set hit the cache, any other misses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import struct
import warnings
import weakref
from pathlib import Path
from typing import Any

from v2vz.api.errors import InvalidArgument
from v2vz.api.job import EditJob, Lora

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"  # pickled LoRAs (.pt, .bin, .ckpt) can run code when loaded: refused
MAX_HEADER_BYTES = 100 * 1024 * 1024  # a safetensors header is JSON; a bigger one is not a LoRA
_LORA_MARKS = ("lora_A", "lora_B", "lora_down", "lora_up", ".lora.down", ".lora.up", "lora_linear_layer")
_CHUNK = 1 << 20

AppliedKey = tuple[tuple[str, float], ...]  # (digest, scale) of each LoRA applied, in order


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_names(path: Path) -> list[str]:
    """The tensor names of a safetensors file, read from its header alone; InvalidArgument if it is not one."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 1 < size <= MAX_HEADER_BYTES:
                raise ValueError
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument(f"LoRA {path} is not a safetensors file (truncated, empty or another format)") from None
    return [name for name in header if name != "__metadata__"]


def check_file(path: Path) -> None:
    """One line for a LoRA file that cannot be one: missing, unreadable, a pickle, not safetensors, no LoRA keys."""
    if not path.exists():
        raise InvalidArgument(f"LoRA {path} does not exist")
    if not path.is_file():
        raise InvalidArgument(f"LoRA {path} is not a file")
    if path.suffix.lower() != SUFFIX:
        raise InvalidArgument(
            f"LoRA {path.name}: only {SUFFIX} LoRAs are read (a pickled .pt/.bin/.ckpt can run code when loaded)"
        )
    try:
        names = tensor_names(path)
    except OSError as error:
        raise InvalidArgument(f"LoRA {path} cannot be read: {error.strerror or error}") from None
    if not any(mark in name for name in names for mark in _LORA_MARKS):
        raise InvalidArgument(
            f"LoRA {path.name} has no LoRA weights among its {len(names)} tensors (lora_A/lora_B or "
            "lora_down/lora_up): is it a checkpoint? give that to --model"
        )


def resolve_loras(job: EditJob, absolute: bool = False) -> EditJob:
    """The job with each LoRA checked and its digest set (what the job, the journal and the sidecar keep).

    absolute: the paths must be absolute (the daemon has a working directory of its own)."""
    if not job.loras:
        return job
    resolved = []
    for lora in job.loras:
        path = Path(lora.path).expanduser()
        if absolute and not path.is_absolute():
            raise InvalidArgument(f"LoRA {str(path)!r} must be an absolute path (the daemon has its own cwd)")
        check_file(path)
        resolved.append(dataclasses.replace(lora, digest=file_digest(path)))
    return dataclasses.replace(job, loras=tuple(resolved))


@dataclasses.dataclass
class _Applied:
    key: AppliedKey = ()
    adapters: dict[str, str] = dataclasses.field(default_factory=dict)  # digest -> adapter name, least recent first


_APPLIED: weakref.WeakKeyDictionary[Any, _Applied] = weakref.WeakKeyDictionary()  # per UNet module
RESIDENT = 4  # LoRAs kept loaded beyond the set in use: going back to a recent one loads nothing


def applied_key(pipeline: Any) -> AppliedKey:
    """The (digest, scale) of each LoRA on the pipeline's model now: () for the base model."""
    state = _APPLIED.get(pipeline.model.unet)
    return state.key if state is not None else ()


def apply_loras(pipeline: Any, loras: tuple[Lora, ...]) -> AppliedKey:
    """Make the pipeline's model the base with exactly `loras` (scale 0 ones left out); returns applied_key.

    Nothing happens when the set is the one applied. Otherwise the files not loaded yet are loaded as peft adapters
    and the set's adapters activated with their scales; the others stay loaded but inactive (at most RESIDENT of
    them, the least recently used deleted first), so a set used lately comes back without a load. An empty set
    disables every adapter: peft's layers then call the base layers alone, which gives the base model's outputs bit
    for bit.
    """
    active = tuple(lora for lora in loras if lora.scale != 0)
    wanted: AppliedKey = tuple((_digest_of(lora), float(lora.scale)) for lora in active)
    model = pipeline.model
    state = _APPLIED.setdefault(model.unet, _Applied())
    if wanted == state.key:
        return wanted
    host = _host(model)
    if not wanted:
        host.disable_lora()
    else:
        digests = list(dict.fromkeys(digest for digest, _ in wanted))
        for digest in digests:  # the set's LoRAs become the most recently used
            state.adapters[digest] = state.adapters.pop(digest, "")
        _evict(host, state, keep=len(digests) + RESIDENT)
        try:
            for lora, (digest, _) in zip(active, wanted, strict=True):
                if not state.adapters[digest]:
                    state.adapters[digest] = _load(host, lora, digest)
        except BaseException:  # the model goes back to the base, which is what the key then says
            state.adapters = {digest: name for digest, name in state.adapters.items() if name}
            if state.adapters:
                host.disable_lora()
            state.key = ()
            _forget_prompts(pipeline)
            raise
        scales: dict[str, float] = {}
        for digest, scale in wanted:  # one file given twice: its deltas add up (a LoRA is linear in its scale)
            scales[digest] = scales.get(digest, 0.0) + scale
        host.enable_lora()
        host.set_adapters([state.adapters[digest] for digest in scales], list(scales.values()))
    state.key = wanted
    _forget_prompts(pipeline)
    log.info("LoRA set now %s", ", ".join(f"{d[:12]}:{s:g}" for d, s in wanted) or "none (the base model)")
    return wanted


def unload_loras(pipeline: Any) -> None:
    """Remove every adapter and peft layer: the model's modules are the base model's own again (frees their memory)."""
    state = _APPLIED.pop(pipeline.model.unet, None)
    if state is not None and any(state.adapters.values()):
        _host(pipeline.model).unload_lora_weights()
        _forget_prompts(pipeline)


def _evict(host: Any, state: _Applied, keep: int) -> None:
    """Delete the least recently used adapters beyond `keep` (they free their device memory)."""
    while len(state.adapters) > keep:
        digest = next(iter(state.adapters))
        name = state.adapters.pop(digest)
        if name:
            host.delete_adapters([name])


def _digest_of(lora: Lora) -> str:
    return lora.digest or file_digest(Path(lora.path).expanduser())


def _load(host: Any, lora: Lora, digest: str) -> str:
    """Load one LoRA file as a new adapter; returns the adapter's name.

    The bytes loaded are the bytes hashed: a file changed since the job was resolved is refused, never half-used.
    """
    from safetensors.torch import load as load_safetensors

    path = Path(lora.path).expanduser()
    check_file(path)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise InvalidArgument(f"LoRA {path} changed since the job was submitted: submit the job again")
    name = f"v2vz_{digest[:16]}"
    try:
        with warnings.catch_warnings():  # peft warns that a model with adapters gets another: what a set is
            warnings.simplefilter("ignore", UserWarning)
            host.load_lora_weights(load_safetensors(data), adapter_name=name, low_cpu_mem_usage=True)
    except (ValueError, KeyError, RuntimeError) as error:
        if name in _adapter_names(host):
            host.delete_adapters([name])
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise InvalidArgument(f"LoRA {path.name} does not fit this model: {first}") from None
    return name


def _adapter_names(host: Any) -> set[str]:
    return {name for names in host.get_list_adapters().values() for name in names}


def _forget_prompts(pipeline: Any) -> None:
    """The pipeline's cached prompt embeddings were made by the text encoder before the change."""
    cache = getattr(pipeline, "_prompt_cache", None)
    if cache is not None:
        cache.clear()


def _host(model: Any) -> Any:
    """diffusers' LoRA loader over the loaded model's UNet and text encoder(s), no pipeline built: SD 1.x/2.x's, or
    SDXL's, which also knows the second text encoder (`text_encoder_2`, kohya's `lora_te2_`)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin

    xl = getattr(model, "text_encoder_2", None) is not None
    mixin = StableDiffusionXLLoraLoaderMixin if xl else StableDiffusionLoraLoaderMixin

    class LoraHost(mixin):
        hf_device_map = None

        def __init__(self) -> None:
            self.unet, self.text_encoder = model.unet, model.text_encoder
            if xl:
                self.text_encoder_2 = model.text_encoder_2

        @property
        def components(self) -> dict[str, Any]:
            parts = {"unet": self.unet, "text_encoder": self.text_encoder}
            return parts | ({"text_encoder_2": self.text_encoder_2} if xl else {})

    return LoraHost()
