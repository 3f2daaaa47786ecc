"""The classifier that reads a picture of the toy world: which colour, which object, which background, where.

Why: the gates and the quality benchmark judge pictures toyworld made (an edit, a sample) against the world's truth,
so the reading must be strict and fixed: a colour counts only when it is near one of the world's colours (an orange
that is neither red nor yellow is no colour), an object only when enough pixels stand out from the background.
Thresholds are in grey levels (RGB Euclidean distance) and were set on rendered pictures, never on model outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from v2vz.world.scene import BACKGROUNDS, COLOURS, centroid

BACKGROUND_TOLERANCE = 45.0  # the background's median colour must be this near a world background's
COLOUR_TOLERANCE = 60.0  # the object's median colour must be this near a world colour's
STANDS_OUT = 60.0  # a pixel this far from the background's median colour is the object's
MIN_AREA = 0.01  # of the frame: less than that is no object (the smallest object covers 2.8%)


@dataclass(frozen=True)
class Reading:
    """What the classifier sees in one picture ("none" where it sees nothing it may name)."""

    colour: str
    object: str
    background: str
    mask: np.ndarray  # bool: the object's pixels
    centroid: tuple[float, float]  # x, y in pixels (NaN when there is no object)


def nearest(colour: np.ndarray, palette: dict[str, tuple[int, int, int]], tolerance: float) -> str:
    names = list(palette)
    distances = np.linalg.norm(np.asarray(list(palette.values()), np.float32) - colour, axis=1)
    best = int(np.argmin(distances))
    return names[best] if distances[best] <= tolerance else "none"


def shape_of(mask: np.ndarray) -> str:
    """ "ball" or "box": whichever ideal shape of the mask's area, at its centroid, overlaps it more."""
    area = float(mask.sum())
    x, y = centroid(mask)
    rows, cols = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float32) + 0.5
    disc = (cols - x) ** 2 + (rows - y) ** 2 <= area / np.pi
    half = np.sqrt(area) / 2
    square = (np.abs(cols - x) <= half) & (np.abs(rows - y) <= half)
    return "ball" if iou(mask, disc) >= iou(mask, square) else "box"


def read(picture: np.ndarray) -> Reading:
    """Classify a uint8 RGB picture (height, width, 3) of any size."""
    pixels = picture.astype(np.float32)
    background_colour = np.median(pixels.reshape(-1, 3), axis=0)
    mask = np.linalg.norm(pixels - background_colour, axis=-1) > STANDS_OUT
    background = nearest(background_colour, BACKGROUNDS, BACKGROUND_TOLERANCE)
    if mask.mean() < MIN_AREA:
        return Reading("none", "none", background, mask, (float("nan"), float("nan")))
    colour = nearest(np.median(pixels[mask], axis=0), COLOURS, COLOUR_TOLERANCE)
    return Reading(colour, shape_of(mask), background, mask, centroid(mask))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR (dB) of two uint8 pictures over the pixels `where` is true (all by default); inf when equal."""
    difference = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        difference = difference[where]
    mse = float(np.mean(difference**2)) if difference.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
