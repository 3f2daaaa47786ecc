"""Prompt-to-prompt token mappers on the real CLIP vocabulary.

Multi-token words used (real CLIP BPE): capybara = cap|y|bara (3), axolotl = ax|o|lot|l (4),
zebras = ze|bras (2), snowmobile = snow|mobile (2); cat, car, red, road... are one token each.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from transformers import CLIPTokenizer

from v2vz.api.errors import InvalidArgument
from v2vz_engine.prompt_alignment import (
    edit_mode,
    global_align,
    refine_mapper,
    replace_mapper,
    word_token_positions,
)
from v2vz_engine.tokenizer import build_clip_tokenizer

CLIP_VOCAB_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "clip-vocab"
SHARED_MERGES = CLIP_VOCAB_DIR / "bpe_simple_vocab_16e6.txt.gz"
L = 77


@pytest.fixture(scope="module")
def tok() -> CLIPTokenizer:
    if not SHARED_MERGES.is_file():
        pytest.skip(f"real CLIP vocabulary not found at {SHARED_MERGES}")
    return build_clip_tokenizer(SHARED_MERGES)


def test_the_test_words_split_as_assumed(tok: CLIPTokenizer) -> None:
    counts = {w: len(tok(w, add_special_tokens=False).input_ids) for w in ["capybara", "axolotl", "zebras"]}
    assert counts == {"capybara": 3, "axolotl": 4, "zebras": 2}
    assert len(tok("snowmobile", add_special_tokens=False).input_ids) == 2
    assert len(tok("cat", add_special_tokens=False).input_ids) == 1


# --- word_token_positions -----------------------------------------------------------------------------------


def test_word_positions_single_tokens(tok: CLIPTokenizer) -> None:
    assert word_token_positions("a cat is running", tok) == [[1], [2], [3], [4]]


def test_word_positions_multi_token_words(tok: CLIPTokenizer) -> None:
    prompt = "an axolotl and zebras on grass"
    spans = word_token_positions(prompt, tok)
    assert spans == [[1], [2, 3, 4, 5], [6], [7, 8], [9], [10]]
    ids = tok(prompt, padding="max_length", max_length=L).input_ids
    for word, span in zip(prompt.split(), spans, strict=True):
        assert [ids[p] for p in span] == tok(word, add_special_tokens=False).input_ids
    assert ids[spans[-1][-1] + 1] == tok.eos_token_id


def test_word_positions_punctuation_and_whitespace(tok: CLIPTokenizer) -> None:
    # "don't" is two tokens (don|'t), "cat," is two (cat|,); runs of whitespace separate words like one space.
    assert word_token_positions("  don't   stop the cat, ", tok) == [[1, 2], [3], [4], [5, 6]]
    assert word_token_positions("", tok) == []


def test_word_positions_truncated_like_the_tokenizer(tok: CLIPTokenizer) -> None:
    spans = word_token_positions(" ".join(["cat"] * 80), tok)
    assert len(spans) == 80
    assert spans[:75] == [[p] for p in range(1, 76)]
    assert spans[75:] == [[]] * 5


# --- edit_mode / replace_mapper -----------------------------------------------------------------------------


def test_edit_mode() -> None:
    assert edit_mode("a cat is running", "a capybara is walking") == "replace"
    assert edit_mode("a car on the road", "a red car on the road") == "refine"
    assert edit_mode("a  cat\trunning", "a dog running") == "replace"


def test_replace_identical_prompts_is_identity(tok: CLIPTokenizer) -> None:
    for prompt in ["a cat is running on the grass", "an axolotl rides a snowmobile"]:
        m = replace_mapper(prompt, prompt, tok)
        assert m.dtype == torch.float32 and m.shape == (L, L)
        assert torch.equal(m, torch.eye(L))


def test_replace_one_token_word_by_three_token_word(tok: CLIPTokenizer) -> None:
    m = replace_mapper("a cat is running on the grass", "a capybara is running on the grass", tok)
    # source: BOS a cat is running on the grass EOS -> EOS at 8; target: capybara at 2,3,4 -> EOS at 10.
    expected = torch.zeros(L, L)
    expected[0, 0] = expected[1, 1] = 1
    expected[2, 2:5] = 1 / 3
    for s in range(3, L - 2):  # is running on the grass, EOS (8 -> 10), padding (9 -> 11 ... 74 -> 76)
        expected[s, s + 2] = 1
    assert torch.allclose(m, expected)
    # Every source row that maps keeps its whole weight (source padding 75, 76 has no target left).
    rows = m.sum(1)
    assert torch.allclose(rows[: L - 2], torch.ones(L - 2)) and torch.equal(rows[L - 2 :], torch.zeros(2))
    # Every target column gets weight: 1 from one source token, except the new word's columns, 1/3 each.
    cols = m.sum(0)
    assert torch.allclose(cols[2:5], torch.full((3,), 1 / 3))
    assert torch.equal(torch.cat([cols[:2], cols[5:]]), torch.ones(L - 3))


def test_replace_three_token_word_by_one_token_word(tok: CLIPTokenizer) -> None:
    m = replace_mapper("a capybara is running", "a cat is running", tok)
    # 1/len(target) = 1: the three source tokens all feed the one target token (their mass adds up).
    assert torch.equal(m[2:5, 2], torch.ones(3))
    assert m[:, 2].sum() == 3
    assert m[7, 5] == 1  # EOS -> EOS
    assert m[76, 74] == 1  # padding shifted back by two
    # The last two target columns have no source position left: nothing maps there.
    assert torch.equal(m[:, 75:], torch.zeros(L, 2))
    assert torch.equal(m.sum(0)[:75], torch.tensor([1.0, 1.0, 3.0] + [1.0] * 72))


def test_replace_equal_token_counts_map_one_to_one(tok: CLIPTokenizer) -> None:
    # zebras (ze|bras) -> snowmobile (snow|mobile): same count, one to one, shifted by 2 (cat -> capybara).
    m = replace_mapper("a cat and zebras", "a capybara and snowmobile", tok)
    assert m[3, 5] == 1  # and
    assert m[4, 6] == 1 and m[5, 7] == 1
    assert m[4, 7] == 0 and m[5, 6] == 0
    assert m[6, 8] == 1  # EOS
    # Same token counts at the same positions: the identity.
    assert torch.equal(replace_mapper("a zebras on the road", "a snowmobile on the road", tok), torch.eye(L))


def test_replace_two_tokens_to_four_tokens(tok: CLIPTokenizer) -> None:
    m = replace_mapper("a zebras swims", "a axolotl swims", tok)
    assert torch.allclose(m[2:4, 2:6], torch.full((2, 4), 0.25))
    assert m[4, 6] == 1 and m[5, 7] == 1  # swims, EOS
    assert torch.allclose(m.sum(1)[:75], torch.ones(75))


def test_replace_unequal_word_counts_is_invalid(tok: CLIPTokenizer) -> None:
    with pytest.raises(InvalidArgument, match="same number of words"):
        replace_mapper("a car on the road", "a red car on the road", tok)


def test_replace_other_max_len(tok: CLIPTokenizer) -> None:
    m = replace_mapper("a cat", "a capybara", tok, max_len=8)
    assert m.shape == (8, 8)
    assert torch.allclose(m[2, 2:5], torch.full((3,), 1 / 3))
    assert m[3, 5] == 1 and m[4, 6] == 1 and m[5, 7] == 1 and m[6:].sum() == 0


# --- global_align -------------------------------------------------------------------------------------------


def _score(pairs: list[tuple[int | None, int | None]], a: list[int], b: list[int], mt: int, mm: int, gp: int) -> int:
    return sum(gp if i is None or j is None else (mt if a[i] == b[j] else mm) for i, j in pairs)


def _best_score(a: list[int], b: list[int], mt: int, mm: int, gp: int) -> int:
    """Exhaustive search over all global alignments (tiny inputs only)."""
    if not a or not b:
        return gp * (len(a) + len(b))
    return max(
        _best_score(a[1:], b[1:], mt, mm, gp) + (mt if a[0] == b[0] else mm),
        _best_score(a[1:], b, mt, mm, gp) + gp,
        _best_score(a, b[1:], mt, mm, gp) + gp,
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 2, 3], [1, 2, 3], [(0, 0), (1, 1), (2, 2)]),
        ([1, 2, 3], [1, 9, 2, 3], [(0, 0), (None, 1), (1, 2), (2, 3)]),  # insertion
        ([1, 9, 2, 3], [1, 2, 3], [(0, 0), (1, None), (2, 1), (3, 2)]),  # deletion
        ([1, 2, 3, 4], [1, 3, 4, 5], [(0, 0), (1, None), (2, 1), (3, 2), (None, 3)]),
        # tie (score 1 either way): deletion read first, then insertion
        ([1, 2], [1, 3], [(0, 0), (1, None), (None, 1)]),
        ([7], [8], [(0, None), (None, 0)]),
        ([], [5, 6], [(None, 0), (None, 1)]),
        ([5], [], [(0, None)]),
        ([], [], []),
    ],
)
def test_global_align_hand_worked(a: list[int], b: list[int], expected: list[tuple[int | None, int | None]]) -> None:
    assert global_align(a, b) == expected


def test_global_align_prefers_the_diagonal_on_ties() -> None:
    # mismatch 0, gap 0: pairing 7 with 8 scores the same as two gaps; the diagonal wins.
    assert global_align([7], [8], mismatch=0) == [(0, 0)]
    # with costly gaps the mismatch is taken outright
    assert global_align([1, 2, 3], [1, 5, 3], gap=-2) == [(0, 0), (1, 1), (2, 2)]


def test_global_align_is_optimal_and_valid() -> None:
    g = torch.Generator().manual_seed(0)
    for params in [(1, -1, 0), (2, -1, -1), (1, 0, -1)]:
        for _ in range(60):
            a = torch.randint(0, 3, (int(torch.randint(0, 6, (1,), generator=g)),), generator=g).tolist()
            b = torch.randint(0, 3, (int(torch.randint(0, 6, (1,), generator=g)),), generator=g).tolist()
            pairs = global_align(a, b, *params)
            assert [i for i, _ in pairs if i is not None] == list(range(len(a)))
            assert [j for _, j in pairs if j is not None] == list(range(len(b)))
            assert all(i is not None or j is not None for i, j in pairs)
            assert _score(pairs, a, b, *params) == _best_score(a, b, *params)


# --- refine_mapper ------------------------------------------------------------------------------------------


def test_refine_inserted_word(tok: CLIPTokenizer) -> None:
    index, alpha = refine_mapper("a car on the road", "a red car on the road", tok)
    assert index.dtype == torch.long and alpha.dtype == torch.float32
    assert index.shape == alpha.shape == (L,)
    # target: BOS a red car on the road EOS; source: BOS a car on the road EOS (EOS at 6)
    assert index[:8].tolist() == [0, 1, 2, 2, 3, 4, 5, 6]
    assert alpha[:8].tolist() == [1, 1, 0, 1, 1, 1, 1, 1]
    # padding: target 8 + k -> source 7 + k
    assert index[8:].tolist() == list(range(7, 76))
    assert torch.equal(alpha[8:], torch.ones(L - 8))


def test_refine_identical_prompts(tok: CLIPTokenizer) -> None:
    index, alpha = refine_mapper("an axolotl on the road", "an axolotl on the road", tok)
    assert torch.equal(index, torch.arange(L))
    assert torch.equal(alpha, torch.ones(L))


def test_refine_multi_token_insertion(tok: CLIPTokenizer) -> None:
    index, alpha = refine_mapper("a car on the road", "a capybara car on the road", tok)
    # target: BOS a cap y bara car on the road EOS (EOS at 9); the three inserted tokens keep their own maps.
    assert index[:10].tolist() == [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]
    assert alpha[:10].tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 1, 1]
    assert index[10:].tolist() == list(range(7, 74))
    assert torch.equal(alpha[10:], torch.ones(L - 10))


def test_refine_deleted_word_clips_padding(tok: CLIPTokenizer) -> None:
    index, alpha = refine_mapper("a red car on the road", "a car on the road", tok)
    assert index[:7].tolist() == [0, 1, 3, 4, 5, 6, 7]
    assert torch.equal(alpha, torch.ones(L))
    # target padding 7 + k -> source 8 + k, the last one clipped to 76
    assert index[7:].tolist() == [*range(8, 77), 76]


def test_published_refine_padding_maps_each_position_to_itself(tok: CLIPTokenizer) -> None:
    """The published mapper (--preset published): target padding j takes source position j, whatever the lengths."""
    # target longer: BOS a cap y bara car on the road EOS (10 tokens) against the 7 of "a car on the road"
    index, alpha = refine_mapper("a car on the road", "a capybara car on the road", tok, padding="identity")
    assert index[:10].tolist() == [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]  # the aligned part is the same as ours
    assert alpha[:10].tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 1, 1]
    assert index[10:].tolist() == list(range(10, 77))  # ours: 7, 8, ... (source padding in order)
    assert torch.equal(alpha[10:], torch.ones(L - 10))
    # target shorter: its padding 7, 8, 9 take the source's "the", "road" and EOS; ours takes the source padding
    index, alpha = refine_mapper("a capybara car on the road", "a car on the road", tok, padding="identity")
    assert index[:7].tolist() == [0, 1, 5, 6, 7, 8, 9]
    assert index[7:].tolist() == list(range(7, 77)) and torch.equal(alpha, torch.ones(L))
    ours, _ = refine_mapper("a capybara car on the road", "a car on the road", tok)
    assert ours[7:].tolist() == [*range(10, 77), 76, 76, 76]
    with pytest.raises(InvalidArgument, match="aligned or identity"):
        refine_mapper("a car", "a red car", tok, padding="shifted")  # type: ignore[arg-type]


def test_published_and_aligned_padding_agree_for_prompts_of_equal_token_count(tok: CLIPTokenizer) -> None:
    # 4 words against 5 (refine), 7 tokens each: the 2-token "zebras" against the two words "red car"
    assert len(tok("a zebras on road").input_ids) == len(tok("a red car on road").input_ids) == 7
    a = refine_mapper("a zebras on road", "a red car on road", tok, padding="identity")
    b = refine_mapper("a zebras on road", "a red car on road", tok)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0][7:].tolist() == list(range(7, 77))


# --- applying the mappers -----------------------------------------------------------------------------------


def test_apply_replace_mapper_to_attention(tok: CLIPTokenizer) -> None:
    g = torch.Generator().manual_seed(1)
    src = torch.rand(4, 16, L, generator=g).softmax(-1)  # (heads, pixels, tokens) like cross-attention probs
    m = replace_mapper("a cat is running on the grass", "a capybara is running on the grass", tok)
    edit = torch.einsum("hpw,wn->hpn", src, m)
    assert edit.shape == src.shape
    for t in (2, 3, 4):
        assert torch.allclose(edit[..., t], src[..., 2] / 3)
    assert torch.allclose(edit[..., 0], src[..., 0]) and torch.allclose(edit[..., 1], src[..., 1])
    assert torch.allclose(edit[..., 5:], src[..., 3:75])  # later words, EOS, padding shifted by two
    # the attention mass of each pixel is kept, less what the source put on its last two (dropped) positions
    assert torch.allclose(edit.sum(-1), src[..., :75].sum(-1))


def test_apply_refine_mapper_to_attention(tok: CLIPTokenizer) -> None:
    g = torch.Generator().manual_seed(2)
    src = torch.rand(4, 16, L, generator=g).softmax(-1)
    own = torch.rand(4, 16, L, generator=g).softmax(-1)
    index, alpha = refine_mapper("a car on the road", "a red car on the road", tok)
    edit = src[..., index] * alpha + own * (1 - alpha)
    assert torch.equal(edit[..., 2], own[..., 2])  # "red" keeps the edit branch's own map
    assert torch.equal(edit[..., 3], src[..., 2])  # "car"
    assert torch.equal(edit[..., 7], src[..., 6])  # EOS
    assert torch.equal(edit[..., 8:], src[..., 7:76])  # padding
    assert torch.equal(edit[..., :2], src[..., :2])


def test_mappers_agree_with_each_other_where_both_apply(tok: CLIPTokenizer) -> None:
    # A one-token swap of equal word count: replace's one-to-one mapper and refine's index say the same thing
    # for every unchanged token (refine leaves the swapped token on its own map).
    m = replace_mapper("a cat on the road", "a dog on the road", tok)
    index, alpha = refine_mapper("a cat on the road", "a dog on the road", tok)
    for t in itertools.chain(range(2), range(3, L)):
        assert alpha[t] == 1 and m[index[t], t] == 1
    assert alpha[2] == 0
