"""Synthetic Aff-Wild2: procedural faces with exact AU/EXPR/VA ground truth, written in the ABAW2 layout.

Every test and the demo read it through the real Aff-Wild2 reading path (ARCHITECTURE.md, "Data flow").
Per video an identity (face shape, skin, hair, parts' placement, clothes, background) and smooth per-frame
nuisances (pose, scale, translation, lighting, noise, JPEG quality); expressions change in segments and drive
the 12 AUs through prototypes (FACS-like part motions, intensity-scaled); valence/arousal come from
expression-dependent circumplex points scaled by intensity. Labels have Aff-Wild2's gaps: videos missing from
task sets, sentinel runs, label lines without images, images without label lines, two-person videos.

    python -m pasn_jax.data.synthetic --out DIR [--videos N --frames M --size PX --seed S]
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import simplejpeg
from PIL import Image, ImageDraw

from pasn_jax.data import affwild2, labels

GENERATOR_VERSION = 2  # bump when the rendering or labelling changes (invalidates prepared caches)
MARKER_FILE = "synthetic_affwild2.json"  # written at the tree root; convert.py reads the source from it

# ---- Splits and missing labels (Aff-Wild2's gaps) ----
VAL_FRACTION = 0.25  # share of videos in Validation_Set; every video is a new person, so splits are disjoint
TWO_PERSON_PROB = 0.15  # chance that a video slot is a two-person clip, written as <name>_left/<name>_right
TASK_SET_COUNT_PROBS = (0.15, 0.25, 0.60)  # chance that a video is in 1, 2 or all 3 task sets
SENTINEL_RUN_PROB = 0.3  # per (video, task set): chance of one run of unannotated lines (-1 / -5)
SENTINEL_RUN_FRAMES = (3, 12)  # its length range (capped at a third of the video)
FACELESS_RUN_PROB = 0.4  # per video: chance of one run of frames with a label line but no image
FACELESS_RUN_FRAMES = (1, 4)
EXTRA_IMAGES_PROB = 0.15  # per video: chance of 1-3 trailing images with no label line
# ---- Expressions, AUs, valence/arousal ----
EXPR_PROBS = (0.22, 0.13, 0.13, 0.13, 0.13, 0.13, 0.13)  # per segment, labels.EXPR_NAMES order
PROTOTYPES = {  # expression -> AUs it activates (issue 2)
    "Neutral": (),
    "Anger": ("AU4", "AU7", "AU23", "AU24"),
    "Disgust": ("AU10", "AU15"),
    "Fear": ("AU1", "AU2", "AU4", "AU7", "AU25"),
    "Happiness": ("AU6", "AU12"),
    "Sadness": ("AU1", "AU4", "AU15"),
    "Surprise": ("AU1", "AU2", "AU25", "AU26"),
}
CIRCUMPLEX = {  # expression -> (valence, arousal) at full intensity
    "Neutral": (0.0, 0.0),
    "Anger": (-0.7, 0.65),
    "Disgust": (-0.7, 0.3),
    "Fear": (-0.5, 0.85),
    "Happiness": (0.8, 0.45),
    "Sadness": (-0.65, -0.5),
    "Surprise": (0.3, 0.85),
}
SEGMENT_FRAMES = (8, 24)  # frames per expression segment
TRANSITION_FRAMES = 3  # AU intensities and VA blend linearly into a new segment over this many frames
SEGMENT_INTENSITY = (0.4, 1.0)  # a segment's expression intensity: scales its AUs and its VA point
AU_INTENSITY_SPREAD = 0.15  # a prototype AU's intensity = segment intensity +- this, kept in AU_INTENSITY
AU_INTENSITY = (0.4, 1.0)  # range of an active AU's intensity (clearly visible)
AU_DROP_PROB = 0.1  # each prototype AU is left out with this chance
AU_EXTRA_PROB = 0.2  # a segment gets one extra random AU with this chance
INACTIVE_JITTER = 0.08  # drawn intensity = label-defining intensity + U[0, this] (sub-threshold)
AU_LABEL_THRESHOLD = 0.25  # an AU is labelled 1 when its (pre-jitter) intensity reaches this
VA_NOISE = 0.06  # sigma of the per-frame Gaussian noise on valence and arousal
# ---- AU motions, in face units (half the face height), at intensity 1 ----
MOTION_SCALE = 1.6  # multiplies every AU motion below: the main difficulty knob
INNER_BROW_RAISE = 0.13  # AU1
OUTER_BROW_RAISE = 0.13  # AU2
BROW_LOWER = 0.08  # AU4, plus drawing together by BROW_TOGETHER and glabella furrows
BROW_TOGETHER = 0.06
CHEEK_RAISE = 0.10  # AU6, plus the lower lid pushed up by CHEEK_LID (fraction of eye height) and crow's feet
CHEEK_LID = 0.35
LID_TIGHTEN = 0.45  # AU7: fraction of the eye opening closed (both lids)
UPPER_LIP_RAISE = 0.07  # AU10, plus nasolabial folds
CORNER_PULL = (0.06, 0.12)  # AU12: outward, upward
CORNER_DEPRESS = 0.11  # AU15: downward
LIP_TIGHTEN = (0.6, 0.25)  # AU23: lip thickness and mouth width reduced by these fractions, plus corner creases
LIP_PRESS = 0.5  # AU24: lip thickness reduced by this fraction, plus bulges above and below the lips
LIPS_PART = 0.06  # AU25: gap between the lips
JAW_DROP = (0.10, 0.12)  # AU26: extra mouth opening, chin drop
# ---- Identity and nuisance ranges ----
GEOMETRY_SPREAD = 1.0  # scales every identity range of face-part geometry around its middle (0 = one face shape)
# Aff-Wild2's cropped_aligned frames are tight, aligned face crops: the face fills most of the image.
FACE_SCALE = (0.38, 0.44)  # half face height as a fraction of the image size
FACE_OFFSET = 0.025  # identity offset of the face centre, fraction of the image size
POSE_ROTATION = (5.0, 3.0)  # degrees: identity tilt range, per-frame swing amplitude
POSE_SCALE = 0.04  # per-frame scale swing (fraction)
POSE_SHIFT = 0.02  # per-frame translation swing (fraction of the image size)
LIGHT_GAIN = (0.75, 1.15)  # identity brightness range; frames swing +-LIGHT_SWING around it
LIGHT_SWING = 0.08
LIGHT_GRADIENT = 0.35  # largest brightness change across the image from a directional light
COLOR_CAST = 0.06  # per-channel gain range +-
NOISE_SIGMA = (1.0, 6.0)  # grey levels of pixel noise per frame
JPEG_QUALITY = (60, 95)  # per frame
GLASSES_PROB = 0.15
SUPERSAMPLE = 2  # faces are drawn at this multiple of the size and reduced (anti-aliasing)

_AU = {name: i for i, name in enumerate(labels.AU_NAMES)}
SKIN_TONES = np.array([(241, 210, 186), (224, 182, 150), (198, 148, 110), (160, 112, 76), (112, 74, 50),
                       (80, 52, 36)], np.float32)
HAIR_COLOURS = np.array([(25, 20, 18), (60, 40, 28), (105, 72, 45), (185, 155, 100), (145, 70, 35),
                         (150, 148, 145)], np.float32)


class SyntheticError(ValueError):
    """Bad arguments or output folder for the generator; the message names them."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """A person: geometry in face units (origin face centre, y down, 1 = half face height), colours RGB."""
    face_width: float  # half width / half height
    scale: float  # half face height / image size
    centre: tuple[float, float]  # fraction of the image size
    tilt: float  # degrees
    skin: tuple
    lips: tuple
    brows: tuple
    hair: tuple
    hair_style: int  # 0 bald, 1 short, 2 long
    hairline: float
    hair_tilt: float
    iris: tuple
    shirt: tuple
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_len: float
    brow_thick: float
    brow_arch: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    glasses: bool
    gain: float
    light_angle: float
    light_gradient: float
    cast: tuple


def _colour(rgb) -> tuple:
    return tuple(int(v) for v in np.clip(np.round(rgb), 0, 255))


def _mix(a, b, t: float) -> tuple:
    return _colour(np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t)


def sample_identity(rng: np.random.Generator) -> Identity:
    u = rng.uniform

    def g(lo: float, hi: float) -> float:  # a geometry value, its range scaled by GEOMETRY_SPREAD
        return (lo + hi) / 2 + GEOMETRY_SPREAD * (u(lo, hi) - (lo + hi) / 2)

    tone = u(0, len(SKIN_TONES) - 1)
    lo = int(tone)
    skin = SKIN_TONES[lo] + (SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[lo]) * (tone - lo)
    skin = skin * u(0.95, 1.05, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * u(0.85, 1.15, 3)
    return Identity(
        face_width=g(0.70, 0.86), scale=u(*FACE_SCALE),
        centre=(0.5 + u(-FACE_OFFSET, FACE_OFFSET), 0.5 + u(-FACE_OFFSET, FACE_OFFSET)),
        tilt=u(-POSE_ROTATION[0], POSE_ROTATION[0]),
        skin=_colour(skin), lips=_mix(skin * 0.8, (175, 55, 70), u(0.35, 0.6)),
        brows=_mix(skin * 0.3, hair * 0.6, u(0.0, 0.5)),  # always clearly darker than the skin
        hair=_colour(hair), hair_style=int(rng.integers(3)), hairline=u(-0.82, -0.64), hair_tilt=u(-0.15, 0.15),
        iris=_colour(rng.choice([(60, 40, 25), (35, 25, 20), (70, 100, 140), (80, 110, 70)]) * u(0.8, 1.2)),
        shirt=_colour(u(20, 235, 3)),
        eye_y=g(-0.22, -0.10), eye_dx=g(0.30, 0.38), eye_w=g(0.12, 0.15), eye_h=g(0.065, 0.085),
        brow_gap=g(0.15, 0.20), brow_len=g(0.15, 0.19), brow_thick=g(0.035, 0.055), brow_arch=g(0.0, 0.05),
        nose_y=g(0.14, 0.22), nose_w=g(0.08, 0.12),
        mouth_y=g(0.44, 0.52), mouth_w=g(0.24, 0.30), lip_upper=g(0.045, 0.065), lip_lower=g(0.055, 0.08),
        glasses=bool(rng.random() < GLASSES_PROB),
        gain=u(*LIGHT_GAIN), light_angle=u(0, 2 * math.pi), light_gradient=u(0, LIGHT_GRADIENT),
        cast=tuple(u(1 - COLOR_CAST, 1 + COLOR_CAST, 3)))


def render_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A static scene behind a person: a gradient wall with a few coloured shapes. Drawn at SUPERSAMPLE x size."""
    side = size * SUPERSAMPLE
    top, bottom = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
    wall = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (side, side, 3))
    image = Image.fromarray(wall.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 7)):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * side
        w, h = rng.uniform(0.1, 0.6, 2) * side
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x0 + w, y0 + h), fill=_colour(rng.uniform(0, 255, 3)))
    return image


def _ellipse(cx, cy, rx, ry, n=24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)  # [n, 2]


def _curve(p0, p1, p2, n=9) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 whose middle point passes through p1. [n, 2]"""
    p0, p1, p2 = (np.asarray(p, np.float64) for p in (p0, p1, p2))
    control = 2 * p1 - 0.5 * (p0 + p2)
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * control + t ** 2 * p2


@dataclasses.dataclass
class Pose:
    rotation: float  # degrees
    scale: float  # factor on the identity's face scale
    shift: tuple[float, float]  # fraction of the image size


class _Canvas:
    """Draws face-unit geometry through the frame's similarity transform onto a supersampled PIL image."""

    def __init__(self, image: Image.Image, identity: Identity, pose: Pose, size: int):
        self.draw = ImageDraw.Draw(image)
        side = size * SUPERSAMPLE
        self.unit = identity.scale * pose.scale * side  # pixels per face unit
        angle = math.radians(identity.tilt + pose.rotation)
        self.matrix = self.unit * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        self.origin = np.array([identity.centre[0] + pose.shift[0], identity.centre[1] + pose.shift[1]]) * side

    def _px(self, points: np.ndarray) -> list:
        return (np.asarray(points) @ self.matrix.T + self.origin).ravel().tolist()

    def polygon(self, points, fill):
        self.draw.polygon(self._px(points), fill=fill)

    def line(self, points, fill, width: float):
        self.draw.line(self._px(points), fill=fill, width=max(1, int(round(width * self.unit))), joint="curve")


def draw_face(canvas: _Canvas, p: Identity, intensity: np.ndarray) -> None:
    """Draws one person with AU intensities [12] (labels.AU_NAMES order, 0..1)."""
    a = {name: float(intensity[i]) * MOTION_SCALE for name, i in _AU.items()}
    skin, shade = p.skin, _mix(p.skin, (40, 20, 15), 0.35)
    crease = lambda strength: _mix(p.skin, np.asarray(p.skin) * 0.45, min(1.0, strength))  # wrinkles darken the skin
    w = p.face_width

    # Hair behind the head, neck, shirt, ears.
    if p.hair_style == 2:
        back = _ellipse(0, -0.05, w * 1.22, 1.12, 28)[14:]  # upper half
        canvas.polygon(np.concatenate([back, [[w * 1.22, 0.95], [-w * 1.22, 0.95]]]), p.hair)
    canvas.polygon([[-0.38 * w, 0.5], [0.38 * w, 0.5], [0.42 * w, 1.6], [-0.42 * w, 1.6]], shade)
    canvas.polygon([[-2.2, 1.35], [-0.4 * w, 1.15], [0.4 * w, 1.15], [2.2, 1.35], [2.2, 3.0], [-2.2, 3.0]], p.shirt)
    for side in (-1, 1):
        canvas.polygon(_ellipse(side * w * 0.97, p.eye_y + 0.15, 0.11, 0.2, 12), shade)

    # Face outline; AU26 drops the jaw (points below the cheeks move down, increasingly towards the chin).
    outline = _ellipse(0, 0, w, 1.0, 32)
    low = outline[:, 1] > 0.2
    outline[low, 1] += JAW_DROP[1] * a["AU26"] * (outline[low, 1] - 0.2) / 0.8
    canvas.polygon(outline, skin)

    # Cheeks (AU6 raises them and makes them rounder/redder).
    for side in (-1, 1):
        cheek = _ellipse(side * (p.eye_dx + 0.06), p.eye_y + 0.33 - CHEEK_RAISE * a["AU6"], 0.15, 0.09, 14)
        canvas.polygon(cheek, _mix(p.skin, (200, 80, 80), 0.08 + 0.25 * a["AU6"]))

    # Nose; AU10 lifts the nostrils and deepens the nasolabial folds.
    lift = UPPER_LIP_RAISE * a["AU10"]
    tip = p.nose_y - 0.3 * lift
    canvas.polygon([[0, p.eye_y + 0.05], [p.nose_w, tip], [0, tip + 0.03], [-p.nose_w, tip]],
                   _mix(p.skin, (40, 20, 15), 0.12))
    for side in (-1, 1):
        canvas.polygon(_ellipse(side * p.nose_w * 0.5, tip - 0.005, 0.03, 0.018, 8), _mix(p.skin, (30, 10, 10), 0.6))
        fold_strength = 0.25 + a["AU10"] + 0.5 * a["AU12"]
        canvas.line(_curve([side * (p.nose_w + 0.02), tip - 0.02], [side * (p.mouth_w + 0.03), (tip + p.mouth_y) / 2],
                           [side * (p.mouth_w + 0.04), p.mouth_y + 0.02], 5), crease(0.35 * fold_strength), 0.018)

    # Mouth. Corners: AU12 up/out, AU15 down, AU23 in; thickness: AU23/AU24 thinner; opening: AU25, AU26, AU10.
    half = p.mouth_w * (1 - LIP_TIGHTEN[1] * a["AU23"]) + CORNER_PULL[0] * a["AU12"]
    corner_y = p.mouth_y - CORNER_PULL[1] * a["AU12"] + CORNER_DEPRESS * a["AU15"]
    thin = (1 - LIP_TIGHTEN[0] * a["AU23"]) * (1 - LIP_PRESS * a["AU24"])
    gap = LIPS_PART * a["AU25"] + JAW_DROP[0] * a["AU26"]
    upper_inner_y = p.mouth_y - 0.3 * gap - 0.6 * lift
    lower_inner_y = p.mouth_y + 0.7 * gap + JAW_DROP[1] * 0.3 * a["AU26"]
    left, right = [-half, corner_y], [half, corner_y]
    upper_inner = _curve(left, [0, upper_inner_y], right)
    lower_inner = _curve(left, [0, lower_inner_y], right)
    upper_outer = _curve(left, [0, upper_inner_y - p.lip_upper * thin - 0.4 * lift], right)
    lower_outer = _curve(left, [0, lower_inner_y + p.lip_lower * thin], right)
    if lower_inner_y - upper_inner_y > 0.01:
        canvas.polygon(np.concatenate([upper_inner, lower_inner[::-1]]), (60, 20, 25))
        teeth_lo = min(lower_inner_y, upper_inner_y + 0.045)
        teeth_y = upper_inner_y + 0.3 * (corner_y - upper_inner_y)
        teeth_top = _curve([-half * 0.6, teeth_y], [0, upper_inner_y], [half * 0.6, teeth_y], 5)
        canvas.polygon(np.concatenate([teeth_top, [[half * 0.5, teeth_lo], [-half * 0.5, teeth_lo]]]), (235, 232, 220))
    canvas.polygon(np.concatenate([upper_outer, upper_inner[::-1]]), p.lips)
    canvas.polygon(np.concatenate([lower_inner, lower_outer[::-1]]), _mix(p.lips, (255, 255, 255), 0.08))
    canvas.line(upper_inner, _mix(p.lips, (30, 10, 10), 0.5), 0.012)
    if a["AU23"] > 0:  # creases beside the tightened corners
        for side in (-1, 1):
            x = side * (half + 0.025)
            canvas.line([[x, corner_y - 0.06], [x + side * 0.01, corner_y + 0.06]], crease(a["AU23"]), 0.025)
    if a["AU24"] > 0:  # skin bulging above and below the pressed lips
        y = lower_inner_y + p.lip_lower * thin + 0.07
        canvas.line(_curve([-0.6 * half, y + 0.02], [0, y], [0.6 * half, y + 0.02], 5), crease(a["AU24"]), 0.025)
        y = upper_inner_y - p.lip_upper * thin - 0.06
        canvas.line(_curve([-0.5 * half, y - 0.01], [0, y], [0.5 * half, y - 0.01], 5), crease(0.7 * a["AU24"]), 0.02)

    # Eyes: AU7 narrows both lids, AU6 pushes the lower lid up; crow's feet with AU6.
    closing = LID_TIGHTEN * a["AU7"]
    upper_h = p.eye_h * max(0.15, 1 - closing)
    lower_h = p.eye_h * max(0.15, 1 - closing - CHEEK_LID * a["AU6"])
    for side in (-1, 1):
        cx = side * p.eye_dx
        inner, outer = [cx - side * p.eye_w, p.eye_y], [cx + side * p.eye_w, p.eye_y]
        top = _curve(inner, [cx, p.eye_y - upper_h], outer, 7)
        bottom = _curve(inner, [cx, p.eye_y + lower_h], outer, 7)
        canvas.polygon(np.concatenate([top, bottom[::-1]]), (238, 236, 230))
        iris = _ellipse(cx, p.eye_y, 0.055, 0.055, 12)
        iris[:, 1] = np.clip(iris[:, 1], p.eye_y - upper_h * 0.9, p.eye_y + lower_h * 0.9)
        canvas.polygon(iris, p.iris)
        canvas.polygon(_ellipse(cx, p.eye_y, 0.022, min(0.022, upper_h * 0.8), 8), (15, 10, 10))
        canvas.line(top, (35, 25, 25), 0.02)
        canvas.line(bottom, _mix(p.skin, (40, 20, 15), 0.4), 0.01)
        if a["AU6"] > 0:
            for dy in (-0.04, 0.0, 0.04):
                start = [cx + side * (p.eye_w + 0.02), p.eye_y + dy * 0.5]
                canvas.line([start, [start[0] + side * 0.07, p.eye_y + dy * 1.6]], crease(a["AU6"]), 0.012)

    # Brows: AU1 raises the inner, AU2 the outer end; AU4 lowers them and draws them together, with furrows.
    down = BROW_LOWER * a["AU4"]
    for side in (-1, 1):
        cx = side * p.eye_dx
        base = p.eye_y - p.brow_gap + down
        inner = [cx - side * (p.brow_len * 0.95 - BROW_TOGETHER * a["AU4"]), base - INNER_BROW_RAISE * a["AU1"]]
        middle = [cx, base - p.brow_arch - 0.4 * (INNER_BROW_RAISE * a["AU1"] + OUTER_BROW_RAISE * a["AU2"])]
        outer = [cx + side * p.brow_len * 1.05, base + 0.02 - OUTER_BROW_RAISE * a["AU2"]]
        canvas.line([inner, middle, outer], p.brows, p.brow_thick)
    if a["AU4"] > 0:
        top_y = p.eye_y - p.brow_gap + down
        for x in (-0.045, 0.045):
            canvas.line([[x, top_y - 0.06], [x * 0.8, top_y + 0.05]], crease(a["AU4"]), 0.015)
    if a["AU1"] > 0.2:  # forehead lines when the inner brows rise
        for k in range(2):
            y = p.eye_y - p.brow_gap - 0.17 - 0.06 * k
            canvas.line(_curve([-0.22, y + 0.01], [0, y - 0.015], [0.22, y + 0.01], 5), crease(0.6 * a["AU1"]), 0.01)

    # Hair in front (short or long styles) and glasses.
    if p.hair_style:
        cap = _ellipse(0, -0.04, w * 1.06, 1.07, 40)
        cap[:, 1] = np.minimum(cap[:, 1], p.hairline + p.hair_tilt * cap[:, 0])
        canvas.polygon(cap, p.hair)
    if p.glasses:
        for side in (-1, 1):
            canvas.line(np.concatenate([_ellipse(side * p.eye_dx, p.eye_y + 0.01, p.eye_w + 0.06, 0.12, 16),
                                        _ellipse(side * p.eye_dx, p.eye_y + 0.01, p.eye_w + 0.06, 0.12, 16)[:1]]),
                        (30, 30, 30), 0.018)
        canvas.line([[-p.eye_dx + p.eye_w + 0.06, p.eye_y], [p.eye_dx - p.eye_w - 0.06, p.eye_y]], (30, 30, 30), 0.018)


@dataclasses.dataclass
class VideoPlan:
    """Everything drawn and written for one video."""
    name: str
    split: str  # 'train' or 'val'
    seed: tuple  # SeedSequence entropy for the video's identity, nuisances and expressions
    tasks: tuple[str, ...]  # task sets the video appears in
    num_frames: int  # label lines per task set
    au: np.ndarray  # [F, 12] int 0/1
    expr: np.ndarray  # [F] int
    va: np.ndarray  # [F, 2] float, rounded as written
    intensity: np.ndarray  # [F, 12] drawn AU intensities
    unannotated: dict  # task -> [F] bool: line written as sentinel
    faceless: np.ndarray  # [F] bool: label line but no image
    extra_images: int  # trailing images with no label line
    background_from: str | None = None  # a two-person clip's right half shares the left half's scene


def _expressions(rng: np.random.Generator, num_frames: int):
    """Per frame: pre-jitter AU intensities [F,12], expression [F], valence/arousal [F,2] (noise-free)."""
    intensity = np.zeros((num_frames, labels.NUM_AUS))
    expr = np.zeros(num_frames, np.int64)
    va = np.zeros((num_frames, 2))
    prev_au, prev_va, start = None, None, 0
    while start < num_frames:
        length = int(rng.integers(SEGMENT_FRAMES[0], SEGMENT_FRAMES[1] + 1))
        e = int(rng.choice(labels.NUM_EXPRS, p=EXPR_PROBS))
        name = labels.EXPR_NAMES[e]
        strength = rng.uniform(*SEGMENT_INTENSITY)
        target = np.zeros(labels.NUM_AUS)
        for au in PROTOTYPES[name]:
            if rng.random() >= AU_DROP_PROB:
                spread = rng.uniform(-AU_INTENSITY_SPREAD, AU_INTENSITY_SPREAD)
                target[_AU[au]] = np.clip(strength + spread, *AU_INTENSITY)
        if rng.random() < AU_EXTRA_PROB:
            off = np.flatnonzero(target == 0)
            if len(off):
                target[rng.choice(off)] = rng.uniform(*AU_INTENSITY)
        va_target = np.asarray(CIRCUMPLEX[name]) * strength
        stop = min(num_frames, start + length)
        for t in range(start, stop):
            blend = 1.0 if prev_au is None else min(1.0, (t - start + 1) / TRANSITION_FRAMES)
            intensity[t] = target if prev_au is None else (1 - blend) * prev_au + blend * target
            va[t] = va_target if prev_va is None else (1 - blend) * prev_va + blend * va_target
            expr[t] = e
        prev_au, prev_va, start = target, va_target, stop
    return intensity, expr, va


def _run(rng: np.random.Generator, num_frames: int, length_range) -> np.ndarray:
    """[F] bool with one run of random length inside the video (not touching its first and last frame)."""
    mask = np.zeros(num_frames, bool)
    length = min(int(rng.integers(length_range[0], length_range[1] + 1)), max(1, num_frames // 3))
    if num_frames >= length + 2:
        start = int(rng.integers(1, num_frames - length))
        mask[start:start + length] = True
    return mask


def plan_videos(videos: int, frames: int, seed: int) -> list[VideoPlan]:
    """Names, splits, task sets, labels and gaps of every video; deterministic for a seed.

    Guarantees, where a split has at least two videos, one video outside some task set, one sentinel run, one
    image-less run and one image without a label line in it, and a two-person clip where it has four or more
    videos, so every Aff-Wild2 gap occurs even in tiny trees.
    """
    if videos < 2 or frames < 8:
        raise SyntheticError(f"--videos must be >= 2 and --frames >= 8, got {videos} and {frames}")
    rng = np.random.default_rng([seed, 0])
    num_val = max(1, round(videos * VAL_FRACTION))
    plans: list[VideoPlan] = []
    for split, count in (("train", videos - num_val), ("val", num_val)):
        names = []
        while len(names) < count:
            base = f"{len(plans) + len(names) + 1}-30-{rng.choice(['640x360', '1280x720', '1920x1080'])}"
            left = count - len(names)
            no_pair_yet = not any(background_from for _, background_from in names)
            if left >= 2 and (rng.random() < TWO_PERSON_PROB or (count >= 4 and left == 2 and no_pair_yet)):
                names += [(base + "_left", None), (base + "_right", base + "_left")]
            else:
                names.append((base, None))
        split_plans = []
        for name, background_from in names:
            video_rng = np.random.default_rng([seed, 1, len(plans) + len(split_plans)])
            num_sets = int(rng.choice(3, p=TASK_SET_COUNT_PROBS)) + 1
            tasks = tuple(sorted(str(t) for t in rng.choice(list(labels.TASK_SETS), num_sets, replace=False)))
            intensity, expr, va = _expressions(video_rng, frames)
            au = (intensity >= AU_LABEL_THRESHOLD).astype(np.int64)
            drawn = np.clip(intensity + video_rng.uniform(0, INACTIVE_JITTER, intensity.shape), 0, 1)
            va = np.round(np.clip(va + video_rng.normal(0, VA_NOISE, va.shape), -1, 1), 4)
            unannotated = {t: _run(rng, frames, SENTINEL_RUN_FRAMES) if rng.random() < SENTINEL_RUN_PROB
                           else np.zeros(frames, bool) for t in tasks}
            faceless = (_run(rng, frames, FACELESS_RUN_FRAMES) if rng.random() < FACELESS_RUN_PROB
                        else np.zeros(frames, bool))
            extra = int(rng.integers(1, 4)) if rng.random() < EXTRA_IMAGES_PROB else 0
            split_plans.append(VideoPlan(name, split, (seed, 1, len(plans) + len(split_plans)), tasks, frames, au, expr,
                                         va, drawn, unannotated, faceless, extra, background_from))
        _ensure_gaps(rng, split_plans, frames)
        plans += split_plans
    return plans


def _ensure_gaps(rng: np.random.Generator, plans: list[VideoPlan], frames: int) -> None:
    """Makes every kind of label gap, and every task set, occur in a split (see plan_videos)."""
    for task in labels.TASK_SETS:  # every task set holds at least one video of the split
        if not any(task in p.tasks for p in plans):
            p = plans[int(rng.integers(len(plans)))]
            p.tasks = tuple(sorted(p.tasks + (task,)))
            p.unannotated[task] = np.zeros(frames, bool)
    if len(plans) < 2:
        return
    if all(len(p.tasks) == len(labels.TASK_SETS) for p in plans):  # the others keep every task set covered
        p = plans[-1]
        dropped = p.tasks[int(rng.integers(len(p.tasks)))]
        p.tasks = tuple(t for t in p.tasks if t != dropped)
        del p.unannotated[dropped]
    if not any(m.any() for p in plans for m in p.unannotated.values()):
        p = plans[0]
        p.unannotated[p.tasks[0]] = _run(rng, frames, SENTINEL_RUN_FRAMES)
    if not any(p.faceless.any() for p in plans):
        plans[0].faceless = _run(rng, frames, FACELESS_RUN_FRAMES)
    if not any(p.extra_images for p in plans):
        plans[-1].extra_images = 1


def _label_lines(plan: VideoPlan, task: str) -> list[str]:
    lines = [labels.HEADERS[task]]
    sentinel = {"au": ",".join([str(labels.AU_MISSING)] * labels.NUM_AUS), "expr": str(labels.EXPR_MISSING),
                "va": f"{labels.VA_MISSING:g},{labels.VA_MISSING:g}"}[task]
    for t in range(plan.num_frames):
        if plan.unannotated[task][t]:
            lines.append(sentinel)
        elif task == "au":
            lines.append(",".join(str(int(v)) for v in plan.au[t]))
        elif task == "expr":
            lines.append(str(int(plan.expr[t])))
        else:
            lines.append(f"{plan.va[t, 0]:.4f},{plan.va[t, 1]:.4f}")
    return lines


def video_identity(plan: VideoPlan) -> Identity:
    """The person of a video (each video is a new person, so train and val identities are disjoint)."""
    return sample_identity(np.random.default_rng(list(plan.seed) + [1]))


class _FrameRenderer:
    """Renders the frames of one video: identity, background and smooth nuisance trajectories."""

    def __init__(self, plan: VideoPlan, size: int, background: Image.Image):
        self.identity = video_identity(plan)
        self.rng = np.random.default_rng(list(plan.seed) + [3])
        self.size = size
        self.background = background
        u = self.rng.uniform
        self.waves = {k: (u(0.01, 0.06), u(0, 2 * math.pi)) for k in ("rot", "scale", "x", "y", "light")}
        grid = (np.arange(size, dtype=np.float32) - size / 2) / size
        ident = self.identity
        direction = math.cos(ident.light_angle) * grid[None, :] + math.sin(ident.light_angle) * grid[:, None]
        self.light = (1 + ident.light_gradient * direction)[..., None] * np.asarray(ident.cast, np.float32)  # [S,S,3]
        self.noise = self.rng.standard_normal((2 * size, 2 * size, 3)).astype(np.float32)  # cropped per frame

    def _wave(self, key: str, t: int) -> float:
        freq, phase = self.waves[key]
        return math.sin(2 * math.pi * freq * t + phase)

    def jpeg(self, t: int, intensity: np.ndarray) -> bytes:
        pose = Pose(rotation=POSE_ROTATION[1] * self._wave("rot", t), scale=1 + POSE_SCALE * self._wave("scale", t),
                    shift=(POSE_SHIFT * self._wave("x", t), POSE_SHIFT * self._wave("y", t)))
        image = self.background.copy()
        draw_face(_Canvas(image, self.identity, pose, self.size), self.identity, intensity)
        pixels = np.asarray(image.reduce(SUPERSAMPLE), np.float32)  # [S, S, 3]
        gain = self.identity.gain * (1 + LIGHT_SWING * self._wave("light", t))
        oy, ox = self.rng.integers(0, self.size, 2)
        sigma = self.rng.uniform(*NOISE_SIGMA)
        pixels = pixels * (self.light * gain) + sigma * self.noise[oy:oy + self.size, ox:ox + self.size]
        frame = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
        return simplejpeg.encode_jpeg(frame, quality=int(self.rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)),
                                      colorspace="RGB")


def _write_text(path: str, lines: list[str]) -> None:
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_tree(plans: list[VideoPlan], root: str, size: int) -> dict:
    """Writes the Aff-Wild2 tree of `plans` under `root` (which must not exist yet); returns counts."""
    counts = {"videos": len(plans), "images": 0, "faceless_frames": 0, "images_without_label": 0}
    backgrounds = {}
    for plan in plans:
        video_dir = os.path.join(root, affwild2.IMAGES_DIR, plan.name)
        os.makedirs(video_dir)
        scene_rng = np.random.default_rng(list(plan.seed) + [2])
        backgrounds[plan.name] = backgrounds[plan.background_from] if plan.background_from else \
            render_background(scene_rng, size)
        renderer = _FrameRenderer(plan, size, backgrounds[plan.name])
        extra_intensity = plan.intensity[-1]
        for t in range(plan.num_frames + plan.extra_images):
            if t < plan.num_frames and plan.faceless[t]:
                counts["faceless_frames"] += 1
                continue
            data = renderer.jpeg(t, plan.intensity[t] if t < plan.num_frames else extra_intensity)
            with open(os.path.join(video_dir, f"{t + 1:05d}.jpg"), "wb") as f:
                f.write(data)
            counts["images"] += 1
        counts["images_without_label"] += plan.extra_images
        for task in plan.tasks:
            folder = os.path.join(root, affwild2.ANNOTATIONS_DIR, labels.TASK_SETS[task], labels.SPLIT_SETS[plan.split])
            os.makedirs(folder, exist_ok=True)
            _write_text(os.path.join(folder, plan.name + ".txt"), _label_lines(plan, task))
    for task_set in labels.TASK_SETS.values():  # the layout has every folder, even if a split has no such video
        for split_set in labels.SPLIT_SETS.values():
            os.makedirs(os.path.join(root, affwild2.ANNOTATIONS_DIR, task_set, split_set), exist_ok=True)
    return counts


def generate(out: str, *, videos: int, frames: int, size: int, seed: int) -> dict:
    """Renders a synthetic Aff-Wild2 tree into `out` (temporary folder, renamed at the end); returns the marker."""
    if size < 32:
        raise SyntheticError(f"--size must be >= 32 pixels, got {size}")
    if os.path.exists(out):
        raise SyntheticError(f"{out}: already exists; remove it or choose another --out")
    start = time.perf_counter()
    plans = plan_videos(videos, frames, seed)
    tmp = f"{out.rstrip(os.sep)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = write_tree(plans, tmp, size)
        marker = {
            "generator": "pasn_jax.data.synthetic", "version": GENERATOR_VERSION, "seed": seed, "videos": videos,
            "frames": frames, "size": size,
            "splits": {s: [p.name for p in plans if p.split == s] for s in labels.SPLIT_SETS},
            "task_sets": {p.name: list(p.tasks) for p in plans},
            **counts, "seconds": round(time.perf_counter() - start, 3),
        }
        _write_text(os.path.join(tmp, MARKER_FILE), [json.dumps(marker, indent=1)])
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return marker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to create (must not exist)")
    parser.add_argument("--videos", type=int, default=16, help="number of videos over both splits")
    parser.add_argument("--frames", type=int, default=120, help="label lines (frames) per video")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        marker = generate(args.out, videos=args.videos, frames=args.frames, size=args.size, seed=args.seed)
    except (SyntheticError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {marker['videos']} videos ({len(marker['splits']['train'])} train, "
          f"{len(marker['splits']['val'])} val), {marker['images']} images at {args.size} px, "
          f"{marker['faceless_frames']} label lines without image, {marker['images_without_label']} images without "
          f"label line, in {marker['seconds']:.1f} s ({marker['images'] / marker['seconds']:.0f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
