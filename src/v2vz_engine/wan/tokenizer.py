"""A small T5-style tokenizer built in code, for the random-weight Wan built-ins.

Why: Wan's real tokenizer is UMT5-XXL's 256k-piece SentencePiece model, which cannot be downloaded here and which a
random text encoder gains nothing from. This one has T5's layout (pad 0, eos 1, unk 2, a Unigram model over
"▁"-prefixed pieces, an eos appended to every sequence) over a fixed word list, so the pipeline's tokenizing, padding
and masking run exactly as with the real one, and every build gives the same ids.
"""

from __future__ import annotations

import string

import transformers

from v2vz.world.scene import BACKGROUNDS, COLOURS, OBJECTS

MAX_LENGTH = 512  # Wan's text length (its config's text_len; WanPipeline's max_sequence_length)
WORD_SCORE = -5.0  # a whole word beats its spelling out: Unigram keeps the segmentation of highest total score
CHAR_SCORE = -10.0

# Common English words of prompts, then the toy world's own (v2vz.world): fixed, so ids never move.
_COMMON_TEXT = """
a an the and or of on in at to with by from for under over near behind beside into onto up down left right
is are was be it its this that there here one two three four five many few some all more
man woman person people child boy girl dog cat horse bird fish cow sheep car bus train bike boat plane truck
tree trees flower flowers grass sky cloud clouds sun moon star stars water sea ocean river lake beach sand snow
road street city house building room kitchen table chair window door wall floor field forest mountain hill
red blue green yellow purple orange pink black white grey gray brown golden silver dark light bright
big small large little tall short long old young new happy sad fast slow running walking jumping flying
sitting standing playing eating swimming driving riding dancing smiling looking holding wearing
shirt hat dress jacket shoes glasses ball box cup bottle book phone camera hand face hair eyes
day night morning evening sunset sunrise rain fog winter summer spring autumn
photo video picture painting style cartoon anime watercolor oil sketch realistic cinematic 3d render
high quality detailed blurry sharp colorful vivid soft warm cold
"""
COMMON_WORDS = _COMMON_TEXT.split()
WORLD_WORDS = [*COLOURS, *OBJECTS, *(word for background in BACKGROUNDS for word in background.split())]
CHARACTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation


def vocabulary() -> list[tuple[str, float]]:
    """T5's order: <pad>, </s>, <unk>, then the pieces (words, then single characters with and without "▁")."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", CHAR_SCORE)]
    seen = {piece for piece, _ in pieces}
    for word in [*COMMON_WORDS, *WORLD_WORDS]:
        if "▁" + word not in seen:
            seen.add("▁" + word)
            pieces.append(("▁" + word, WORD_SCORE))
    for char in CHARACTERS:
        for piece in ("▁" + char, char):
            if piece not in seen:
                seen.add(piece)
                pieces.append((piece, CHAR_SCORE))
    return pieces


def build_wan_tokenizer(max_length: int = MAX_LENGTH) -> transformers.PreTrainedTokenizerBase:
    """A T5 tokenizer (the `tokenizers` backend) over `vocabulary()`: no sentinel ids, model_max_length Wan's."""
    return transformers.T5Tokenizer(vocab=vocabulary(), extra_ids=0, model_max_length=max_length)
