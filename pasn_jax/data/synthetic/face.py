"""A synthetic person and one drawn face: identity (shape, colours, placement) and the FACS-like motions of the 12
AUs, drawn through a similarity transform onto a supersampled PIL image (the synthetic Aff-Wild2's renderer).

Geometry is in face units (origin at the face centre, y down, 1 = half the face height); every AU motion below is
at intensity 1 and is scaled by the AU's intensity and by MOTION_SCALE, the main difficulty knob.
"""

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

from pasn_jax import labels

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


def colour(rgb) -> tuple:
    return tuple(int(v) for v in np.clip(np.round(rgb), 0, 255))


def mix(a, b, t: float) -> tuple:
    return colour(np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t)


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
        skin=colour(skin), lips=mix(skin * 0.8, (175, 55, 70), u(0.35, 0.6)),
        brows=mix(skin * 0.3, hair * 0.6, u(0.0, 0.5)),  # always clearly darker than the skin
        hair=colour(hair), hair_style=int(rng.integers(3)), hairline=u(-0.82, -0.64), hair_tilt=u(-0.15, 0.15),
        iris=colour(rng.choice([(60, 40, 25), (35, 25, 20), (70, 100, 140), (80, 110, 70)]) * u(0.8, 1.2)),
        shirt=colour(u(20, 235, 3)),
        eye_y=g(-0.22, -0.10), eye_dx=g(0.30, 0.38), eye_w=g(0.12, 0.15), eye_h=g(0.065, 0.085),
        brow_gap=g(0.15, 0.20), brow_len=g(0.15, 0.19), brow_thick=g(0.035, 0.055), brow_arch=g(0.0, 0.05),
        nose_y=g(0.14, 0.22), nose_w=g(0.08, 0.12),
        mouth_y=g(0.44, 0.52), mouth_w=g(0.24, 0.30), lip_upper=g(0.045, 0.065), lip_lower=g(0.055, 0.08),
        glasses=bool(rng.random() < GLASSES_PROB),
        gain=u(*LIGHT_GAIN), light_angle=u(0, 2 * math.pi), light_gradient=u(0, LIGHT_GRADIENT),
        cast=tuple(u(1 - COLOR_CAST, 1 + COLOR_CAST, 3)))


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


class Canvas:
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


# The expressive parts (the paper's Fig. 4: brows, eyes, nose wrinkles, mouth, cheeks), as ellipses in face units
# around where draw_face puts them and their AU motions: (centre x, centre y, half width, half height) of a person.
EXPRESSIVE_PARTS = {
    "brows": lambda p: [(s * p.eye_dx, p.eye_y - p.brow_gap - 0.08, p.brow_len * 1.15 + 0.04, 0.2)  # AU1/2 raise
                        for s in (-1, 1)],
    "eyes": lambda p: [(s * p.eye_dx, p.eye_y, p.eye_w + 0.06, p.eye_h + 0.06) for s in (-1, 1)],
    "nose": lambda p: [(0.0, (p.eye_y - p.brow_gap + p.nose_y) / 2, p.nose_w + 0.06,
                        (p.nose_y - p.eye_y + p.brow_gap) / 2 + 0.04)],
    "mouth": lambda p: [(0.0, p.mouth_y + 0.03, p.mouth_w + 0.12, 0.18)],
    "cheeks": lambda p: [(s * (p.eye_dx + 0.06), p.eye_y + 0.3, 0.18, 0.13) for s in (-1, 1)],
}


def parts_mask(identity: Identity, pose: Pose, size: int) -> np.ndarray:
    """Where a frame of `identity` at `pose` shows its expressive parts (EXPRESSIVE_PARTS). bool [S, S]"""
    image = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    canvas = Canvas(image, identity, pose, size)
    for ellipses in EXPRESSIVE_PARTS.values():
        for cx, cy, rx, ry in ellipses(identity):
            canvas.polygon(_ellipse(cx, cy, rx, ry, 24), 255)
    return np.asarray(image.reduce(SUPERSAMPLE)) >= 128


def draw_face(canvas: Canvas, p: Identity, intensity: np.ndarray) -> None:
    """Draws one person with AU intensities [12] (labels.AU_NAMES order, 0..1)."""
    a = {name: float(intensity[i]) * MOTION_SCALE for name, i in _AU.items()}
    skin, shade = p.skin, mix(p.skin, (40, 20, 15), 0.35)
    crease = lambda strength: mix(p.skin, np.asarray(p.skin) * 0.45, min(1.0, strength))  # wrinkles darken the skin
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
        canvas.polygon(cheek, mix(p.skin, (200, 80, 80), 0.08 + 0.25 * a["AU6"]))

    # Nose; AU10 lifts the nostrils and deepens the nasolabial folds.
    lift = UPPER_LIP_RAISE * a["AU10"]
    tip = p.nose_y - 0.3 * lift
    canvas.polygon([[0, p.eye_y + 0.05], [p.nose_w, tip], [0, tip + 0.03], [-p.nose_w, tip]],
                   mix(p.skin, (40, 20, 15), 0.12))
    for side in (-1, 1):
        canvas.polygon(_ellipse(side * p.nose_w * 0.5, tip - 0.005, 0.03, 0.018, 8), mix(p.skin, (30, 10, 10), 0.6))
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
    canvas.polygon(np.concatenate([lower_inner, lower_outer[::-1]]), mix(p.lips, (255, 255, 255), 0.08))
    canvas.line(upper_inner, mix(p.lips, (30, 10, 10), 0.5), 0.012)
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
        canvas.line(bottom, mix(p.skin, (40, 20, 15), 0.4), 0.01)
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


