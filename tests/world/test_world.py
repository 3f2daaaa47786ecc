"""The toy world's contract: its words, colours and caption form are fixed (toyworld's training, the classifier, the
quality benchmark and users' prompts rely on them), every picture comes with its truth (mask, centroid), and the
classifier reads rendered pictures right, and refuses what is not of the world."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from v2vz.world.measure import iou, psnr, read
from v2vz.world.scene import (
    BACKGROUNDS,
    COLOURS,
    OBJECTS,
    WORLD_SIZE,
    Scene,
    caption,
    parse_caption,
    random_scene,
    render,
    vocabulary,
    world_clip,
)

COMBINATIONS = list(itertools.product(COLOURS, OBJECTS, BACKGROUNDS))


def test_the_words_colours_and_caption_form_are_fixed() -> None:
    assert COLOURS == {
        "red": (220, 40, 40),
        "blue": (40, 70, 220),
        "yellow": (235, 210, 40),
        "purple": (150, 60, 200),
    }
    assert OBJECTS == ("ball", "box")
    assert BACKGROUNDS == {"green grass": (60, 150, 60), "white snow": (235, 235, 240), "grey road": (110, 110, 115)}
    assert WORLD_SIZE == 64
    assert caption("red", "ball", "green grass") == "a red ball on green grass"
    assert Scene("purple", "box", "grey road").caption == "a purple box on grey road"


@pytest.mark.parametrize("words", COMBINATIONS)
def test_every_caption_of_the_world_parses_back_to_its_words(words: tuple[str, str, str]) -> None:
    assert parse_caption(caption(*words)) == words


def test_a_caption_may_differ_in_case_spacing_and_article() -> None:
    assert parse_caption("  A Red  BALL on Green   Grass ") == ("red", "ball", "green grass")
    assert parse_caption("an yellow box on white snow") == ("yellow", "box", "white snow")


@pytest.mark.parametrize(
    "text",
    [
        "a orange ball on green grass",  # a colour the world lacks
        "a red cube on green grass",  # an object it lacks
        "a red ball on sand",  # a background it lacks
        "a red ball on green",  # half a background
        "red ball on green grass",  # no article
        "a red ball",
        "",
    ],
)
def test_anything_else_is_refused_naming_the_worlds_words(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_caption(text)
    message = str(refused.value)
    assert "\n" not in message and vocabulary() in message and repr(text) in message
    for word in [*COLOURS, *OBJECTS, *BACKGROUNDS]:
        assert word in message


def test_scenes_refuse_words_outside_the_world() -> None:
    with pytest.raises(ValueError, match="colour 'orange'"):
        Scene("orange", "ball", "green grass")
    with pytest.raises(ValueError, match="object 'cube'"):
        Scene("red", "cube", "green grass")
    with pytest.raises(ValueError, match="background 'sand'"):
        Scene("red", "ball", "sand")


@pytest.mark.parametrize("scale", [1, 4])
def test_the_mask_is_the_shape_drawn_in_the_objects_colour(scale: int) -> None:
    """Area within half a pixel per pixel of outline of pi r^2 (ball) or (2s)^2 (box), and exactly the pixels of the
    object's colour: the truth is the picture's, not an approximation of it."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        scene = random_scene(rng)
        picture, mask = render(scene, scale)
        assert picture.shape == (WORLD_SIZE * scale, WORLD_SIZE * scale, 3) and picture.dtype == np.uint8
        size = scene.size * scale
        ideal, outline = (
            (math.pi * size**2, 2 * math.pi * size) if scene.object == "ball" else ((2 * size) ** 2, 8 * size)
        )
        assert abs(mask.sum() - ideal) <= 0.5 * outline, (scene, int(mask.sum()), ideal)
        colour = np.asarray(COLOURS[scene.colour], np.float32)
        object_pixels = picture[mask].astype(np.float32)
        assert np.all(np.abs(object_pixels - colour) <= 0.15 * colour + 1)  # the object's faint grain (3%) only
        assert np.abs(np.median(object_pixels, axis=0) - colour).max() <= 2
        ground = np.linalg.norm(picture[~mask] - np.asarray(BACKGROUNDS[scene.background], np.float32), axis=-1)
        assert np.median(ground) < 20 and np.linalg.norm(colour - BACKGROUNDS[scene.background]) > 100


@pytest.mark.parametrize("scale", [1, 2])
def test_a_clips_truth_is_where_each_scene_puts_the_object(scale: int) -> None:
    clip = world_clip("a blue box on white snow", 12, seed=3, scale=scale)
    assert clip.frames.shape == (12, 64 * scale, 64 * scale, 3) and clip.masks.shape == (12, 64 * scale, 64 * scale)
    assert {(s.colour, s.object, s.background, s.size) for s in clip.scenes} == {
        ("blue", "box", "white snow", clip.scenes[0].size)
    }
    centres = np.array([(scene.x, scene.y) for scene in clip.scenes]) * scale
    assert np.abs(clip.centroids - centres).max() <= 1.0
    assert np.hypot(*(centres[-1] - centres[0])) >= 8 * scale, "the object hardly moves"
    for picture, mask, scene in zip(clip.frames, clip.masks, clip.scenes, strict=True):
        again, again_mask = render(scene, scale)
        assert np.array_equal(picture, again) and np.array_equal(mask, again_mask)


@pytest.mark.parametrize("scale, pan", [(1, 0), (2, 1), (4, 2)])
def test_the_ground_keeps_its_grain_under_a_pan(scale: int, pan: int) -> None:
    """The same world pixel has the same grain in every frame: frame i seen `pan` world pixels further right is frame
    i + 1, wherever neither frame shows the object (and a still camera keeps the ground still)."""
    clip = world_clip("a red ball on green grass", 6, seed=5, scale=scale, pan=pan)
    shift = pan * scale
    side = clip.frames.shape[2]
    for i in range(len(clip.frames) - 1):
        moved = clip.frames[i][:, shift:]
        following = clip.frames[i + 1][:, : side - shift]
        ground = ~clip.masks[i][:, shift:] & ~clip.masks[i + 1][:, : side - shift]
        assert ground.mean() > 0.5
        assert np.array_equal(moved[ground], following[ground]), f"frame {i} -> {i + 1}"
    if pan:
        assert not np.array_equal(clip.frames[0][~clip.masks[0]], clip.frames[1][~clip.masks[0]])


def test_a_clip_depends_only_on_its_caption_and_seed() -> None:
    first = world_clip("a yellow ball on grey road", 4, seed=11)
    assert np.array_equal(first.frames, world_clip("a yellow ball on grey road", 4, seed=11).frames)
    assert not np.array_equal(first.frames, world_clip("a yellow ball on grey road", 4, seed=12).frames)
    with pytest.raises(ValueError, match="not a caption of the world"):
        world_clip("a green ball on grey road", 4)


@pytest.mark.parametrize("colour, object_, background", COMBINATIONS)
def test_the_classifier_reads_every_combination(colour: str, object_: str, background: str) -> None:
    """Ten random scenes of each of the 24 combinations: all read right, the centroid within 1 px of the centre."""
    rng = np.random.default_rng(COMBINATIONS.index((colour, object_, background)))
    for _ in range(10):
        scene = random_scene(rng, colour=colour, object=object_, background=background)
        picture, mask = render(scene)
        reading = read(picture)
        assert (reading.colour, reading.object, reading.background) == (colour, object_, background), scene
        assert math.hypot(reading.centroid[0] - scene.x, reading.centroid[1] - scene.y) <= 1.0, scene
        assert iou(reading.mask, mask) > 0.95


def test_the_classifier_works_at_scale_4() -> None:
    rng = np.random.default_rng(4)
    for _ in range(8):
        scene = random_scene(rng)
        picture, mask = render(scene, 4)
        reading = read(picture)
        assert (reading.colour, reading.object, reading.background) == (scene.colour, scene.object, scene.background)
        assert math.hypot(reading.centroid[0] - 4 * scene.x, reading.centroid[1] - 4 * scene.y) <= 1.0
        assert iou(reading.mask, mask) > 0.95


def test_an_orange_object_is_no_colour() -> None:
    scene = Scene("red", "ball", "green grass", x=30, y=34, size=10)
    picture, mask = render(scene)
    picture[mask] = (250, 140, 30)  # neither red nor yellow
    reading = read(picture)
    assert (reading.colour, reading.object, reading.background) == ("none", "ball", "green grass")


def test_no_object_reads_as_none_and_an_unknown_ground_as_none() -> None:
    picture, mask = render(Scene("blue", "box", "white snow", x=-100, y=-100))
    assert not mask.any()
    reading = read(picture)
    assert (reading.colour, reading.object, reading.background) == ("none", "none", "white snow")
    assert math.isnan(reading.centroid[0]) and math.isnan(reading.centroid[1])
    sand = np.full((64, 64, 3), (200, 170, 110), np.uint8)
    assert read(sand).background == "none"


def test_iou_and_psnr() -> None:
    a = np.zeros((8, 8), bool)
    a[:4] = True
    assert iou(a, a) == 1.0 and iou(a, ~a) == 0.0 and iou(a, np.zeros_like(a)) == 0.0
    assert iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    picture = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(picture, picture) == math.inf
    assert psnr(picture, picture + 1) == pytest.approx(20 * math.log10(255), abs=1e-9)
    off = picture.copy()
    off[a] = 0
    assert psnr(picture, off, where=~a) == math.inf and psnr(picture, off, where=a) < 10
