"""How much of a prompt the text encoder reads: CLIP takes 77 tokens (75 of text between the start and end tokens)
and silently drops the rest. Saying which words are dropped, at submit, spares a user a puzzling edit."""

from __future__ import annotations

import functools

from v2vz_engine.tokenizer import build_clip_tokenizer

MAX_TOKENS = 77  # with the start and end tokens
TEXT_TOKENS = MAX_TOKENS - 2


@functools.cache
def _tokenizer():
    return build_clip_tokenizer(max_length=1_000_000)  # counting only: no truncation, no length warning


def prompt_note(name: str, text: str) -> str | None:
    """A one-line note when `text` is longer than the encoder reads, naming the words it drops; else None.

    CLIP splits text at whitespace before its byte-pair merges, so a word's tokens are the same alone or in the
    prompt: the first word whose tokens pass the 75th is the first one dropped.
    """
    words = text.split()
    counts = _tokenizer()(words, add_special_tokens=False).input_ids if words else []
    total = sum(len(tokens) for tokens in counts)
    if total <= TEXT_TOKENS:
        return None
    used, kept = 0, 0
    for tokens in counts:
        if used + len(tokens) > TEXT_TOKENS:
            break
        used += len(tokens)
        kept += 1
    dropped = " ".join(words[kept:])
    shown = dropped if len(dropped) <= 80 else dropped[:60].rsplit(" ", 1)[0] + " ... " + words[-1][:20]
    return (
        f"the {name} is {total + 2} tokens and the model reads {MAX_TOKENS}: the last {len(words) - kept} of its "
        f"{len(words)} words are dropped ({shown!r}); shorten it"
    )
