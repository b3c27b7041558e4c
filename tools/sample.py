"""Deterministic generator of a small Fruits-360-like image sample.

Used when a machine has no real Fruits-360 copy, so the pipelines can still
run end to end. The layout mirrors the real dataset::

    <root>/Training/<Class Name>/<n>_100.jpg
    <root>/Test/<Class Name>/<n>_100.jpg

Every image is a 100x100 RGB JPEG of one fruit centred on a pure white
background. Like Fruits-360, whose photos were taken while the fruit turned on
a slow motor, all images of a class show the *same* fruit model seen at a
different rotation, with small variations in scale, position and lighting.

Models are drawn with Pillow at 4x resolution, rotated, downsampled with
LANCZOS for anti-aliasing, then lit with a simple Lambert + specular model so
they look like photos rather than flat icons. Everything is seeded from the
class name, split and image index, so every run writes the same bytes.

Run ``python -m tools.sample [ROOT]`` to write the sample.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Bump when the images change, so a stale sample on disk gets regenerated.
SAMPLE_VERSION = "fruits_kedro.sample v1"
MARKER_NAME = ".sample_complete"
DEFAULT_ROOT = Path("data/01_raw/fruits")

SPLITS = ("Training", "Test")
TRAIN_PER_CLASS = 12
TEST_PER_CLASS = 6

IMAGE_SIZE = 100
SUPERSAMPLE = 4
JPEG_QUALITY = 95

# Posing resamples the 4x model before the LANCZOS downsample, which does the
# anti-aliasing; nearest-neighbour here looks the same and is ~20x faster than bicubic.
_POSE_RESAMPLING = Image.Resampling.NEAREST

# Mixed into every seed so this generator's streams differ from other users of numpy.
_SEED_SALT = 360_100

_MODEL_SIZE = IMAGE_SIZE * SUPERSAMPLE
_MODEL_CENTRE = _MODEL_SIZE / 2
# Model-space pixels per "fruit radius"; models are drawn in these units and
# must stay within ~1.6 units of the centre to fit the canvas.
_UNIT = 0.30 * _MODEL_SIZE
# Output pixels from the image centre to a fruit's farthest point at full scale;
# with the largest position jitter this still leaves a white border.
_FIT_RADIUS = 44.0
_MAX_OFFSET = 3.0

# A point in fruit-radius units: x to the right, y downwards, (0, 0) = centre.
Point = tuple[float, float]
RGB = tuple[int, int, int]


# ---------------------------------------------------------------------------
# Drawing fruit models
# ---------------------------------------------------------------------------


def _to_px(point: Point) -> tuple[float, float]:
    return (_MODEL_CENTRE + point[0] * _UNIT, _MODEL_CENTRE + point[1] * _UNIT)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """Colour a blended towards b by fraction t."""
    return tuple(round(ca + (cb - ca) * t) for ca, cb in zip(a, b))  # type: ignore[return-value]


class _Sketch:
    """A fruit model being drawn: a colour layer plus a coverage mask.

    Shapes paint colour and, unless ``cover=False``, extend the fruit's
    silhouette. Textures only paint colour on what is already covered.
    """

    def __init__(self, edge_colour: RGB) -> None:
        size = (_MODEL_SIZE, _MODEL_SIZE)
        self.colour = Image.new("RGB", size, edge_colour)
        self.coverage = Image.new("L", size, 0)
        self._paint = ImageDraw.Draw(self.colour)
        self._cover = ImageDraw.Draw(self.coverage)

    def ellipse(self, centre: Point, rx: float, ry: float, colour: RGB, cover: bool = True) -> None:
        (cx, cy) = centre
        box = [*_to_px((cx - rx, cy - ry)), *_to_px((cx + rx, cy + ry))]
        self._paint.ellipse(box, fill=colour)
        if cover:
            self._cover.ellipse(box, fill=255)

    def polygon(self, points: Sequence[Point], colour: RGB, cover: bool = True) -> None:
        pixels = [_to_px(p) for p in points]
        self._paint.polygon(pixels, fill=colour)
        if cover:
            self._cover.polygon(pixels, fill=255)

    def line(self, points: Sequence[Point], colour: RGB, width: float, cover: bool = True) -> None:
        pixels = [_to_px(p) for p in points]
        width_px = max(1, round(width * _UNIT))
        self._paint.line(pixels, fill=colour, width=width_px, joint="curve")
        if cover:
            self._cover.line(pixels, fill=255, width=width_px, joint="curve")
            # Round caps, so stems don't end in hard squares.
            for end in (points[0], points[-1]):
                self.ellipse(end, width / 2, width / 2, colour)

    def shaded_disc(self, centre: Point, radius: float, middle: RGB, rim: RGB, rings: int = 6) -> None:
        """A disc darkening towards its rim; symmetric, so it looks right at any rotation."""
        for ring in range(rings):
            t = ring / (rings - 1)
            r = radius * (1.0 - 0.75 * t)
            self.ellipse(centre, r, r, _mix(rim, middle, t))

    def soften(self, radius: float) -> None:
        """Blur the colour layer (not the outline) so textures blend like real skin."""
        self.colour = self.colour.filter(ImageFilter.GaussianBlur(radius * _UNIT))
        self._paint = ImageDraw.Draw(self.colour)

    def points_inside(self, rng: np.random.Generator, count: int, extent: float = 1.4) -> np.ndarray:
        """``count`` random points (fruit units) that fall inside the current silhouette."""
        mask = np.asarray(self.coverage) > 200
        candidates = rng.uniform(-extent, extent, size=(count * 8, 2))
        px = np.clip(np.round(_MODEL_CENTRE + candidates * _UNIT).astype(int), 0, _MODEL_SIZE - 1)
        inside = candidates[mask[px[:, 1], px[:, 0]]]
        return inside[:count]

    def speckle(self, rng: np.random.Generator, count: int, radius: float, colours: Sequence[RGB]) -> None:
        """Small dots (peel pores, lenticels, bloom) scattered over the fruit."""
        for x, y in self.points_inside(rng, count):
            r = radius * rng.uniform(0.6, 1.4)
            colour = colours[rng.integers(len(colours))]
            self.ellipse((x, y), r, r, colour, cover=False)

    def strokes(
        self,
        rng: np.random.Generator,
        count: int,
        length: float,
        width: float,
        colours: Sequence[RGB],
        direction_deg: float | None = None,
    ) -> None:
        """Short strokes (kiwi fuzz, apple streaks); random or near-fixed direction."""
        for x, y in self.points_inside(rng, count):
            if direction_deg is None:
                angle = rng.uniform(0, math.pi)
            else:
                angle = math.radians(direction_deg + rng.normal(0, 12))
            half = length * rng.uniform(0.5, 1.0) / 2
            dx, dy = half * math.cos(angle), half * math.sin(angle)
            colour = colours[rng.integers(len(colours))]
            self.line([(x - dx, y - dy), (x + dx, y + dy)], colour, width, cover=False)


def _arc(centre: Point, radius: float, start_deg: float, end_deg: float, steps: int) -> list[Point]:
    angles = np.radians(np.linspace(start_deg, end_deg, steps))
    return [(centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)) for a in angles]


def _stem(sk: _Sketch, base: Point, tip: Point, width: float = 0.07, colour: RGB = (95, 65, 35)) -> None:
    sk.line([base, tip], colour, width)


def _draw_apple_red(sk: _Sketch, rng: np.random.Generator) -> None:
    body = (170, 22, 32)
    # Two shoulders and a rounder bottom give the apple's wide, flat-topped outline.
    for centre, rx, ry in (((-0.3, -0.02), 0.72, 0.74), ((0.3, -0.02), 0.72, 0.74), ((0.0, 0.1), 0.9, 0.78)):
        sk.ellipse(centre, rx, ry, body)
    # Streaks run from stem to base, as on real red apples; blurred so they read as colour, not scratches.
    sk.strokes(rng, 220, 0.45, 0.06, [(200, 48, 40), (135, 12, 22), (190, 70, 45)], direction_deg=90)
    sk.soften(0.025)
    sk.speckle(rng, 40, 0.014, [(215, 150, 100)])
    # The stem sits in a shallow cavity: darkest in the middle, fading into the skin.
    sk.shaded_disc((0.0, -0.6), 0.22, (110, 14, 22), (160, 22, 32))
    _stem(sk, (0.0, -0.6), (0.1, -1.05))


def _draw_banana(sk: _Sketch, rng: np.random.Generator) -> None:
    body = (240, 205, 55)
    # A crescent: a thick band along an arc, tapering to both ends.
    arc_centre, arc_radius, start, end = (0.0, -1.12), 1.25, 35.0, 145.0
    steps = 48
    spine = _arc(arc_centre, arc_radius, start, end, steps)
    outer, inner = [], []
    for i, (x, y) in enumerate(spine):
        s = i / (steps - 1)
        half = 0.34 * max(math.sin(math.pi * s), 0.0) ** 0.6 + 0.03
        nx, ny = (x - arc_centre[0]) / arc_radius, (y - arc_centre[1]) / arc_radius
        outer.append((x + nx * half, y + ny * half))
        inner.append((x - nx * half, y - ny * half))
    sk.polygon(outer + inner[::-1], body)
    # Faint ridges along the length, and a few sugar spots.
    for offset in (-0.12, 0.1):
        ridge = _arc(arc_centre, arc_radius + offset, start + 8, end - 8, 32)
        sk.line(ridge, (222, 185, 45), 0.03, cover=False)
    sk.speckle(rng, 25, 0.025, [(140, 95, 35), (170, 120, 40)])
    # Stem leaves the right end along the arc's tangent; the left end is a dark nub.
    tip_angle = math.radians(start)
    stem_dir = (math.sin(tip_angle), -math.cos(tip_angle))
    base = spine[0]
    _stem(sk, base, (base[0] + 0.22 * stem_dir[0], base[1] + 0.22 * stem_dir[1]), 0.11, (125, 130, 55))
    sk.ellipse(spine[-1], 0.06, 0.06, (70, 50, 25))


def _draw_lemon(sk: _Sketch, rng: np.random.Generator) -> None:
    body = (250, 222, 45)
    sk.ellipse((0.0, 0.0), 0.95, 0.74, body)
    # The pointed nipples at both ends are what tell a lemon from an orange in outline.
    sk.ellipse((1.0, 0.0), 0.17, 0.12, (240, 210, 40))
    sk.ellipse((-0.98, 0.0), 0.13, 0.1, (215, 205, 60))
    sk.speckle(rng, 700, 0.014, [(228, 195, 30), (255, 240, 120)])
    sk.soften(0.008)


def _draw_orange(sk: _Sketch, rng: np.random.Generator) -> None:
    sk.ellipse((0.0, 0.0), 0.95, 0.93, (245, 140, 20))
    sk.speckle(rng, 1100, 0.015, [(218, 112, 10), (255, 178, 60)])
    sk.soften(0.008)
    sk.shaded_disc((0.0, -0.8), 0.08, (120, 125, 45), (90, 85, 30))


def _draw_kiwi(sk: _Sketch, rng: np.random.Generator) -> None:
    sk.ellipse((0.0, 0.0), 1.0, 0.78, (135, 100, 60))
    sk.strokes(rng, 900, 0.07, 0.016, [(100, 72, 42), (165, 128, 82), (120, 88, 52)])
    sk.ellipse((-1.0, 0.0), 0.06, 0.06, (70, 50, 28))


def _draw_grape_white(sk: _Sketch, rng: np.random.Generator) -> None:
    middle, rim = (212, 225, 125), (150, 170, 70)
    stalk = (120, 115, 55)
    # A bunch narrowing downwards: rows of berries, widest at the top.
    row_sizes, spacing = (4, 5, 4, 3, 2, 1), 0.35
    top = -0.78
    berries = []
    for row, size in enumerate(row_sizes):
        y = top + row * spacing * 0.92
        for k in range(size):
            x = (k - (size - 1) / 2) * spacing
            berries.append((x + rng.normal(0, 0.025), y + rng.normal(0, 0.025), rng.uniform(0.19, 0.22)))
    _stem(sk, (0.0, top - 0.2), (0.05, -1.18), 0.06, stalk)
    for x, y, r in berries:
        sk.shaded_disc((x, y), r, middle, rim)


def _draw_strawberry(sk: _Sketch, rng: np.random.Generator) -> None:
    body = (205, 25, 38)
    # Teardrop outline: round shoulders at the top, a point at the bottom.
    t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    outline = [(0.95 * math.sin(a) * abs(math.sin(a / 2)) ** 0.7, math.cos(a) + 0.05) for a in t]
    sk.polygon(outline, body)
    # Seeds sit in small pits on a loose lattice.
    for x, y in _lattice_inside(sk, rng, spacing=0.2):
        sk.ellipse((x, y), 0.045, 0.05, (150, 12, 25), cover=False)
        sk.ellipse((x, y - 0.01), 0.025, 0.032, (240, 205, 90), cover=False)
    # Green calyx: pointed sepals radiating from the top, then the stalk.
    calyx = (0.0, -0.9)
    for angle_deg in (-15, 25, 65, 115, 155, 195):
        _sepal(sk, calyx, angle_deg + rng.normal(0, 6), rng.uniform(0.42, 0.55))
    sk.ellipse(calyx, 0.12, 0.08, (45, 115, 35))
    _stem(sk, calyx, (0.06, -1.22), 0.07, (70, 130, 45))


def _lattice_inside(sk: _Sketch, rng: np.random.Generator, spacing: float) -> list[Point]:
    mask = np.asarray(sk.coverage) > 200
    points = []
    for row, y in enumerate(np.arange(-1.2, 1.2, spacing)):
        for x in np.arange(-1.2 + (row % 2) * spacing / 2, 1.2, spacing):
            px, py = _to_px((x, y))
            if mask[int(py), int(px)]:
                points.append((x + rng.normal(0, 0.02), y + rng.normal(0, 0.02)))
    return points


def _sepal(sk: _Sketch, base: Point, angle_deg: float, length: float) -> None:
    a = math.radians(angle_deg)
    along, across = (math.cos(a), math.sin(a)), (-math.sin(a), math.cos(a))
    width = 0.1
    tip = (base[0] + along[0] * length, base[1] + along[1] * length)
    mid = (base[0] + along[0] * length * 0.45, base[1] + along[1] * length * 0.45)
    leaf = [
        (base[0] + across[0] * width * 0.5, base[1] + across[1] * width * 0.5),
        (mid[0] + across[0] * width, mid[1] + across[1] * width),
        tip,
        (mid[0] - across[0] * width, mid[1] - across[1] * width),
        (base[0] - across[0] * width * 0.5, base[1] - across[1] * width * 0.5),
    ]
    sk.polygon(leaf, (55, 135, 40))
    sk.line([base, tip], (40, 100, 30), 0.02, cover=False)


def _draw_pear_green(sk: _Sketch, rng: np.random.Generator) -> None:
    body = (165, 198, 68)
    # Small neck on a large bowl, joined by a trapezoid.
    sk.ellipse((0.0, -0.42), 0.42, 0.42, body)
    sk.ellipse((0.0, 0.3), 0.72, 0.7, body)
    sk.polygon([(-0.41, -0.4), (0.41, -0.4), (0.7, 0.25), (-0.7, 0.25)], body)
    sk.speckle(rng, 180, 0.016, [(125, 145, 55), (185, 165, 80)])
    _stem(sk, (0.0, -0.8), (0.14, -1.18), 0.07)


def _draw_plum(sk: _Sketch, rng: np.random.Generator) -> None:
    sk.ellipse((0.0, 0.0), 0.84, 0.92, (95, 32, 82))
    # The whitish "bloom" and the suture groove down one side.
    sk.speckle(rng, 500, 0.02, [(125, 85, 130), (110, 60, 105)])
    sk.soften(0.01)
    suture = _arc((-1.2, 0.0), 1.5, -37, 37, 24)
    sk.line(suture, (62, 18, 55), 0.05, cover=False)
    _stem(sk, (0.0, -0.88), (0.06, -1.1), 0.06)


def _draw_lime(sk: _Sketch, rng: np.random.Generator) -> None:
    sk.ellipse((0.0, 0.0), 0.8, 0.76, (115, 178, 42))
    sk.speckle(rng, 700, 0.014, [(92, 150, 32), (150, 205, 80)])
    sk.soften(0.008)
    sk.ellipse((0.0, -0.76), 0.07, 0.05, (85, 115, 35))


# Explicit order (not derived from a dict) so CLASSES never depends on code layout.
_FRUIT_MODELS: tuple[tuple[str, Callable[[_Sketch, np.random.Generator], None], RGB], ...] = (
    # (class name, drawing function, edge colour for pixels just outside the silhouette)
    ("Apple Red", _draw_apple_red, (120, 15, 22)),
    ("Banana", _draw_banana, (190, 160, 40)),
    ("Grape White", _draw_grape_white, (150, 170, 70)),
    ("Kiwi", _draw_kiwi, (100, 72, 42)),
    ("Lemon", _draw_lemon, (210, 185, 35)),
    ("Lime", _draw_lime, (85, 140, 30)),
    ("Orange", _draw_orange, (210, 110, 15)),
    ("Pear Green", _draw_pear_green, (130, 160, 50)),
    ("Plum", _draw_plum, (65, 20, 58)),
    ("Strawberry", _draw_strawberry, (160, 15, 28)),
)
CLASSES: tuple[str, ...] = tuple(name for name, _, _ in _FRUIT_MODELS)


def _class_seed(class_name: str) -> int:
    # crc32 of the name, not hash(): stable across processes and independent of class order.
    return zlib.crc32(class_name.encode("utf-8"))


@dataclass(frozen=True)
class _Model:
    """A class's fruit model, drawn once and then photographed from many angles."""

    image: Image.Image  # premultiplied RGBa at 4x resolution
    radius_px: float  # distance from the centre to the farthest covered pixel


def _build_model(class_name: str) -> _Model:
    _, draw, edge_colour = next(entry for entry in _FRUIT_MODELS if entry[0] == class_name)
    sketch = _Sketch(edge_colour)
    draw(sketch, np.random.default_rng([_SEED_SALT, _class_seed(class_name)]))
    model = sketch.colour.convert("RGBA")
    model.putalpha(sketch.coverage)
    # Premultiplied alpha keeps resampling from bleeding background colour into edges.
    return _Model(image=model.convert("RGBa"), radius_px=_covered_radius(sketch.coverage))


def _covered_radius(coverage: Image.Image) -> float:
    rows, cols = np.nonzero(np.asarray(coverage))
    return float(np.hypot(cols + 0.5 - _MODEL_CENTRE, rows + 0.5 - _MODEL_CENTRE).max())


# ---------------------------------------------------------------------------
# Viewing a model: pose, lighting and compositing
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    """How one photo sees the fruit model."""

    angle_deg: float  # turntable rotation
    scale: float
    squash: float  # horizontal foreshortening, as if the fruit leaned slightly
    offset: tuple[float, float]  # in output pixels
    light: tuple[float, float, float]  # unit vector towards the lamp
    brightness: float
    tint: tuple[float, float, float]  # per-channel gain: camera white balance drift


# Test views start at a different phase so they are not copies of training angles.
_SPLIT_PHASE_DEG = {"Training": 0.0, "Test": 17.0}


def _view_for(class_name: str, split: str, index: int, count: int) -> _View:
    rng = np.random.default_rng([_SEED_SALT, _class_seed(class_name), SPLITS.index(split), index])
    light = np.array([-0.45 + rng.normal(0, 0.06), -0.55 + rng.normal(0, 0.06), 0.7])
    light /= np.linalg.norm(light)
    return _View(
        angle_deg=_SPLIT_PHASE_DEG[split] + index * 360.0 / count + rng.uniform(-6, 6),
        scale=rng.uniform(0.88, 1.0),
        squash=rng.uniform(0.92, 1.0),
        offset=(rng.uniform(-_MAX_OFFSET, _MAX_OFFSET), rng.uniform(-_MAX_OFFSET, _MAX_OFFSET)),
        light=(float(light[0]), float(light[1]), float(light[2])),
        brightness=rng.uniform(0.92, 1.06),
        tint=tuple(rng.uniform(0.97, 1.03, size=3).tolist()),  # type: ignore[arg-type]
    )


def _pose(model: _Model, view: _View) -> Image.Image:
    """Rotate, scale and shift the model in one affine resampling pass.

    Like Fruits-360, where every fruit was scaled to fill the frame, each model
    is fitted so its farthest point (at any rotation) reaches _FIT_RADIUS.
    """
    theta = math.radians(view.angle_deg)
    rotate = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    fit = _FIT_RADIUS * SUPERSAMPLE / model.radius_px
    forward = fit * view.scale * rotate @ np.diag([view.squash, 1.0])
    # Pillow maps output pixels back to input pixels, so it needs the inverse transform.
    inverse = np.linalg.inv(forward)
    out_centre = np.array([_MODEL_CENTRE, _MODEL_CENTRE]) + np.array(view.offset) * SUPERSAMPLE
    shift = np.array([_MODEL_CENTRE, _MODEL_CENTRE]) - inverse @ out_centre
    coefficients = (inverse[0, 0], inverse[0, 1], shift[0], inverse[1, 0], inverse[1, 1], shift[1])
    return model.image.transform(
        model.image.size,
        Image.Transform.AFFINE,
        coefficients,
        resample=_POSE_RESAMPLING,
        fillcolor=(0, 0, 0, 0),
    )


def _lighting(coverage: Image.Image, view: _View) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse and specular light for a silhouette, treating it as a soft dome.

    Blurring the silhouette gives a height field that is high in the middle and
    falls off at the edges; its slope stands in for the surface normal. That
    works for any outline (a banana as well as an orange) with no 3D model.
    """
    blur_px = 0.32 * _UNIT / SUPERSAMPLE
    height = np.asarray(coverage.filter(ImageFilter.GaussianBlur(blur_px)), dtype=np.float32) / 255.0
    height = np.sqrt(height)  # rounder profile, closer to a sphere than a cone
    slope_y, slope_x = np.gradient(height)
    steepness = 2.2 * blur_px
    normal = np.stack([-slope_x * steepness, -slope_y * steepness, np.ones_like(height)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)

    light = np.array(view.light, dtype=np.float32)
    ambient = 0.45
    diffuse = ambient + (1.0 - ambient) * np.clip(normal @ light, 0.0, 1.0)
    halfway = light + np.array([0.0, 0.0, 1.0], dtype=np.float32)  # viewer looks along +z
    halfway /= np.linalg.norm(halfway)
    specular = 0.35 * np.clip(normal @ halfway, 0.0, 1.0) ** 40
    return diffuse, specular


def _render(model: _Model, view: _View) -> Image.Image:
    """One 100x100 photo of the model on a white background."""
    posed = _pose(model, view)
    small = posed.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS).convert("RGBA")
    rgba = np.asarray(small, dtype=np.float32) / 255.0
    colour, alpha = rgba[..., :3], rgba[..., 3:]
    diffuse, specular = _lighting(small.getchannel("A"), view)
    lit = colour * (diffuse[..., None] * view.brightness) * np.array(view.tint, dtype=np.float32)
    lit = lit + specular[..., None]
    photo = lit * alpha + 1.0 * (1.0 - alpha)  # white backdrop
    return Image.fromarray(np.round(np.clip(photo, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------
# Writing the sample
# ---------------------------------------------------------------------------


def _is_complete(root: Path) -> bool:
    marker = root / MARKER_NAME
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == SAMPLE_VERSION


def _holds_foreign_data(root: Path) -> bool:
    """Whether root holds something other than an (outdated) sample of ours."""
    if not root.exists():
        return False
    if (root / MARKER_NAME).is_file():
        return False
    # Hidden files such as .gitkeep do not count as data.
    return any(not entry.name.startswith(".") for entry in root.iterdir())


def _write_images(target: Path, train_per_class: int, test_per_class: int) -> int:
    counts = {"Training": train_per_class, "Test": test_per_class}
    written = 0
    for class_name in CLASSES:
        model = _build_model(class_name)
        for split in SPLITS:
            class_dir = target / split / class_name
            class_dir.mkdir(parents=True, exist_ok=True)
            for index in range(counts[split]):
                photo = _render(model, _view_for(class_name, split, index, counts[split]))
                # Fixed encoder settings: no optimize/progressive passes, full-resolution chroma.
                photo.save(
                    class_dir / f"{index}_100.jpg",
                    format="JPEG",
                    quality=JPEG_QUALITY,
                    subsampling=0,
                    optimize=False,
                    progressive=False,
                )
                written += 1
    return written


def _swap_into_place(staging: Path, root: Path) -> None:
    """Replace root with staging, so readers see either the old or the new sample."""
    if not root.exists():
        os.replace(staging, root)
        return
    retired = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
    os.replace(root, retired / root.name)
    os.replace(staging, root)
    shutil.rmtree(retired, ignore_errors=True)


def generate_sample(
    root: str | Path,
    train_per_class: int = TRAIN_PER_CLASS,
    test_per_class: int = TEST_PER_CLASS,
    overwrite: bool = False,
) -> int:
    """Write the synthetic Fruits-360-like sample under ``root``.

    Returns the number of images written: 0 when ``root`` already holds a
    complete sample of this version and ``overwrite`` is false.

    Images are written to a temporary sibling directory that is renamed into
    place only once complete, so an interrupted run never leaves half a sample.

    Raises:
        ValueError: if a per-class count is below 1.
        FileExistsError: if ``root`` holds other data (e.g. a real Fruits-360
            copy) and ``overwrite`` is false.
    """
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"need at least one image per class and split, got {train_per_class=} {test_per_class=}")
    root = Path(root)
    if _is_complete(root) and not overwrite:
        return 0
    if _holds_foreign_data(root) and not overwrite:
        raise FileExistsError(
            f"{root} already holds data that is not a generated sample; pass overwrite=True to replace it"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.partial-"))
    try:
        written = _write_images(staging, train_per_class, test_per_class)
        # The marker goes in last, so its presence means every image is there.
        (staging / MARKER_NAME).write_text(SAMPLE_VERSION + "\n", encoding="utf-8")
        _swap_into_place(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.sample",
        description="Write a small synthetic Fruits-360-like image sample.",
    )
    parser.add_argument("root", nargs="?", default=str(DEFAULT_ROOT), help=f"output folder (default: {DEFAULT_ROOT})")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if a complete sample exists")
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS, metavar="N")
    parser.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS, metavar="N")
    args = parser.parse_args(argv)

    if _holds_foreign_data(Path(args.root)) and not args.overwrite:
        # `make run` on a folder the user filled: their photos are the input, not in the way.
        print(f"{args.root} holds your own photos: using them, no sample generated")
        return 0
    try:
        written = generate_sample(args.root, args.train_per_class, args.test_per_class, args.overwrite)
    except ValueError as error:
        parser.error(str(error))
    if written:
        print(f"Wrote {written} images ({len(CLASSES)} classes) to {args.root}")
    else:
        print(f"A complete sample already exists in {args.root}; nothing written (--overwrite regenerates)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
