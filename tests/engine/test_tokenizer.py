"""The in-memory CLIP tokenizer matches CLIP on the real vocabulary, and survives save/reload."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from v2vz_engine.tokenizer import CLIP_MERGES, build_clip_tokenizer, bytes_to_unicode

CLIP_VOCAB_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clip-vocab"
SHARED_MERGES = CLIP_VOCAB_DIR / "bpe_simple_vocab_16e6.txt.gz"

# Words that CLIP splits into several tokens (found by tokenizing candidates with the real vocabulary).
MULTI_TOKEN = {"zebras": 2, "snowmobile": 2, "capybara": 3, "narwhal": 3, "axolotl": 4, "lamborghinis": 3}


@pytest.fixture(scope="module")
def tok() -> CLIPTokenizer:
    if not SHARED_MERGES.is_file():
        pytest.skip(f"real CLIP vocabulary not found at {SHARED_MERGES}")
    return build_clip_tokenizer(SHARED_MERGES)


def _reference_bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's own BPE on one pre-token: byte symbols, the last one with </w>, then repeatedly merge every
    occurrence of the lowest-ranked adjacent pair until no known pair is left."""
    byte_enc = bytes_to_unicode()
    parts = [byte_enc[b] for b in word.encode("utf-8")]
    parts[-1] += "</w>"
    while len(parts) > 1:
        pairs = {(parts[k], parts[k + 1]) for k in range(len(parts) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged: list[str] = []
        k = 0
        while k < len(parts):
            if k + 1 < len(parts) and (parts[k], parts[k + 1]) == best:
                merged.append(parts[k] + parts[k + 1])
                k += 2
            else:
                merged.append(parts[k])
                k += 1
        parts = merged
    return parts


def test_known_ids(tok: CLIPTokenizer) -> None:
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_vocab_size_and_special_tokens(tok: CLIPTokenizer) -> None:
    assert len(tok) == 49408
    assert tok.bos_token_id == 49406
    assert tok.eos_token_id == 49407
    assert tok.pad_token_id == 49407
    # 188 printable bytes keep their character, the other 68 (byte 0 first) move to U+0100.., then the </w>
    # forms, then one token per merge in rank order (the file's first merge is "i n", the last used
    # "jeky ll</w>").
    ids = [0, 187, 188, 255, 256, 511, 512, 49405]
    assert tok.convert_ids_to_tokens(ids) == ["!", "ÿ", "Ā", "Ń", "!</w>", "Ń</w>", "in", "jekyll</w>"]


def test_padding_to_max_length(tok: CLIPTokenizer) -> None:
    assert tok.model_max_length == 77
    ids = tok("a photo of a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77
    assert ids[:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert set(ids[7:]) == {49407}
    long = tok(" ".join(["cat"] * 100), padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long) == 77 and long[0] == 49406 and long[-1] == 49407 and long[75] == 2368


def test_max_length_parameter() -> None:
    if not SHARED_MERGES.is_file():
        pytest.skip("real CLIP vocabulary not found")
    assert build_clip_tokenizer(SHARED_MERGES, max_length=32).model_max_length == 32


def test_multi_token_words_match_clip_bpe(tok: CLIPTokenizer) -> None:
    with gzip.open(SHARED_MERGES, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    ranks = {tuple(line.split()): r for r, line in enumerate(lines)}
    for word, count in {**MULTI_TOKEN, "cat": 1, "photo": 1, "jeep": 1}.items():
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == count, word
        assert tok.convert_ids_to_tokens(ids) == _reference_bpe(word, ranks), word


def test_prompt_tokens_are_the_words_tokens_concatenated(tok: CLIPTokenizer) -> None:
    prompt = "An axolotl and two Zebras, don't ride a snowmobile!"
    per_word = [i for w in prompt.split() for i in tok(w, add_special_tokens=False).input_ids]
    assert tok(prompt).input_ids == [49406, *per_word, 49407]


def test_save_and_reload_round_trip(tok: CLIPTokenizer, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(again) == 49408
    assert again.model_max_length == 77
    for prompt in ["a photo of a cat", "an axolotl rides a snowmobile past zebras", "Don't PANIC, capybara!"]:
        assert (
            again(prompt, padding="max_length", max_length=77).input_ids
            == tok(prompt, padding="max_length", max_length=77).input_ids
        )


def test_shipped_merges_equal_the_shared_file() -> None:
    if not SHARED_MERGES.is_file():
        pytest.skip("real CLIP vocabulary not found")
    assert CLIP_MERGES.is_file()
    assert CLIP_MERGES.read_bytes() == SHARED_MERGES.read_bytes()


def test_default_path_builds_the_same_tokenizer(tok: CLIPTokenizer) -> None:
    assert build_clip_tokenizer()("a capybara").input_ids == tok("a capybara").input_ids


def test_truncated_merges_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "short.txt.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ValueError, match="not a CLIP BPE merges file"):
        build_clip_tokenizer(bad)
