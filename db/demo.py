"""Demo data: a synthetic sneaker catalogue drawn with Pillow, for a fresh machine with no internet.

Every sneaker is drawn from the side. The *model* is told only by its silhouette (collar height,
sole shape, toe shape, heel, panels), the *SKU* only by its colours, so the data exercises both
stages of the cascade: stage 1 sees shape in grayscale, stage 2 sees colour. The images vary in
scale, position, flip, rotation, background and file format like product photos do, a few are
junk (shoe boxes, size charts, t-shirts, logo cards), every one carries the weak label of a
fake product page (a few of them wrong), and about a fifth are labelled.

Everything is a pure function of the seed: the same seed gives byte-identical images.

    from db.demo import generate, load_demo
    for item in generate(seed=0, per_colourway=30): ...
    load_demo(open_catalogue())            # python -m db demo; python -m db.demo sheet.png to look
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from sqlalchemy import func, select

from db import ops
from db.catalogue import Catalogue
from db.images import decode_image
from db.models import Image as ImageRow
from db.models import ImageSource as ImageSourceRow
from db.ops import CatalogueError, Source

RGB = tuple[int, int, int]
Point = tuple[float, float]
Shade = tuple[str, float]  # (colour role, brightness factor)

DEMO_HOST = "https://demo.skulab.invalid"
JUNK_FRACTION = 0.05  # of all images
WRONG_WEAK_FRACTION = 0.03  # of sneaker images: the page claims another colourway
LABELLED_FRACTION = 0.20  # of sneaker images: labelled by "demo", always correctly

# Colour names as they appear in colourway strings.
COLOURS: dict[str, RGB] = {
    "White": (246, 246, 243),
    "Black": (30, 30, 33),
    "Sail": (236, 229, 208),
    "Varsity Red": (190, 22, 46),
    "University Blue": (123, 170, 222),
    "Game Royal": (30, 72, 172),
    "Midnight Navy": (30, 38, 72),
    "Pine Green": (24, 96, 64),
    "Medium Olive": (124, 126, 72),
    "Grey Fog": (194, 196, 196),
    "Wolf Grey": (158, 160, 165),
    "Cool Grey": (118, 120, 128),
    "Gum Light Brown": (196, 140, 84),
    "Flax": (214, 176, 112),
    "Wheat": (186, 134, 62),
    "University Gold": (250, 182, 32),
    "Volt": (206, 240, 44),
    "Infrared": (246, 72, 82),
    "Court Purple": (94, 50, 140),
}

_ROLES = ("upper", "overlay", "swoosh", "midsole", "outsole", "laces", "accent")


@dataclass(frozen=True)
class Silhouette:
    """The shape of one sneaker model, in shoe units: x from heel (0) to toe (100), y up from the ground."""

    collar_back: float  # collar height at the heel
    collar_dip: float  # lowest point of the ankle opening
    collar_front: float  # collar height where the tongue starts
    tongue_top: float
    throat: Point  # top of the lace line
    vamp: Point  # bottom (front) of the lace line
    toe_top: Point  # highest point of the toe box
    toe_tip: Point  # front-most point of the upper
    toe_round: float  # 0: a pointed, low toe; 1: a tall, rounded toe box
    heel_lean: float  # x of the collar back (the heel leans forward as it rises)
    sole_heel: float  # midsole top at the heel
    sole_toe: float  # midsole top at the toe
    outsole: float  # outsole thickness
    toe_spring: float  # how far the sole lifts at the toe
    sole_kind: str  # "cup", "stitched", "vulc", "wedge" or "air"
    laces: int
    swoosh: tuple[Point, Point]  # (hook, tail) of the swoosh on the lateral side
    heel_edge: float  # x where the heel overlay ends at the sole; 0 for none
    # Extra parts: toe_cap, eyestay, collar, mudguard, perforations, wings, strap, heel_tab, heel_ridges.
    panels: frozenset[str]


@dataclass(frozen=True)
class DemoColourway:
    """One SKU: a style code, the colourway string a product page shows, and the colours drawn."""

    style_code: str
    colourway: str
    title: str  # the product page title
    upper: str
    overlay: str
    swoosh: str
    midsole: str
    outsole: str
    laces: str
    accent: str

    def rgb(self, role: str) -> RGB:
        return COLOURS[getattr(self, role)]


@dataclass(frozen=True)
class DemoModel:
    name: str
    slug: str  # used in the fake page URLs
    silhouette: Silhouette
    colourways: tuple[DemoColourway, ...]

    @property
    def prefix(self) -> str:
        return self.colourways[0].style_code.split("-")[0]


@dataclass(frozen=True)
class DemoImage:
    data: bytes
    name: str  # file name with extension
    model: str | None  # the truth (None for junk)
    style_code: str | None
    colourway: str | None
    junk: bool
    labelled: bool  # ingest with a label (always the truth, never junk)
    weak_model: str | None  # what the fake product page claims
    weak_sku: str | None
    weak_title: str | None
    page_url: str
    image_url: str
    weak_colourway: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")


def _sku(
    code: str, name: str, audience: str, roles: tuple[str, str, str, str, str, str, str]
) -> tuple[str, str, str, tuple[str, ...]]:
    return code, name, audience, roles


def _model(
    name: str,
    page_title: str,
    silhouette: Silhouette,
    skus: Sequence[tuple[str, str, str, tuple[str, ...]]],
) -> DemoModel:
    colourways = tuple(
        DemoColourway(
            code, colourway, f"{page_title} {audience}", **dict(zip(_ROLES, roles, strict=True))
        )
        for code, colourway, audience, roles in skus
    )
    return DemoModel(name, _slug(page_title), silhouette, colourways)


_M, _W, _K = "Men's Shoes", "Women's Shoes", "Big Kids' Shoes"


@lru_cache(maxsize=1)
def _catalogue() -> tuple[DemoModel, ...]:
    # Roles: upper, overlay, swoosh, midsole, outsole, laces, accent.
    dunk = Silhouette(
        collar_back=41, collar_dip=33, collar_front=37, tongue_top=46, throat=(40, 38), vamp=(67, 23.5),
        toe_top=(84, 21.5), toe_tip=(99, 14), toe_round=1.0, heel_lean=4, sole_heel=9, sole_toe=9, outsole=2.6,
        toe_spring=2.5, sole_kind="cup", laces=6, swoosh=((68, 12), (17, 28)), heel_edge=27,
        panels=frozenset({"toe_cap", "eyestay"}),
    )  # fmt: skip
    jordan = Silhouette(
        collar_back=63, collar_dip=58, collar_front=60, tongue_top=67, throat=(37, 59), vamp=(67, 22),
        toe_top=(83, 18), toe_tip=(99, 11.5), toe_round=0.7, heel_lean=7, sole_heel=9.5, sole_toe=9, outsole=2.8,
        toe_spring=2.5, sole_kind="cup", laces=8, swoosh=((66, 13), (20, 36)), heel_edge=26,
        panels=frozenset({"toe_cap", "eyestay", "collar", "wings"}),
    )  # fmt: skip
    af1 = Silhouette(
        collar_back=47, collar_dip=42, collar_front=44, tongue_top=52, throat=(40, 43), vamp=(68, 24),
        toe_top=(84, 23), toe_tip=(99, 16.5), toe_round=1.0, heel_lean=5, sole_heel=13, sole_toe=12, outsole=3,
        toe_spring=2, sole_kind="stitched", laces=7, swoosh=((69, 15), (22, 31)), heel_edge=24,
        panels=frozenset({"toe_cap", "eyestay", "perforations", "strap"}),
    )  # fmt: skip
    blazer = Silhouette(
        collar_back=53, collar_dip=49, collar_front=51, tongue_top=58, throat=(36, 50), vamp=(70, 17),
        toe_top=(86, 14), toe_tip=(100.5, 7.5), toe_round=0.25, heel_lean=6, sole_heel=5.5, sole_toe=5, outsole=1.6,
        toe_spring=3, sole_kind="vulc", laces=7, swoosh=((76, 8), (9, 37)), heel_edge=0,
        panels=frozenset({"toe_cap", "heel_tab"}),
    )  # fmt: skip
    am90 = Silhouette(
        collar_back=35, collar_dip=30, collar_front=33, tongue_top=40, throat=(42, 34), vamp=(70, 24),
        toe_top=(86, 20.5), toe_tip=(100, 15), toe_round=0.5, heel_lean=3, sole_heel=18, sole_toe=10, outsole=3.2,
        toe_spring=3, sole_kind="air", laces=6, swoosh=((64, 22), (30, 30)), heel_edge=24,
        panels=frozenset({"mudguard", "eyestay", "heel_tab", "heel_ridges"}),
    )  # fmt: skip
    cortez = Silhouette(
        collar_back=31, collar_dip=25, collar_front=28, tongue_top=35, throat=(41, 29), vamp=(71, 16),
        toe_top=(86, 13), toe_tip=(101, 7), toe_round=0.15, heel_lean=3, sole_heel=14, sole_toe=5, outsole=1.8,
        toe_spring=3.5, sole_kind="wedge", laces=6, swoosh=((71, 10), (12, 25)), heel_edge=22,
        panels=frozenset({"toe_cap", "heel_tab"}),
    )  # fmt: skip
    return (
        _model("Nike Dunk Low", "Nike Dunk Low Retro", dunk, [
            _sku("DD1391-100", "White/Black-White", _M, ("White", "Black", "Black", "White", "Black", "White", "Black")),
            _sku("DD1391-102", "White/University Blue-White", _M, ("White", "University Blue", "University Blue", "White", "University Blue", "White", "University Blue")),
            _sku("DD1391-600", "White/Varsity Red-White", _M, ("White", "Varsity Red", "Varsity Red", "White", "Varsity Red", "White", "Varsity Red")),
            _sku("DD1391-300", "Sail/Medium Olive-Gum Light Brown", _M, ("Sail", "Medium Olive", "Medium Olive", "Sail", "Gum Light Brown", "Sail", "Medium Olive")),
            _sku("DD1391-103", "White/Grey Fog", _W, ("White", "Grey Fog", "Grey Fog", "White", "Grey Fog", "White", "Grey Fog")),
        ]),
        _model("Air Jordan 1 High", "Air Jordan 1 Retro High OG", jordan, [
            _sku("555088-101", "White/Varsity Red-Black", _M, ("White", "Varsity Red", "Black", "White", "Varsity Red", "White", "Black")),
            _sku("555088-041", "Black/Game Royal-White", _M, ("Black", "Game Royal", "Black", "White", "Game Royal", "Black", "Black")),
            _sku("555088-134", "White/University Blue-Black", _M, ("White", "University Blue", "Black", "White", "University Blue", "White", "Black")),
            _sku("555088-030", "Black/Pine Green-Sail", _M, ("Black", "Pine Green", "Black", "Sail", "Pine Green", "Black", "Black")),
            _sku("555088-701", "White/University Gold-Black", _K, ("White", "University Gold", "Black", "White", "Black", "White", "University Gold")),
        ]),
        _model("Air Force 1 Mid", "Nike Air Force 1 Mid '07", af1, [
            _sku("315123-111", "White/White", _M, ("White", "White", "White", "White", "White", "White", "White")),
            _sku("315123-001", "Black/Black", _M, ("Black", "Black", "Black", "Black", "Black", "Black", "Black")),
            _sku("315123-203", "Flax/Wheat-Gum Light Brown", _M, ("Flax", "Wheat", "Wheat", "Gum Light Brown", "Gum Light Brown", "Wheat", "Wheat")),
            _sku("315123-400", "Midnight Navy/White", _M, ("Midnight Navy", "Midnight Navy", "White", "White", "Midnight Navy", "White", "White")),
            _sku("315123-600", "White/Varsity Red", _W, ("White", "White", "Varsity Red", "White", "Varsity Red", "White", "Varsity Red")),
        ]),
        _model("Nike Blazer Mid", "Nike Blazer Mid '77 Vintage", blazer, [
            _sku("BQ6806-100", "White/Black", _M, ("White", "White", "Black", "Sail", "Sail", "White", "Black")),
            _sku("BQ6806-102", "White/Pine Green", _M, ("White", "Pine Green", "Pine Green", "Sail", "Sail", "White", "Pine Green")),
            _sku("BQ6806-600", "White/Varsity Red", _M, ("White", "Varsity Red", "Varsity Red", "Sail", "Sail", "White", "Varsity Red")),
            _sku("BQ6806-002", "Black/White-Sail", _M, ("Black", "Black", "White", "Sail", "Sail", "Black", "White")),
            _sku("BQ6806-400", "Midnight Navy/White-Sail", _W, ("Midnight Navy", "Midnight Navy", "White", "Sail", "Sail", "White", "White")),
        ]),
        _model("Air Max 90", "Nike Air Max 90", am90, [
            _sku("CN8490-100", "White/Cool Grey-Infrared", _M, ("White", "Cool Grey", "Infrared", "White", "Cool Grey", "White", "Infrared")),
            _sku("CN8490-002", "Black/White-Cool Grey", _M, ("Black", "Black", "White", "White", "Black", "Black", "Cool Grey")),
            _sku("CN8490-101", "White/White-Wolf Grey", _M, ("White", "White", "White", "White", "Wolf Grey", "White", "Wolf Grey")),
            _sku("CN8490-400", "White/Game Royal-Grey Fog", _M, ("White", "Game Royal", "Game Royal", "White", "Game Royal", "White", "Grey Fog")),
            _sku("CN8490-701", "White/Volt-Black", _W, ("White", "Volt", "Black", "White", "Black", "White", "Volt")),
        ]),
        _model("Nike Cortez", "Nike Cortez", cortez, [
            _sku("DM4044-100", "White/Varsity Red-Game Royal", _M, ("White", "White", "Varsity Red", "White", "Varsity Red", "White", "Game Royal")),
            _sku("DM4044-001", "Black/White", _M, ("Black", "Black", "White", "White", "Black", "White", "Black")),
            _sku("DM4044-200", "Sail/Pine Green-Gum Light Brown", _M, ("Sail", "Sail", "Pine Green", "Sail", "Gum Light Brown", "Sail", "Pine Green")),
            _sku("DM4044-400", "Game Royal/White", _M, ("Game Royal", "Game Royal", "White", "White", "Game Royal", "White", "White")),
            _sku("DM4044-105", "White/Court Purple-Volt", _W, ("White", "White", "Court Purple", "White", "Court Purple", "White", "Volt")),
        ]),
    )  # fmt: skip


def demo_catalogue_spec() -> list[DemoModel]:
    """The sneaker models of the demo data and their colourways (names, style codes, colours)."""
    return list(_catalogue())


# --------------------------------------------------------------------------------------------
# Geometry: every part of a sneaker as polygons in shoe units.


@dataclass(frozen=True)
class _Part:
    points: tuple[Point, ...]
    fill: Shade | None = None
    outline: Shade | None = None
    width: float = 0.45  # outline or line width, shoe units
    closed: bool = True  # False: a polyline drawn with `outline` colour


@dataclass(frozen=True)
class _Layers:
    behind: list[_Part]  # tongue, pull tabs: drawn first
    upper: list[_Part]  # the upper's outline (the clip for upper_details)
    upper_details: list[_Part]  # panels, swoosh, logos: clipped to the upper
    front: list[_Part]  # laces, strap: drawn over the upper, unclipped
    sole: list[_Part]  # the sole's outline (the clip for sole_details)
    sole_details: list[_Part]


def _smooth(
    points: Sequence[Point], sharp: Sequence[int] = (), closed: bool = True, iterations: int = 3
) -> list[Point]:
    """Chaikin corner cutting; vertices listed in `sharp` (and the ends of an open line) stay put."""
    pts = list(points)
    keep = [i in sharp for i in range(len(pts))]
    if not closed:
        keep[0] = keep[-1] = True
    for _ in range(iterations):
        n = len(pts)
        out: list[Point] = []
        out_keep: list[bool] = []
        for i, (x, y) in enumerate(pts):
            if keep[i]:
                out.append((x, y))
                out_keep.append(True)
                continue
            px, py = pts[i - 1]
            nx, ny = pts[(i + 1) % n]
            out += [
                (0.25 * px + 0.75 * x, 0.25 * py + 0.75 * y),
                (0.75 * x + 0.25 * nx, 0.75 * y + 0.25 * ny),
            ]
            out_keep += [False, False]
        pts, keep = out, out_keep
    return pts


def _lerp(a: Point, b: Point, t: float) -> Point:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _circle(cx: float, cy: float, r: float, n: int = 14) -> tuple[Point, ...]:
    return tuple(
        (cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n))
        for i in range(n)
    )


def _offset_line(points: Sequence[Point], d: float) -> list[Point]:
    """The polyline moved sideways by d (positive: to the left of its direction)."""
    out = []
    for i, (x, y) in enumerate(points):
        ax, ay = points[max(i - 1, 0)]
        bx, by = points[min(i + 1, len(points) - 1)]
        dx, dy = bx - ax, by - ay
        norm = math.hypot(dx, dy) or 1.0
        out.append((x - dy / norm * d, y + dx / norm * d))
    return out


def _cubic(p0: Point, p1: Point, p2: Point, p3: Point, n: int = 10) -> list[Point]:
    out = []
    for i in range(n):
        t = i / n
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        out.append(
            (
                a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0],
                a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1],
            )
        )
    return out


# The Nike swoosh in its own frame: hook at (0, 0) pointing up on the left, tail at (1, 0.36).
_SWOOSH_LOGO: tuple[Point, ...] = tuple(
    _cubic((0.09, 0.30), (-0.06, 0.12), (0.02, -0.03), (0.16, 0.0))
    + _cubic((0.16, 0.0), (0.40, 0.05), (0.70, 0.20), (1.0, 0.36))
    + _cubic((1.0, 0.36), (0.70, 0.24), (0.40, 0.12), (0.22, 0.10))
    + _cubic((0.22, 0.10), (0.13, 0.09), (0.10, 0.18), (0.15, 0.26))
)


def swoosh_points(hook: Point, tail: Point, mirror: bool) -> tuple[Point, ...]:
    """The swoosh outline placed with its hook at `hook` and tail tip at `tail` (y up).

    `mirror` draws it as on a shoe's lateral side seen with the toe to the right (tail to the left).
    """
    h, t = complex(*hook), complex(*tail)
    ref = complex(1.0, 0.36)
    if mirror:
        a = (t - h) / ref.conjugate()
        return tuple(
            ((a * complex(x, y).conjugate() + h).real, (a * complex(x, y).conjugate() + h).imag)
            for x, y in _SWOOSH_LOGO
        )
    a = (t - h) / ref
    return tuple(
        ((a * complex(x, y) + h).real, (a * complex(x, y) + h).imag) for x, y in _SWOOSH_LOGO
    )


def _jitter(s: Silhouette, rng: np.random.Generator) -> Silhouette:
    """Small per-image changes of shape (a different size, a different photo), never enough to change the model."""
    j = rng.uniform(-1.0, 1.0, size=8)

    def pt(p: Point, dx: float, dy: float) -> Point:
        return (p[0] + dx, p[1] + dy)

    dc = 1.2 * j[0]
    return replace(
        s,
        collar_back=s.collar_back + dc,
        collar_dip=s.collar_dip + dc + 0.6 * j[1],
        collar_front=s.collar_front + dc,
        tongue_top=s.tongue_top + dc + 0.8 * j[2],
        throat=pt(s.throat, 0.8 * j[3], dc),
        vamp=pt(s.vamp, 1.0 * j[4], 0.5 * j[5]),
        toe_top=pt(s.toe_top, 0.8 * j[6], 0.6 * j[5]),
        toe_tip=pt(s.toe_tip, 0.4 * j[6], 0.4 * j[7]),
        swoosh=(pt(s.swoosh[0], 0.8 * j[7], 0.4 * j[1]), pt(s.swoosh[1], 1.0 * j[2], 0.6 * j[3])),
    )


def _sole_top(s: Silhouette, x: float) -> float:
    return s.sole_heel + (s.sole_toe - s.sole_heel) * min(max(x / 100.0, 0.0), 1.0)


def _sole_bottom(s: Silhouette, x: float) -> float:
    toe = min(max((x - 68.0) / 33.0, 0.0), 1.0)
    heel = min(max((5.0 - x) / 7.0, 0.0), 1.0)
    return s.toe_spring * toe**2 + 1.5 * heel**2


def _sneaker_layers(s: Silhouette) -> _Layers:
    hb, ht = s.sole_heel, s.sole_toe
    lean = s.heel_lean
    tx, ty = s.throat
    vx, vy = s.vamp
    dip_x = lean + 0.45 * (tx - lean)

    upper_outline = _smooth(
        [
            (3.0, hb - 4),
            (-0.8, hb + 0.25 * (s.collar_back - hb)),
            (lean - 1.5, s.collar_back - 2.5),
            (lean + 1.0, s.collar_back + 0.6),
            (dip_x, s.collar_dip),
            (tx - 5, s.collar_front),
            (tx, ty),
            _lerp(s.throat, s.vamp, 0.5),
            (vx, vy),
            s.toe_top,
            (s.toe_tip[0] - 1.0 - 3.0 * s.toe_round, s.toe_tip[1] + 1.5 + 4.0 * s.toe_round),
            s.toe_tip,
            (s.toe_tip[0] - 3, ht - 4),
        ],
        sharp=(0, 6, 12),
    )
    upper = [_Part(tuple(upper_outline), fill=("upper", 1.0))]
    upper_edge = [_Part(tuple(upper_outline), outline=("upper", 0.55), width=0.55, closed=True)]

    behind = [
        _Part(
            tuple(
                _smooth(
                    [
                        (tx - 7, s.collar_front - 5),
                        (tx - 6.5, s.tongue_top),
                        (tx + 1.5, s.tongue_top + 0.3),
                        (tx + 5, ty - 5),
                    ],
                    sharp=(0, 3),
                )
            ),
            fill=("upper", 0.93),
            outline=("upper", 0.6),
        )
    ]
    # A tongue label.
    behind.append(
        _Part(((tx - 5, s.tongue_top - 1.5), (tx - 0.5, s.tongue_top - 1.3), (tx, s.tongue_top - 5.5), (tx - 4.8, s.tongue_top - 5.7)),
              fill=("accent", 1.0), outline=("accent", 0.6), width=0.3)
    )  # fmt: skip
    if "heel_tab" in s.panels:
        cb = s.collar_back
        behind.append(
            _Part(tuple(_smooth([(lean + 3, cb - 6), (lean - 3.5, cb - 5.5), (lean - 3.8, cb + 3), (lean + 3.5, cb + 1.5)], sharp=(0, 3))),
                  fill=("accent", 1.0), outline=("accent", 0.55))
        )  # fmt: skip

    details: list[_Part] = []
    overlay = ("overlay", 1.0)
    edge = ("overlay", 0.6)
    if s.heel_edge:
        he = s.heel_edge
        details.append(
            _Part(
                tuple(
                    _smooth(
                        [(-20, -5), (he + 1, -5), (he, hb + 2), (he - 4, hb + 0.45 * (s.collar_back - hb)),
                         (lean + 9, s.collar_back - 4), (lean + 7, 120), (-20, 120)],
                        sharp=(0, 1, 5, 6),
                    )
                ),
                fill=overlay,
                outline=edge,
            )
        )  # fmt: skip
    if "collar" in s.panels:  # the ankle collar of a high top
        details.append(
            _Part(tuple(_smooth([(-20, 120), (-20, s.collar_back - 12), (14, s.collar_dip - 9), (tx - 1, ty - 8), (tx + 12, 120)], sharp=(0, 4))),
                  fill=("accent", 1.0), outline=("accent", 0.6))
        )  # fmt: skip
    collar_line = _smooth(
        [
            (lean - 2, s.collar_back - 2.2),
            (dip_x, s.collar_dip - 2.2),
            (tx - 5, s.collar_front - 2.2),
        ],
        closed=False,
    )
    details.append(_Part(tuple(collar_line), outline=("upper", 0.7), width=0.35, closed=False))
    if "mudguard" in s.panels:
        band = [
            (x, _sole_top(s, x) + 5.5 + 1.5 * math.sin(x / 100 * math.pi)) for x in range(-2, 80, 6)
        ]
        band += [(86, s.toe_top[1] - 4), (92, s.toe_top[1] - 2), (110, s.toe_top[1])]
        details.append(
            _Part(
                tuple(_smooth([(-20, -5), *band, (110, -5)], sharp=(0, len(band) + 1))),
                fill=overlay,
                outline=edge,
            )
        )
    if "toe_cap" in s.panels:
        sx = vx - 9
        details.append(
            _Part(tuple(_smooth([(sx, -5), (sx, ht + 2), (sx + 3, (vy + ht) / 2 + 1), (vx + 1, vy + 0.5), (vx + 8, 120), (130, 120), (130, -5)],
                                sharp=(0, 4, 5, 6))),
                  fill=overlay, outline=edge)
        )  # fmt: skip
    lace_line = [_lerp(s.throat, s.vamp, t / 6) for t in range(7)]
    if "eyestay" in s.panels:
        top = _offset_line(lace_line, 12)
        bottom = _offset_line(lace_line, -6)
        details.append(_Part(tuple(top + bottom[::-1]), fill=overlay, outline=edge))
    if "perforations" in s.panels:
        for i in range(4):
            for j in range(3):
                x, y = 80 + 4 * i, ht + 3.5 + 2.6 * j
                details.append(_Part(_circle(x + (j % 2) * 2, y, 0.55, 8), fill=("upper", 0.6)))
    if "heel_ridges" in s.panels:
        for k in range(4):
            y = hb + 5 + 3.2 * k
            details.append(
                _Part(
                    ((1, y), (s.heel_edge - 6 - k, y + 1.5)),
                    outline=("overlay", 0.6),
                    width=0.6,
                    closed=False,
                )
            )
    hook, tail = s.swoosh
    details.append(
        _Part(
            swoosh_points(hook, tail, mirror=True),
            fill=("swoosh", 1.0),
            outline=("swoosh", 0.6),
            width=0.35,
        )
    )
    if "wings" in s.panels:
        cx, cy = lean + 15, s.collar_back - 7
        details.append(_Part(_circle(cx, cy, 3.6, 16), outline=("accent", 0.4), width=0.45))
        for k in range(3):
            details.append(
                _Part(
                    ((cx - 2.4, cy + 0.8 - k * 0.9), (cx + 2.6, cy + 1.7 - k * 1.1)),
                    outline=("accent", 0.4),
                    width=0.35,
                    closed=False,
                )
            )
    for i in range(s.laces):  # eyelets
        ex, ey = _offset_line(
            [
                _lerp(s.throat, s.vamp, (i + 0.5) / s.laces - 0.01),
                _lerp(s.throat, s.vamp, (i + 0.5) / s.laces),
            ],
            -2.6,
        )[1]
        details.append(_Part(_circle(ex, ey, 0.65, 8), fill=("overlay", 0.45)))

    front: list[_Part] = []
    if "strap" in s.panels:
        top_edge = _smooth(
            [(lean - 1.5, s.collar_back - 5), (18, s.collar_dip - 4), (tx + 3, ty - 3)],
            closed=False,
        )
        bottom_edge = _offset_line(top_edge, -7)
        front.append(
            _Part(
                tuple(top_edge + bottom_edge[::-1]),
                fill=("accent", 1.0),
                outline=("accent", 0.55),
                width=0.55,
            )
        )
        front.append(
            _Part(
                tuple(_offset_line(top_edge, -1.2)),
                outline=("accent", 0.7),
                width=0.3,
                closed=False,
            )
        )
        front.append(
            _Part(
                tuple(_offset_line(top_edge, -5.8)),
                outline=("accent", 0.7),
                width=0.3,
                closed=False,
            )
        )
    for i in range(s.laces):  # lace crossings over the throat
        t = (i + 0.5) / s.laces
        cx, cy = _lerp(s.throat, s.vamp, t)
        dx, dy = (vx - tx) / 100, (vy - ty) / 100
        norm = math.hypot(dx, dy)
        ux, uy = -dy / norm, dx / norm  # normal pointing up and forward
        if uy < 0:
            ux, uy = -ux, -uy
        a = (cx + 2.2 * ux - 1.0 * dx / norm, cy + 2.2 * uy - 1.0 * dy / norm)
        b = (cx - 1.2 * ux + 1.4 * dx / norm, cy - 1.2 * uy + 1.4 * dy / norm)
        front.append(_Part((a, b), outline=("laces", 0.5), width=2.1, closed=False))
        front.append(_Part((a, b), outline=("laces", 1.0), width=1.4, closed=False))

    sole_outline = [(x, _sole_bottom(s, x)) for x in np.linspace(1.0, 99.0, 15)]
    sole_outline += [(101.5, _sole_bottom(s, 101.0) + 0.5 * (ht - _sole_bottom(s, 101.0)) + 0.5)]
    sole_outline += [(x, _sole_top(s, x)) for x in np.linspace(100.0, 0.0, 12)]
    sole_outline += [(-1.8, 0.5 * (hb + 1.5))]
    sole_shape = _smooth(sole_outline, iterations=2)
    sole = [_Part(tuple(sole_shape), fill=("midsole", 1.0))]
    sole_edge = [_Part(tuple(sole_shape), outline=("midsole", 0.55), width=0.5)]

    xs = np.linspace(-3.0, 104.0, 24)
    outsole_top = [(x, _sole_bottom(s, x) + s.outsole) for x in xs]
    sole_details = [
        _Part(
            tuple([(104.0, -5.0), (-3.0, -5.0), *outsole_top]),
            fill=("outsole", 1.0),
            outline=("outsole", 0.6),
        )
    ]
    mid = [(x, 0.5 * (_sole_bottom(s, x) + s.outsole + _sole_top(s, x))) for x in xs]
    if s.sole_kind == "stitched":
        for x0 in np.arange(2.0, 99.0, 2.4):
            y0 = 0.45 * (_sole_bottom(s, x0) + s.outsole) + 0.55 * _sole_top(s, x0)
            sole_details.append(
                _Part(
                    ((x0, y0), (x0 + 1.3, y0)), outline=("midsole", 0.5), width=0.35, closed=False
                )
            )
    elif s.sole_kind == "vulc":
        sole_details.append(_Part(tuple(mid), outline=("accent", 1.0), width=0.8, closed=False))
    elif s.sole_kind == "wedge":
        stripe_top = _offset_line(mid, 1.0)
        stripe_bottom = _offset_line(mid, -1.0)
        sole_details.append(_Part(tuple(stripe_top + stripe_bottom[::-1]), fill=("accent", 1.0)))
    elif s.sole_kind == "air":
        y0 = s.outsole + 1.6
        y1 = _sole_top(s, 30) - 3.5
        window = tuple(_smooth([(7, y0), (30, y0), (30, y1), (7, y1 + 0.8)], iterations=2))
        sole_details.append(_Part(window, fill=("accent", 0.5), outline=("accent", 1.0), width=0.9))
        for x0 in (14.0, 22.0):
            sole_details.append(
                _Part(
                    ((x0, y0 + 0.6), (x0, y1 - 0.3)),
                    outline=("midsole", 0.8),
                    width=1.1,
                    closed=False,
                )
            )
        for x0 in np.arange(3.0, 97.0, 4.0):  # tread bumps
            yb = _sole_bottom(s, x0)
            sole_details.append(
                _Part(
                    ((x0, yb), (x0, yb + s.outsole * 0.6)),
                    outline=("outsole", 0.55),
                    width=0.4,
                    closed=False,
                )
            )
    else:  # plain cupsole: a groove along the sidewall
        sole_details.append(
            _Part(
                tuple((x, y + 1.0) for x, y in mid),
                outline=("midsole", 0.72),
                width=0.35,
                closed=False,
            )
        )
    return _Layers(behind, upper, details + upper_edge, front, sole, sole_details + sole_edge)


# --------------------------------------------------------------------------------------------
# Drawing: shoe units -> pixels, with rotation, flip and supersampling.


@dataclass(frozen=True)
class _Pose:
    scale: float  # output pixels per shoe unit
    angle: float  # degrees, counter-clockwise
    flip: bool  # toe to the left


def _rgb(r: float, g: float, b: float) -> RGB:
    return (min(255, max(0, int(r))), min(255, max(0, int(g))), min(255, max(0, int(b))))


def _shade(rgb: RGB, factor: float) -> RGB:
    r, g, b = rgb
    if factor < 1.0 and r + g + b < 180:  # darkening black shows nothing: lighten instead
        f = (1.0 - factor) * 0.55
        return _rgb(r + (255 - r) * f, g + (255 - g) * f, b + (255 - b) * f)
    return _rgb(r * factor, g * factor, b * factor)


def _palette(cw: DemoColourway, rng: np.random.Generator) -> dict[str, RGB]:
    """The colourway's colours under a slightly different light (a different photo)."""
    gr, gg, gb = (1.0 + rng.uniform(-0.05, 0.03) + rng.uniform(-0.015, 0.015, size=3)).tolist()
    out = {}
    for role in _ROLES:
        r, g, b = cw.rgb(role)
        out[role] = _rgb(r * gr, g * gg, b * gb)
    return out


def _to_pixels(points: Sequence[Point], pose: _Pose, ss: int, origin: Point) -> list[Point]:
    rad = math.radians(pose.angle)
    k = pose.scale * ss
    sign = -1.0 if pose.flip else 1.0
    xy = np.asarray(points, dtype=np.float64)
    u, v = sign * (xy[:, 0] - 50.0), -xy[:, 1]
    cos, sin = math.cos(rad), math.sin(rad)
    px = origin[0] + k * (u * cos + v * sin)
    py = origin[1] + k * (v * cos - u * sin)
    return list(zip(px.tolist(), py.tolist(), strict=True))


def _bounds(layers: _Layers, pose: _Pose) -> tuple[float, float, float, float]:
    pts = [
        p for part in layers.behind + layers.upper + layers.front + layers.sole for p in part.points
    ]
    px = _to_pixels(pts, pose, 1, (0.0, 0.0))
    xs, ys = [p[0] for p in px], [p[1] for p in px]
    return min(xs), min(ys), max(xs), max(ys)


def _draw_parts(
    draw: ImageDraw.ImageDraw,
    parts: Sequence[_Part],
    colours: dict[str, RGB],
    pose: _Pose,
    ss: int,
    origin: Point,
) -> None:
    k = pose.scale * ss
    for part in parts:
        xy = _to_pixels(part.points, pose, ss, origin)
        width = max(1, round(part.width * k))
        if not part.closed:
            assert part.outline is not None
            draw.line(
                xy,
                fill=_shade(colours[part.outline[0]], part.outline[1]),
                width=width,
                joint="curve",
            )
            continue
        if part.fill is not None:
            draw.polygon(xy, fill=_shade(colours[part.fill[0]], part.fill[1]))
        if part.outline is not None:
            draw.line(
                [*xy, xy[0]],
                fill=_shade(colours[part.outline[0]], part.outline[1]),
                width=width,
                joint="curve",
            )


def _draw_clipped(
    canvas: Image.Image,
    base: Sequence[_Part],
    details: Sequence[_Part],
    colours: dict[str, RGB],
    pose: _Pose,
    ss: int,
    origin: Point,
) -> None:
    """Draw `base` parts, then `details` clipped to the area of `base`."""
    _draw_parts(ImageDraw.Draw(canvas), base, colours, pose, ss, origin)
    outlines = [_to_pixels(part.points, pose, ss, origin) for part in base]
    xs = [x for xy in outlines for x, _ in xy]
    ys = [y for xy in outlines for _, y in xy]
    x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
    x1, y1 = min(canvas.width, math.ceil(max(xs)) + 1), min(canvas.height, math.ceil(max(ys)) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    local = (origin[0] - x0, origin[1] - y0)
    mask = Image.new("L", (x1 - x0, y1 - y0), 0)
    mask_draw = ImageDraw.Draw(mask)
    for xy in outlines:
        mask_draw.polygon([(x - x0, y - y0) for x, y in xy], fill=255)
    # Details are opaque: draw them on a copy of the region, keep the copy only inside the mask.
    region = canvas.crop((x0, y0, x1, y1))
    _draw_parts(ImageDraw.Draw(region), details, colours, pose, ss, local)
    canvas.paste(region, (x0, y0), mask)


def _rasterise(layers: _Layers, colours: dict[str, RGB], pose: _Pose, ss: int = 2) -> Image.Image:
    """The sneaker on a transparent RGBA patch just large enough to hold it."""
    x0, y0, x1, y1 = _bounds(layers, pose)
    pad = 2
    w, h = math.ceil(x1 - x0) + 2 * pad, math.ceil(y1 - y0) + 2 * pad
    origin = ((pad - x0) * ss, (pad - y0) * ss)
    canvas = Image.new("RGBA", (w * ss, h * ss), (0, 0, 0, 0))
    _draw_parts(ImageDraw.Draw(canvas), layers.behind, colours, pose, ss, origin)
    _draw_clipped(canvas, layers.upper, layers.upper_details, colours, pose, ss, origin)
    _draw_parts(ImageDraw.Draw(canvas), layers.front, colours, pose, ss, origin)
    _draw_clipped(canvas, layers.sole, layers.sole_details, colours, pose, ss, origin)
    return canvas.reduce(ss) if ss > 1 else canvas


def render_sneaker(
    model: DemoModel, colourway: DemoColourway, rng: np.random.Generator, size: int
) -> Image.Image:
    """One sneaker, side view with the toe to the right, centred on a transparent `size`x`size` RGBA image.

    `rng` varies the shape and light a little (as between two photos); the model's silhouette and
    the colourway's colours stay recognisable.
    """
    if size < 16:
        raise ValueError(f"render_sneaker: size must be at least 16 px, got {size}")
    layers = _sneaker_layers(_jitter(model.silhouette, rng))
    colours = _palette(colourway, rng)
    probe = _Pose(1.0, 0.0, False)
    x0, y0, x1, y1 = _bounds(layers, probe)
    scale = 0.92 * size / max(x1 - x0, y1 - y0)
    patch = _rasterise(layers, colours, _Pose(scale, 0.0, False))
    out = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    out.alpha_composite(patch, ((size - patch.width) // 2, (size - patch.height) // 2))
    return out


# --------------------------------------------------------------------------------------------
# Junk: things found on product pages that are not sneakers.


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _swoosh_px(cx: float, cy: float, width: float) -> list[Point]:
    """A swoosh logo (hook left) centred at (cx, cy) in pixel coordinates."""
    return [(cx + (x - 0.5) * width, cy - (y - 0.18) * width) for x, y in _SWOOSH_LOGO]


def _junk_shoebox(rng: np.random.Generator, w: int, h: int, bg: RGB) -> Image.Image:
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    base = [(238, 106, 34), (34, 34, 36), (176, 132, 88), (222, 60, 44)][int(rng.integers(4))]
    bw, bh, depth = (
        w * rng.uniform(0.55, 0.7),
        h * rng.uniform(0.28, 0.38),
        w * rng.uniform(0.12, 0.2),
    )
    x0, y1 = (w - bw - depth) / 2, h * rng.uniform(0.72, 0.82)
    y0 = y1 - bh
    front = [(x0, y0), (x0 + bw, y0), (x0 + bw, y1), (x0, y1)]
    top = [
        (x0, y0),
        (x0 + depth, y0 - depth * 0.6),
        (x0 + bw + depth, y0 - depth * 0.6),
        (x0 + bw, y0),
    ]
    side = [
        (x0 + bw, y0),
        (x0 + bw + depth, y0 - depth * 0.6),
        (x0 + bw + depth, y1 - depth * 0.6),
        (x0 + bw, y1),
    ]
    d.polygon(front, fill=base, outline=_shade(base, 0.6))
    d.polygon(top, fill=_shade(base, 1.12), outline=_shade(base, 0.6))
    d.polygon(side, fill=_shade(base, 0.8), outline=_shade(base, 0.6))
    d.line(
        [(x0, y0 + bh * 0.28), (x0 + bw, y0 + bh * 0.28)],
        fill=_shade(base, 0.7),
        width=max(1, w // 200),
    )
    logo = (255, 255, 255) if sum(base) < 600 else (30, 30, 30)
    d.polygon(_swoosh_px(x0 + bw * 0.42, y0 + bh * 0.62, bw * 0.45), fill=logo)
    lx, ly = x0 + bw + depth * 0.15, y1 - bh * 0.75
    d.rectangle([lx, ly, lx + depth * 0.7, ly + bh * 0.45], fill=(250, 250, 250))
    for i in range(int(depth * 0.6 / 3)):
        if rng.random() < 0.6:
            d.line(
                [(lx + 2 + 3 * i, ly + bh * 0.25), (lx + 2 + 3 * i, ly + bh * 0.4)],
                fill=(20, 20, 20),
                width=1,
            )
    d.text((lx + 2, ly + 2), "US 9", fill=(20, 20, 20), font=_font(max(8, int(bh * 0.09))))
    return img


def _junk_size_chart(rng: np.random.Generator, w: int, h: int, bg: RGB) -> Image.Image:
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    fs = max(8, h // 22)
    d.text(
        (w * 0.06, h * 0.04),
        str(rng.choice(["MEN'S SHOE SIZE CHART", "SIZE GUIDE", "FIND YOUR SIZE"])),
        fill=(17, 17, 17),
        font=_font(fs + 4),
    )
    cols = ["US", "UK", "EU", "CM"]
    rows = int(rng.integers(8, 13))
    top, row_h = h * 0.16, h * 0.78 / (rows + 1)
    col_w = w * 0.88 / len(cols)
    start = float(rng.choice([3.5, 6.0, 7.0]))
    for r in range(rows + 1):
        y = top + r * row_h
        if r % 2 == 1:
            d.rectangle([w * 0.06, y, w * 0.94, y + row_h], fill=(242, 242, 242))
        d.line([(w * 0.06, y), (w * 0.94, y)], fill=(200, 200, 200), width=1)
        us = start + 0.5 * (r - 1)
        values = (
            cols
            if r == 0
            else [f"{us:g}", f"{us - 0.5:g}", f"{us + 33:g}", f"{22.5 + 0.5 * (us - 3.5):.1f}"]
        )
        for c, text in enumerate(values):
            d.text(
                (w * 0.06 + c * col_w + 4, y + row_h * 0.2), text, fill=(17, 17, 17), font=_font(fs)
            )
    return img


def _junk_tshirt(rng: np.random.Generator, w: int, h: int, bg: RGB) -> Image.Image:
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    colour = COLOURS[str(rng.choice(list(COLOURS)))]
    s = min(w, h) * rng.uniform(0.75, 0.92)
    cx, cy = w / 2, h / 2
    shape = [(-0.18, -0.45), (-0.38, -0.38), (-0.5, -0.12), (-0.36, -0.04), (-0.3, -0.2), (-0.3, 0.45),
             (0.3, 0.45), (0.3, -0.2), (0.36, -0.04), (0.5, -0.12), (0.38, -0.38), (0.18, -0.45), (0.0, -0.36)]  # fmt: skip
    d.polygon(
        [(cx + x * s, cy + y * s) for x, y in shape], fill=colour, outline=_shade(colour, 0.6)
    )
    d.arc(
        [cx - 0.18 * s, cy - 0.56 * s, cx + 0.18 * s, cy - 0.34 * s],
        0,
        180,
        fill=_shade(colour, 0.6),
        width=max(1, int(s / 80)),
    )
    logo = (255, 255, 255) if sum(colour) < 450 else (30, 30, 30)
    d.polygon(_swoosh_px(cx + 0.12 * s, cy - 0.2 * s, 0.14 * s), fill=logo)
    return img


def _junk_logo_card(rng: np.random.Generator, w: int, h: int, bg: RGB) -> Image.Image:
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    colour = COLOURS[str(rng.choice(["Black", "Varsity Red", "Game Royal", "Volt", "Infrared"]))]
    m = min(w, h) * 0.08
    d.rounded_rectangle([m, h * 0.2, w - m, h * 0.8], radius=min(w, h) * 0.05, fill=colour)
    logo = (255, 255, 255) if sum(colour) < 500 else (20, 20, 20)
    d.polygon(_swoosh_px(w / 2, h * 0.47, (w - 2 * m) * 0.55), fill=logo)
    d.text(
        (m * 1.6, h * 0.68),
        str(rng.choice(["GIFT CARD", "JUST DO IT", "MEMBER"])),
        fill=logo,
        font=_font(max(8, h // 20)),
    )
    return img


_JUNK: dict[str, tuple[Callable[[np.random.Generator, int, int, RGB], Image.Image], str, str]] = {
    "shoebox": (_junk_shoebox, "Nike Shoe Box", "/help/packaging"),
    "size_chart": (_junk_size_chart, "Men's Shoe Size Chart", "/size-fit/mens-footwear"),
    "tshirt": (
        _junk_tshirt,
        "Nike Sportswear Club Men's T-Shirt",
        "/t/sportswear-club-mens-t-shirt",
    ),
    "logo_card": (_junk_logo_card, "Nike Digital Gift Card", "/gift-cards"),
}


# --------------------------------------------------------------------------------------------
# The photo: background, placement, format.


@dataclass(frozen=True)
class _Look:
    """How one image is shot and saved: decided before drawing, so names are known without drawing."""

    background: RGB | None  # None: transparent
    fmt: str  # PNG, JPEG or WEBP
    quality: int

    @property
    def ext(self) -> str:
        return {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[self.fmt]


def _look(seed: int, uid: int, junk: bool) -> _Look:
    """Backgrounds and formats as shops use them: white or light grey, some transparent PNG/WebP; mostly JPEG."""
    rng = np.random.default_rng([seed, 3, uid])
    r, f = rng.random(), rng.random()
    quality = int(rng.integers(65, 96))
    if not junk and r < 0.15:
        return _Look(None, "PNG" if f < 0.75 else "WEBP", quality)
    if r < 0.65:
        background: RGB = (255, 255, 255)
    else:
        g = int(rng.integers(230, 247))
        background = (g, g, g + int(rng.integers(0, 3)))
    return _Look(background, "JPEG" if f < 0.7 else "PNG" if f < 0.85 else "WEBP", quality)


def _encode(img: Image.Image, look: _Look) -> bytes:
    buf = io.BytesIO()
    if look.fmt == "PNG":
        img.save(buf, "PNG", compress_level=1)
    elif look.fmt == "WEBP":
        img.save(buf, "WEBP", quality=look.quality, method=0)
    else:
        img.save(buf, "JPEG", quality=look.quality)
    return buf.getvalue()


def _canvas_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    w = round(size * rng.uniform(0.75, 2.0))
    aspect = float(rng.choice([1.0, 1.0, 1.0, 0.75, 0.8, 1.25]))
    return w, round(w * aspect)


def _sneaker_photo(
    model: DemoModel, cw: DemoColourway, rng: np.random.Generator, size: int, bg: RGB | None
) -> Image.Image:
    """The sneaker placed on a canvas of about `size` px: scaled, moved, maybe flipped and tilted."""
    w, h = _canvas_size(rng, size)
    layers = _sneaker_layers(_jitter(model.silhouette, rng))
    colours = _palette(cw, rng)
    angle = float(rng.uniform(-7.0, 7.0)) if rng.random() < 0.6 else 0.0
    flip = bool(rng.random() < 0.5)
    x0, y0, x1, y1 = _bounds(layers, _Pose(1.0, angle, flip))
    fit = min((w - 6) / (x1 - x0), (h - 6) / (y1 - y0))
    pose = _Pose(fit * float(rng.uniform(0.7, 0.97)), angle, flip)
    patch = _rasterise(layers, colours, pose)
    px = int((w - patch.width) * rng.uniform(0.1, 0.9))
    py = int((h - patch.height) * rng.uniform(0.15, 0.85))
    canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0) if bg is None else (*bg, 255))
    if bg is not None and rng.random() < 0.6:  # a soft shadow under the sole
        blur = max(1, patch.height // 30)
        sw, sh = int(patch.width * 0.9), max(2, int(patch.height * 0.08))
        shadow = Image.new("L", (sw + 4 * blur, sh + 4 * blur), 0)
        ImageDraw.Draw(shadow).ellipse([2 * blur, 2 * blur, 2 * blur + sw, 2 * blur + sh], fill=90)
        shadow = shadow.filter(ImageFilter.BoxBlur(blur))
        sx, sy = px + int(patch.width * 0.05) - 2 * blur, py + int(patch.height * 0.9) - 2 * blur
        canvas.paste((60, 60, 60, 255), (sx, sy, sx + shadow.width, sy + shadow.height), shadow)
    canvas.alpha_composite(patch, (px, py))
    return canvas if bg is None else canvas.convert("RGB")


# --------------------------------------------------------------------------------------------
# The plan: which image is what, labelled, weakly labelled; then drawing them one by one.


@dataclass(frozen=True)
class _Planned:
    uid: int  # stable id: the image's content depends only on (seed, uid)
    model: DemoModel | None
    colourway: DemoColourway | None
    junk_kind: str | None
    labelled: bool
    weak: DemoColourway | None  # the SKU the page claims


def _plan(seed: int, per_colourway: int) -> list[_Planned]:
    if seed < 0:
        raise ValueError(f"demo seed must be >= 0, got {seed}")
    if per_colourway < 1:
        raise ValueError(f"per_colourway must be >= 1, got {per_colourway}")
    rng = np.random.default_rng([seed, 1])
    shoes: list[tuple[DemoModel, DemoColourway, bool]] = []
    n_labelled = min(per_colourway, max(1, round(LABELLED_FRACTION * per_colourway)))
    for model in _catalogue():
        for cw in model.colourways:
            chosen = set(rng.choice(per_colourway, size=n_labelled, replace=False).tolist())
            shoes += [(model, cw, i in chosen) for i in range(per_colourway)]
    n_wrong = max(1, round(WRONG_WEAK_FRACTION * len(shoes)))
    wrong = set(rng.choice(len(shoes), size=n_wrong, replace=False).tolist())
    planned = []
    for uid, (model, cw, labelled) in enumerate(shoes):
        weak = cw
        if uid in wrong:
            others = [o for o in model.colourways if o is not cw]
            weak = others[int(rng.integers(len(others)))]
        planned.append(_Planned(uid, model, cw, None, labelled, weak))
    n_junk = max(1, round(len(shoes) * JUNK_FRACTION / (1 - JUNK_FRACTION)))
    kinds = list(_JUNK)
    for j in range(n_junk):
        planned.append(_Planned(len(shoes) + j, None, None, kinds[j % len(kinds)], False, None))
    order = rng.permutation(len(planned))
    return [planned[i] for i in order]


def demo_count(per_colourway: int = 30) -> int:
    """How many images `generate` yields for this `per_colourway`."""
    return len(_plan(0, per_colourway))


def _urls(item: _Planned, ext: str) -> tuple[str, str]:
    """(page URL, image URL) of an image on the fake shop."""
    if item.junk_kind is not None:
        return (
            f"{DEMO_HOST}{_JUNK[item.junk_kind][2]}",
            f"{DEMO_HOST}/images/misc/{item.uid:05d}.{ext}",
        )
    assert item.weak is not None
    code = item.weak.style_code
    return (
        f"{DEMO_HOST}/t/{_slug(item.weak.title)}/{code}",
        f"{DEMO_HOST}/images/{code}/{item.uid:05d}.{ext}",
    )


def _draw(item: _Planned, seed: int, size: int) -> DemoImage:
    rng = np.random.default_rng([seed, 2, item.uid])
    look = _look(seed, item.uid, junk=item.junk_kind is not None)
    name = f"demo_{item.uid:05d}.{look.ext}"
    page_url, image_url = _urls(item, look.ext)
    if item.junk_kind is not None:
        assert look.background is not None
        draw_junk, title, _ = _JUNK[item.junk_kind]
        w, h = _canvas_size(rng, size)
        return DemoImage(
            data=_encode(draw_junk(rng, w, h, look.background), look), name=name, model=None, style_code=None,
            colourway=None, junk=True, labelled=False, weak_model=None, weak_sku=None, weak_title=title,
            page_url=page_url, image_url=image_url,
        )  # fmt: skip
    assert item.model is not None and item.colourway is not None and item.weak is not None
    photo = _sneaker_photo(item.model, item.colourway, rng, size, look.background)
    return DemoImage(
        data=_encode(photo, look), name=name, model=item.model.name, style_code=item.colourway.style_code,
        colourway=item.colourway.colourway, junk=False, labelled=item.labelled, weak_model=item.model.name,
        weak_sku=item.weak.style_code, weak_title=item.weak.title, page_url=page_url, image_url=image_url,
        weak_colourway=item.weak.colourway,
    )  # fmt: skip


def generate(seed: int = 0, per_colourway: int = 30, size: int = 320) -> Iterator[DemoImage]:
    """Yield the demo images lazily: `per_colourway` per SKU plus about 5% junk, in a shuffled order.

    `size` is the typical edge in pixels; images are 0.75x to 2x that. The same arguments give
    byte-identical images in the same order.
    """
    if size < 32:
        raise ValueError(f"demo image size must be at least 32 px, got {size}")
    for item in _plan(seed, per_colourway):
        yield _draw(item, seed, size)


@dataclass(frozen=True)
class DemoTruth:
    model: str | None
    style_code: str | None
    junk: bool


def demo_truth(seed: int = 0, per_colourway: int = 30) -> dict[str, DemoTruth]:
    """What each demo image really shows, by image URL, without drawing anything.

    For tests and for measuring suggestions on the unlabelled demo images: the catalogue
    itself holds only what a real crawl would (weak labels, ~20% labels).
    """
    out = {}
    for item in _plan(seed, per_colourway):
        _, image_url = _urls(item, _look(seed, item.uid, junk=item.junk_kind is not None).ext)
        cw = item.colourway
        out[image_url] = DemoTruth(
            item.model.name if item.model else None,
            cw.style_code if cw else None,
            item.junk_kind is not None,
        )
    return out


# --------------------------------------------------------------------------------------------
# Loading into the catalogue.


def _source(item: DemoImage, params: dict[str, int] | None = None) -> Source:
    return Source(
        kind="demo", spider=None, image_url=item.image_url, page_url=item.page_url,
        weak_model=item.weak_model, weak_sku=item.weak_sku, weak_colourway=item.weak_colourway,
        weak_title=item.weak_title, extra={"demo": params} if params else None,
    )  # fmt: skip


def _demo_state(cat: Catalogue, params: dict[str, int]) -> tuple[int, bool]:
    """(images in the catalogue, whether they are all from an unfinished demo with ``params``)."""
    with cat.read() as session:
        existing = session.scalar(select(func.count()).select_from(ImageRow)) or 0
        if not existing:
            return 0, True
        others = session.scalar(
            select(func.count())
            .select_from(ImageRow)
            .where(~ImageRow.sources.any(ImageSourceRow.kind == "demo"))
        )
        extras = session.scalars(
            select(ImageSourceRow.extra).where(ImageSourceRow.kind == "demo").limit(1)
        ).all()
    same = bool(extras) and (extras[0] or {}).get("demo") == params
    return existing, not others and same and existing < demo_count(params["per_colourway"])


def load_demo(
    cat: Catalogue,
    seed: int = 0,
    per_colourway: int = 30,
    progress: Callable[[int, int], None] | None = None,
    *,
    size: int = 320,
    batch: int = 50,
) -> dict[str, int]:
    """Fill an empty catalogue with the demo data; returns counts of what it added.

    Creates the demo's models and SKUs, then ingests every image with its weak label;
    labelled images (about 20%) get their true model and SKU (user "demo", how "import").
    The labelled images then get splits by the catalogue's one rule (``db.splits``), as an
    import with ``--split auto`` would. Refuses a catalogue that already holds images.
    Decoding and hashing happen outside the write transactions, which commit every `batch` images.
    A demo load that was interrupted is completed by the same call (same seed and sizes):
    images already there are known by their content hash and not added twice.
    """
    params = {"seed": seed, "per_colourway": per_colourway, "size": size}
    existing, resumable = _demo_state(cat, params)
    if existing and not resumable:
        raise CatalogueError(
            f"the catalogue in {cat.data_dir} already holds {existing} images; demo data goes only "
            "into an empty catalogue (point SKULAB_DATA at a new folder)"
        )
    models = demo_catalogue_spec()
    with cat.write() as session:
        for model in models:
            for cw in model.colourways:
                ops.get_or_create_sku(
                    session, cw.style_code, model.name, colourway=cw.colourway, title=cw.title
                )
    total = demo_count(per_colourway)
    counts = {"images": 0, "labelled": 0, "junk": 0, "weak_wrong": 0, "models": len(models),
              "skus": sum(len(m.colourways) for m in models)}  # fmt: skip
    if progress is not None:
        progress(0, total)
    pending: list[tuple[DemoImage, ops.PreparedImage]] = []
    done = [0]

    def flush() -> None:
        with cat.write() as session:
            for item, prepared in pending:
                label = {"model": item.model, "sku": item.style_code} if item.labelled else {}
                result = ops.ingest_prepared(
                    session, cat.store, prepared, _source(item, params), user="demo", how="import",
                    **label,
                )  # fmt: skip
                if result.created:
                    counts["images"] += 1
                    counts["labelled"] += item.labelled
                    counts["junk"] += item.junk
                    counts["weak_wrong"] += item.weak_sku != item.style_code and not item.junk
        done[0] += len(pending)
        pending.clear()
        if progress is not None:
            progress(done[0], total)

    for item in generate(seed=seed, per_colourway=per_colourway, size=size):
        pending.append((item, ops.prepare_image(item.data, item.name)))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    from db.splits import assign_splits

    with cat.write() as session:
        assign_splits(session, user="demo")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Write a contact sheet of the demo sneakers (python -m db.demo sheet.png) to look at them."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m db.demo", description=main.__doc__)
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell", type=int, default=200, help="edge of one picture, px")
    args = parser.parse_args(argv)
    contact_sheet(seed=args.seed, cell=args.cell).save(args.out)
    print(f"wrote {args.out}")
    return 0


def contact_sheet(seed: int = 0, cell: int = 200) -> Image.Image:
    """One row per model: each colourway drawn plainly, then three demo photos of that model; a last row of junk."""
    models = demo_catalogue_spec()
    cols = max(len(m.colourways) for m in models) + 3
    sheet = Image.new("RGB", (cols * cell, (len(models) + 1) * cell), (255, 255, 255))
    for r, model in enumerate(models):
        for c, cw in enumerate(model.colourways):
            drawn = render_sneaker(model, cw, np.random.default_rng([seed, c]), cell)
            sheet.paste(drawn, (c * cell, r * cell), drawn)
    placed: dict[str | None, int] = {}
    row_of = {m.name: r for r, m in enumerate(models)}
    for item in generate(seed=seed, per_colourway=3, size=cell):
        n = placed.get(item.model, 0)
        if n >= (cols if item.junk else 3):
            continue
        placed[item.model] = n + 1
        img = decode_image(item.data, item.name)
        img.thumbnail((cell - 4, cell - 4))
        col = n if item.junk else len(models[row_of[item.model or ""]].colourways) + n
        row = len(models) if item.junk else row_of[item.model or ""]
        sheet.paste(img, (col * cell + 2, row * cell + 2))
    return sheet


if __name__ == "__main__":
    raise SystemExit(main())
