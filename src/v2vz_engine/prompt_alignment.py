"""Token mappers of prompt-to-prompt: which source-prompt token's cross-attention map each target token takes.

Spatial regularization (method.md section 4) replaces the edit branch's cross-attention maps with the
source branch's. The two prompts tokenize differently, so a mapper says, for every target token position of
the 77-long padded sequence, which source positions it takes its map from:

- same word count -> "replace": words are paired by index; a word that becomes a different number of tokens
  spreads its source weight evenly over the target word's tokens (``replace_mapper``, a 77x77 matrix).
- otherwise -> "refine": the token-id sequences are aligned globally; target tokens equal to an aligned source
  token take its map, inserted tokens keep their own (``refine_mapper``, an index and a blend weight each).

Written from that description; BOS sits at position 0, so a prompt's first word starts at position 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from v2vz.api.errors import InvalidArgument

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EditMode = Literal["replace", "refine"]
RefinePadding = Literal["aligned", "identity"]


def _word_tokens(prompt: str, tokenizer: PreTrainedTokenizerBase, max_len: int) -> list[list[int]]:
    """Token positions of each whitespace-separated word, as the tokenizer truncates them to ``max_len``.

    Each word is tokenized on its own: CLIP's pre-tokenizer never joins text across whitespace, so the words'
    tokens concatenate to the prompt's tokens. Content occupies positions 1 .. max_len - 2 (BOS first, EOS
    always kept last), so tokens past that are cut, as truncation cuts them; a word cut entirely gets [].
    """
    words = prompt.split()
    if not words:
        return []
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    last = max_len - 2  # last content position that survives truncation
    spans: list[list[int]] = []
    pos = 1
    for word_ids in ids:
        spans.append([p for p in range(pos, pos + len(word_ids)) if p <= last])
        pos += len(word_ids)
    return spans


def _max_length(tokenizer: PreTrainedTokenizerBase) -> int:
    """The padded length (77 for CLIP); tokenizers without a real limit report a huge sentinel, so cap it."""
    n = getattr(tokenizer, "model_max_length", 77)
    return n if isinstance(n, int) and 2 <= n <= 100_000 else 77


def word_token_positions(prompt: str, tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """For each space-separated word, the positions it occupies in the padded sequence (BOS at 0).

    A word that splits into several BPE tokens gets several positions; the attention mappers and any
    word-driven mask need these to find a word's maps.
    """
    return _word_tokens(prompt, tokenizer, _max_length(tokenizer))


def edit_mode(source: str, target: str) -> EditMode:
    """Pick the mapper: "replace" for the same word count (words pair by index), else "refine"."""
    return "replace" if len(source.split()) == len(target.split()) else "refine"


def replace_mapper(source: str, target: str, tokenizer: PreTrainedTokenizerBase, max_len: int = 77) -> torch.Tensor:
    """Word-level mapper for prompts of equal word count: float32 (max_len, max_len) with
    ``edit_map[..., t] = sum_s source_map[..., s] * M[s, t]``.

    Paired words with equal token counts map one to one. Otherwise each source token of the word gives
    1/len(target tokens) to every target token of the word, so every source row still sums to 1: the
    attention mass a pixel puts on the source word is conserved, spread evenly over the new word's tokens.
    BOS, EOS and padding map one to one in order, advancing past each word pair, so that EOS still maps onto
    EOS after a word changed length; positions past ``max_len`` on either side are dropped (target columns
    left without a source stay zero).
    """
    if max_len < 2:
        raise InvalidArgument(f"max_len must be at least 2 (BOS and EOS), got {max_len}")
    src_words = _word_tokens(source, tokenizer, max_len)
    tgt_words = _word_tokens(target, tokenizer, max_len)
    if len(src_words) != len(tgt_words):
        raise InvalidArgument(
            f"replace needs prompts with the same number of words: the source has {len(src_words)}, "
            f"the target {len(tgt_words)}; use refine or reword the target prompt"
        )
    mapper = torch.zeros(max_len, max_len, dtype=torch.float32)
    mapper[0, 0] = 1.0  # BOS
    i = j = 1
    for src, tgt in zip(src_words, tgt_words, strict=True):
        if len(src) == len(tgt):
            for s, t in zip(src, tgt, strict=True):
                mapper[s, t] = 1.0
        elif tgt and src:
            mapper[src[0] : src[-1] + 1, tgt[0] : tgt[-1] + 1] = 1.0 / len(tgt)
        i += len(src)
        j += len(tgt)
    # EOS and padding: pair the remaining positions in order until either side runs out (a truncated
    # prompt's EOS sits at the last position).
    i, j = min(i, max_len - 1), min(j, max_len - 1)
    n = max_len - max(i, j)
    if n > 0:
        mapper[torch.arange(i, i + n), torch.arange(j, j + n)] = 1.0
    return mapper


def global_align(
    a: Sequence[int], b: Sequence[int], match: int = 1, mismatch: int = -1, gap: int = 0
) -> list[tuple[int | None, int | None]]:
    """Needleman-Wunsch global alignment of ``a`` and ``b``: the aligned pairs in order, ``(i, j)`` for a
    pair, ``(i, None)`` for a[i] against a gap in b, ``(None, j)`` for b[j] against a gap in a.

    Among equally scored alignments the traceback (from the end) prefers, at each cell, the diagonal step,
    then a gap in a (consume b[j]), then a gap in b (consume a[i]); so the result is deterministic, and read
    forwards, a run of deletions from a comes before a run of insertions from b at the same place.
    """
    n, m = len(a), len(b)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        score[i][0] = i * gap
    for j in range(1, m + 1):
        score[0][j] = j * gap
    for i in range(1, n + 1):
        row, prev = score[i], score[i - 1]
        ai = a[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (match if ai == b[j - 1] else mismatch)
            row[j] = max(diag, row[j - 1] + gap, prev[j] + gap)

    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        here = score[i][j]
        if i > 0 and j > 0 and here == score[i - 1][j - 1] + (match if a[i - 1] == b[j - 1] else mismatch):
            i, j = i - 1, j - 1
            pairs.append((i, j))
        elif j > 0 and here == score[i][j - 1] + gap:
            j -= 1
            pairs.append((None, j))
        else:
            i -= 1
            pairs.append((i, None))
    pairs.reverse()
    return pairs


def refine_mapper(
    source: str,
    target: str,
    tokenizer: PreTrainedTokenizerBase,
    max_len: int = 77,
    padding: RefinePadding = "aligned",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-level mapper for prompts of different word counts: ``(index, alpha)``, a LongTensor and a float32
    tensor of shape (max_len,), with ``edit_map[..., t] = alpha[t] * source_map[..., index[t]]
    + (1 - alpha[t]) * own_map[..., t]``.

    The unpadded token ids (BOS and EOS included) are aligned globally (match +1, mismatch -1, gap 0). A
    target token aligned to an equal source token takes that token's map (alpha 1); inserted or mismatched
    tokens keep their own (alpha 0, index t). Padding after the target's EOS (alpha 1):
    - "aligned" (ours): takes the source's padding in order, clipped to the last position, so the two
      branches' padding maps (much of the attention mass) stay tied to padding;
    - "identity" (the published mapper): position j takes the source's position j, which is a source word or
      its EOS when the target is the shorter prompt.
    """
    if max_len < 2:
        raise InvalidArgument(f"max_len must be at least 2 (BOS and EOS), got {max_len}")
    x = tokenizer(source, truncation=True, max_length=max_len)["input_ids"]
    y = tokenizer(target, truncation=True, max_length=max_len)["input_ids"]
    index = torch.arange(max_len, dtype=torch.long)
    alpha = torch.zeros(max_len, dtype=torch.float32)
    for i, j in global_align(x, y):
        if i is not None and j is not None and x[i] == y[j]:
            index[j] = i
            alpha[j] = 1.0
    pad = torch.arange(len(y), max_len)
    if padding == "aligned":
        index[pad] = (pad - len(y) + len(x)).clamp(max=max_len - 1)
    elif padding != "identity":
        raise InvalidArgument(f"refine padding must be aligned or identity, got {padding!r}")
    alpha[pad] = 1.0
    return index, alpha
