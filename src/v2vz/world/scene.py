"""The toy world: one object on a background, captioned `a {colour} {object} on {background}`.

Why: edit quality can only be measured where the truth is known. Every picture here is drawn from a few numbers
(colour, object, background, position, size, texture seed), so each frame comes with its object mask, centroid and
colour, and `toyworld` (a small model trained on these pictures) can be judged against them. The words, colours and
caption form are fixed: the training script, the classifier, the quality benchmark and users' prompts rely on them.
Geometry is in units of the 64x64 world; `scale` draws the same scene larger (numpy only: no torch here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

WORLD_SIZE = 64  # the world's own resolution, what toyworld was trained at

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 70, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 200),
}
OBJECTS: tuple[str, ...] = ("ball", "box")  # a filled circle, a filled square
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "green grass": (60, 150, 60),
    "white snow": (235, 235, 240),
    "grey road": (110, 110, 115),
}
MIN_SIZE, MAX_SIZE = 6.0, 14.0  # the object's radius (ball) or half-side (box), in world pixels
TEXTURE = 7.0  # the background's texture amplitude (grey levels, standard deviation)

_CAPTION = re.compile(r"^\s*an?\s+(\w+)\s+(\w+)\s+on\s+(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Scene:
    """One picture of the world: what is where (x, y: the object's centre in world pixels; size: radius/half-side)."""

    colour: str
    object: str
    background: str
    x: float = 32.0
    y: float = 32.0
    size: float = 10.0
    texture_seed: int = 0
    pan: tuple[float, float] = (0.0, 0.0)  # the background's offset (a camera pan moves it, not the object)

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"colour {self.colour!r} is not in the world: {', '.join(COLOURS)}")
        if self.object not in OBJECTS:
            raise ValueError(f"object {self.object!r} is not in the world: {', '.join(OBJECTS)}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background {self.background!r} is not in the world: {', '.join(BACKGROUNDS)}")

    @property
    def caption(self) -> str:
        return caption(self.colour, self.object, self.background)


def caption(colour: str, object_: str, background: str) -> str:
    """The one caption form: `a red ball on green grass`."""
    return f"a {colour} {object_} on {background}"


def parse_caption(text: str) -> tuple[str, str, str]:
    """(colour, object, background) of a caption; ValueError naming the world's words for anything else."""
    match = _CAPTION.match(text)
    words = match.groups() if match else ()
    if not match or words[0].lower() not in COLOURS or words[1].lower() not in OBJECTS:
        raise ValueError(
            f"{text!r} is not a caption of the world: write 'a COLOUR OBJECT on BACKGROUND' with {vocabulary()}"
        )
    background = " ".join(words[2].lower().split())
    if background not in BACKGROUNDS:
        raise ValueError(
            f"{text!r} is not a caption of the world: write 'a COLOUR OBJECT on BACKGROUND' with {vocabulary()}"
        )
    return words[0].lower(), words[1].lower(), background


def vocabulary() -> str:
    return (
        f"COLOUR one of {', '.join(COLOURS)}; OBJECT one of {', '.join(OBJECTS)}; "
        f"BACKGROUND one of {', '.join(BACKGROUNDS)}"
    )


def _texture(seed: int, height: int, width: int, pan: tuple[float, float], scale: float) -> np.ndarray:
    """A smooth-ish noise field (the grass/snow/road grain) that a pan slides under the frame: the same world pixel
    has the same grain in every frame. Drawn on a world-unit lattice and sampled by nearest world pixel."""
    rng = np.random.default_rng(10_000 + seed)
    side = WORLD_SIZE * 4
    fine = rng.normal(0.0, 1.0, (side, side))
    coarse = np.kron(rng.normal(0.0, 1.0, (side // 4, side // 4)), np.ones((4, 4)))
    field = (0.6 * fine + 0.8 * coarse) * TEXTURE
    ys = (np.arange(height) / scale + pan[1]).astype(np.int64) % side
    xs = (np.arange(width) / scale + pan[0]).astype(np.int64) % side
    return field[np.ix_(ys, xs)]


def object_mask(scene: Scene, height: int, width: int, scale: float = 1.0) -> np.ndarray:
    """Where the object is (bool, height x width), pixel centres tested against the shape in world units."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    wx, wy = (x + 0.5) / scale, (y + 0.5) / scale
    if scene.object == "ball":
        return (wx - scene.x) ** 2 + (wy - scene.y) ** 2 <= scene.size**2
    return (np.abs(wx - scene.x) <= scene.size) & (np.abs(wy - scene.y) <= scene.size)


def render(scene: Scene, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB picture, bool object mask) of `scene`, WORLD_SIZE * scale pixels square."""
    side = round(WORLD_SIZE * scale)
    grain = _texture(scene.texture_seed, side, side, scene.pan, scale)
    picture = np.asarray(BACKGROUNDS[scene.background], np.float32) + grain[..., None]
    mask = object_mask(scene, side, side, scale)
    shading = 1.0 + 0.03 * grain[..., None] / TEXTURE  # the object keeps its colour: a faint grain only
    picture = np.where(mask[..., None], np.asarray(COLOURS[scene.colour], np.float32) * shading, picture)
    return np.clip(picture, 0, 255).round().astype(np.uint8), mask


def random_scene(rng: np.random.Generator, **fixed: object) -> Scene:
    """A scene drawn uniformly from the world (what training sees); `fixed` pins any field."""
    size = float(rng.uniform(MIN_SIZE, MAX_SIZE))
    values = dict(
        colour=str(rng.choice(list(COLOURS))),
        object=str(rng.choice(OBJECTS)),
        background=str(rng.choice(list(BACKGROUNDS))),
        x=float(rng.uniform(size + 1, WORLD_SIZE - size - 1)),
        y=float(rng.uniform(size + 1, WORLD_SIZE - size - 1)),
        size=size,
        texture_seed=int(rng.integers(0, 1000)),
        pan=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256))),
    )
    values.update(fixed)
    return Scene(**values)


@dataclass(frozen=True)
class WorldClip:
    """A clip of the world in motion and its truth per frame."""

    frames: np.ndarray  # uint8 (frames, side, side, 3)
    masks: np.ndarray  # bool (frames, side, side)
    scenes: tuple[Scene, ...]  # each frame's scene: colour, object, background, centre (world pixels), size

    @property
    def centroids(self) -> np.ndarray:
        """(frames, 2) x, y of each frame's object in pixels of the rendered frames (mask centroids)."""
        return np.array([centroid(mask) for mask in self.masks])


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of a mask's pixel centres; NaN for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return float("nan"), float("nan")
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def world_clip(
    text: str,
    frames: int = 16,
    seed: int = 0,
    *,
    scale: float = 1.0,
    pan: float = 0.0,
    size: float | None = None,
) -> WorldClip:
    """A clip of `text` (a caption of the world): the object moves along a gentle arc across the frame (its path,
    size and the background's grain drawn from `seed`), and the camera pans `pan` world pixels a frame."""
    colour, object_, background = parse_caption(text)
    rng = np.random.default_rng(seed)
    radius = float(size if size is not None else rng.uniform(8.0, 12.0))
    margin = radius + 2
    start = rng.uniform(margin, WORLD_SIZE - margin, 2)
    end = rng.uniform(margin, WORLD_SIZE - margin, 2)
    if np.hypot(*(end - start)) < 16:  # a path long enough to see the motion
        end = WORLD_SIZE - start
    bend = rng.uniform(-6, 6)
    origin = rng.uniform(0, 256, 2)
    base = Scene(colour, object_, background, size=radius, texture_seed=int(rng.integers(0, 1000)))
    scenes, pictures, masks = [], [], []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        x, y = start + t * (end - start)
        y += bend * np.sin(np.pi * t)
        x = float(np.clip(x, margin, WORLD_SIZE - margin))
        y = float(np.clip(y, margin, WORLD_SIZE - margin))
        scene = replace(base, x=x, y=y, pan=(float(origin[0] + pan * i), float(origin[1])))
        picture, mask = render(scene, scale)
        scenes.append(scene)
        pictures.append(picture)
        masks.append(mask)
    return WorldClip(np.stack(pictures), np.stack(masks), tuple(scenes))
