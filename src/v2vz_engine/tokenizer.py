"""The real CLIP tokenizer, built in memory from the shipped BPE merges file.

Why: the engine must tokenize prompts exactly as Stable Diffusion's text encoder expects (the token positions
drive the prompt-to-prompt attention mappers), without downloading anything. CLIP's own tokenizer derives its
whole vocabulary from the merges file, so shipping that one file (MIT, from open_clip) is enough.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import transformers

CLIP_MERGES = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"

# CLIP keeps the first 49152 - 256 - 2 merges of the file: 256 byte symbols and 2 special tokens fill the rest
# of its 49152 + 256 = 49408-entry vocabulary.
_N_MERGES = 49152 - 256 - 2
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable character table, in the order that fixes ids 0..255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _read_merges(merges_path: Path) -> list[tuple[str, str]]:
    """The merges CLIP uses: skip the header line, keep the next _N_MERGES lines as (left, right) pairs."""
    with gzip.open(merges_path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : _N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != _N_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{merges_path} is not a CLIP BPE merges file (expected {_N_MERGES} merge pairs)")
    return merges  # type: ignore[return-value]


def build_clip_tokenizer(merges_path: Path = CLIP_MERGES, max_length: int = 77) -> transformers.CLIPTokenizer:
    """Build CLIP's tokenizer exactly as CLIP does: byte symbols, their end-of-word forms, one token per
    merge, then the two special tokens (49,408 entries; BOS 49406, EOS 49407, which also pads)."""
    merges = _read_merges(Path(merges_path))
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
