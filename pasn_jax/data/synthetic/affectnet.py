"""A synthetic AffectNet-like tree in the release layout that pasn_jax.data.affectnet reads:
`Manually_Annotated_file_lists/{training,validation}.csv` (header, one row per image: path, face box, 68 landmarks
as `x;y;...`, expression code, valence, arousal) and `Manually_Annotated_Images/<folder number>/<hex name>.jpg|png`.

Each image is a new person (face.sample_identity seeded by (seed, index)) photographed like frames.photograph at
`size` px and pasted at a random offset into a larger background canvas, so the CSV's face box matters. Its
expression is drawn by plan.sample_expression (the same expression -> AU prototypes and circumplex VA as the
synthetic Aff-Wild2) and written in AffectNet's code (the inverse of labels.AFFECTNET_TO_ABAW_EXPR); VA = the
expression's circumplex point + Gaussian noise plan.VA_NOISE, clipped to [-1, 1], rounded to 4 decimals.

AffectNet's odd codes also occur (shares below; each at least once per split of 6 or more images):
- 7 Contempt: rendered as a weak smile with a slight frown (AU12 and AU4 at CONTEMPT_INTENSITY, a symmetric
  stand-in for the one-sided lip corner the renderer cannot draw), VA = CONTEMPT_VA scaled by a strength + noise.
- 8 None: a face with two random AUs, VA a random point.
- 9 Uncertain: a face blending two expressions at half strength, VA -2 half the time.
- 10 No-Face: the background canvas only (a box is still listed), VA -2.
- VA -2 on a share of the other rows (their expression stays), and one listed image per split that is not on disk;
  a share of the images are PNG.
"""

import csv
import dataclasses
import io
import json
import os
import time

import numpy as np
import simplejpeg
from PIL import Image

from pasn_jax import labels
from pasn_jax.data import affectnet
from pasn_jax.data.synthetic import plan
from pasn_jax.data.synthetic.face import JPEG_QUALITY, SUPERSAMPLE, sample_identity
from pasn_jax.data.synthetic.frames import photograph, render_background
from pasn_jax.data.synthetic.plan import SyntheticError
from pasn_jax.data.synthetic.tree import new_folder

GENERATOR = "pasn_jax.data.synthetic.affectnet"
GENERATOR_VERSION = 1  # bump when the rendering or labelling changes (invalidates prepared caches)
MARKER_FILE = affectnet.MARKER_FILE
ABAW_TO_AFFECTNET = {abaw: code for code, abaw in labels.AFFECTNET_TO_ABAW_EXPR.items() if abaw is not None}
ODD_CODE_SHARES = {7: 0.08, 8: 0.05, 9: 0.05, 10: 0.04}  # the rest: the seven basic expressions
VA_UNANNOTATED_SHARE = 0.06  # of the rows with a face and a code 0..7
PNG_SHARE = 0.1
CANVAS_SCALE = (1.25, 2.0)  # canvas width and height / face size, each drawn in this range
CONTEMPT_INTENSITY = (0.3, 0.5)  # AU12 and AU4
CONTEMPT_VA = (-0.55, 0.3)  # at full strength
FOLDERS = 1300  # images go in numbered folders 1..FOLDERS
_AU = {name: i for i, name in enumerate(labels.AU_NAMES)}
HEADER = affectnet.COLUMNS
_MIN_GUARANTEED = 6  # a split of this many images holds every odd case


@dataclasses.dataclass
class ImagePlan:
    """Everything drawn and written for one image."""
    split: str
    index: int  # over both splits: seeds the person and the picture
    path: str  # subDirectory_filePath
    code: int  # AffectNet expression code 0..10
    va: tuple[float, float]  # as written; -2 each where unannotated
    intensity: np.ndarray  # [12] drawn AU intensities (zeros for No-Face)
    au: np.ndarray  # [12] 0/1: intensity before jitter >= plan.AU_LABEL_THRESHOLD (not written: AffectNet has no AUs)
    canvas: tuple[int, int]  # height, width
    box: tuple[int, int, int, int]  # face_x, face_y, face_width, face_height
    landmarks: str  # x;y;... of 68 points inside the box
    png: bool
    missing: bool  # listed in the CSV but not written


def _kinds(rng: np.random.Generator, count: int) -> list[dict]:
    """Per image of a split: its code (None: a basic expression), VA unannotated, PNG, missing."""
    codes, shares = list(ODD_CODE_SHARES), list(ODD_CODE_SHARES.values())
    kinds = []
    for _ in range(count):
        u, code = rng.random(), None
        for c, cumulative in zip(codes, np.cumsum(shares)):
            if u < cumulative:
                code = c
                break
        kinds.append({"code": code, "va_unannotated": code in (None, 7) and rng.random() < VA_UNANNOTATED_SHARE,
                      "png": bool(rng.random() < PNG_SHARE), "missing": False})
    if count >= _MIN_GUARANTEED:
        order = rng.permutation(count)
        for position, code in zip(order[:4], codes):
            kinds[position].update(code=code, va_unannotated=False)
        kinds[order[4]].update(code=None, va_unannotated=True, png=True)
        kinds[order[5]].update(code=None, missing=True)
    return kinds


def _landmarks(rng: np.random.Generator, box: tuple[int, int, int, int]) -> str:
    """68 points in the iBUG order (jaw 17, brows 2x5, nose 9, eyes 2x6, mouth 20) inside the box."""
    def ellipse(cx, cy, rx, ry, angles):
        a = np.deg2rad(np.asarray(angles, float))
        return np.stack([cx + rx * np.cos(a), cy - ry * np.sin(a)], 1)

    jaw = ellipse(0.5, 0.42, 0.45, -0.5, np.linspace(180, 0, 17))
    brow = np.stack([np.linspace(0.14, 0.42, 5), 0.3 - 0.04 * np.sin(np.linspace(0, np.pi, 5))], 1)
    nose = np.concatenate([np.stack([np.full(4, 0.5), np.linspace(0.38, 0.55, 4)], 1),
                           np.stack([np.linspace(0.42, 0.58, 5), np.full(5, 0.6)], 1)])
    eye_angles = (180, 135, 45, 0, -45, -135)
    points = np.concatenate([
        jaw, brow, brow[::-1] * (-1, 1) + (1, 0), nose,
        ellipse(0.32, 0.4, 0.08, 0.03, eye_angles), ellipse(0.68, 0.4, 0.08, 0.03, eye_angles),
        ellipse(0.5, 0.76, 0.16, 0.06, np.linspace(180, -150, 12)), ellipse(0.5, 0.76, 0.1, 0.025,
                                                                            np.linspace(180, -135, 8))])
    points = np.clip(points + rng.normal(0, 0.01, points.shape), 0.02, 0.98)
    x, y, w, h = box
    pixels = points * (w, h) + (x, y)
    return ";".join(f"{v:.2f}" for v in pixels.reshape(-1))


def _face(rng: np.random.Generator, code: int | None) -> tuple[int, np.ndarray, tuple[float, float]]:
    """(AffectNet code, AU intensities before jitter [12], noise-free VA) of one face."""
    if code is None:
        e, target, va = plan.sample_expression(rng)
        return ABAW_TO_AFFECTNET[e], target, tuple(va)
    target = np.zeros(labels.NUM_AUS)
    if code == 7:
        strength = rng.uniform(*plan.SEGMENT_INTENSITY)
        for au in ("AU4", "AU12"):
            target[_AU[au]] = rng.uniform(*CONTEMPT_INTENSITY)
        return code, target, tuple(np.asarray(CONTEMPT_VA) * strength)
    if code == 8:
        target[rng.choice(labels.NUM_AUS, 2, replace=False)] = rng.uniform(*plan.AU_INTENSITY, 2)
        return code, target, tuple(rng.uniform(-0.6, 0.6, 2))
    if code == 9:
        (_, a, va_a), (_, b, va_b) = plan.sample_expression(rng), plan.sample_expression(rng)
        return code, (a + b) / 2, tuple((va_a + va_b) / 2)
    return code, target, (affectnet.VA_UNANNOTATED,) * 2  # 10: no face


def plan_images(images: int, val_images: int, size: int, seed: int) -> list[ImagePlan]:
    """What every image shows and how it is listed (train first, then val); deterministic for a seed."""
    if images < 1 or val_images < 1 or size < 32:
        raise SyntheticError(f"--images and --val-images must be >= 1 and --size >= 32, got {images}, {val_images} "
                             f"and {size}")
    rng = np.random.default_rng([seed, 0])
    plans, paths = [], set()
    for split, count in (("train", images), ("val", val_images)):
        for kind in _kinds(rng, count):
            index = len(plans)
            image_rng = np.random.default_rng([seed, 1, index])
            code, target, va = _face(image_rng, kind["code"])
            if kind["va_unannotated"] or (code == 9 and image_rng.random() < 0.5):
                va = (affectnet.VA_UNANNOTATED,) * 2
            elif va[0] != affectnet.VA_UNANNOTATED:
                noisy = np.round(np.clip(np.asarray(va) + image_rng.normal(0, plan.VA_NOISE, 2), -1, 1), 4)
                va = tuple(float(v) + 0.0 for v in noisy)  # + 0.0: no '-0.0'
            intensity = np.clip(target + image_rng.uniform(0, plan.INACTIVE_JITTER, labels.NUM_AUS), 0, 1)
            if code == 10:
                intensity = np.zeros(labels.NUM_AUS)
            height, width = (int(round(size * image_rng.uniform(*CANVAS_SCALE))) for _ in range(2))
            box = (int(image_rng.integers(0, width - size + 1)), int(image_rng.integers(0, height - size + 1)),
                   size, size)
            path = ""
            while not path or path in paths:
                extension = "png" if kind["png"] else "jpg"
                path = f"{int(image_rng.integers(1, FOLDERS + 1))}/{image_rng.bytes(28).hex()}.{extension}"
            paths.add(path)
            plans.append(ImagePlan(split, index, path, code, va, intensity,
                                   (target >= plan.AU_LABEL_THRESHOLD).astype(np.int64), (height, width), box,
                                   _landmarks(image_rng, box), kind["png"], kind["missing"]))
    return plans


def render(p: ImagePlan, size: int, seed: int) -> bytes:
    """The image file of a plan: its person's photograph pasted into the box of a background canvas."""
    rng = np.random.default_rng([seed, 1, p.index, 2])
    height, width = p.canvas
    background = render_background(rng, max(height, width)).reduce(SUPERSAMPLE)
    canvas = np.array(background)[:height, :width]
    if p.code != 10:
        identity = sample_identity(np.random.default_rng([seed, 1, p.index, 1]))
        face = simplejpeg.decode_jpeg(photograph(identity, p.intensity, size, rng), colorspace="RGB")
        x, y, w, h = p.box
        canvas[y:y + h, x:x + w] = face
    if p.png:
        buffer = io.BytesIO()
        Image.fromarray(canvas).save(buffer, format="PNG")
        return buffer.getvalue()
    return simplejpeg.encode_jpeg(np.ascontiguousarray(canvas), colorspace="RGB",
                                  quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))


def _value(v: float) -> str:
    return "-2" if v == affectnet.VA_UNANNOTATED else repr(float(v))


def csv_row(p: ImagePlan) -> list[str]:
    """The file-list row of a plan, in the release's column order."""
    return [p.path, *(str(v) for v in p.box), p.landmarks, str(p.code), _value(p.va[0]), _value(p.va[1])]


def generate(out: str, *, images: int = 24, val_images: int = 8, size: int = 64, seed: int = 0) -> dict:
    """Renders a synthetic AffectNet tree into `out` (a temporary folder, renamed at the end); returns the marker
    (also written to `out`/synthetic_affectnet.json). `images` and `val_images` size training.csv and
    validation.csv, `size` is the face side in pixels."""
    start = time.perf_counter()
    plans = plan_images(images, val_images, size, seed)
    counts = {}
    with new_folder(out) as tmp:
        lists = os.path.join(tmp, affectnet.LISTS_DIR)
        os.makedirs(lists)
        for split, name in affectnet.SPLIT_FILES.items():
            split_plans = [p for p in plans if p.split == split]
            with open(os.path.join(lists, name), "w", newline="") as f:
                writer = csv.writer(f, lineterminator="\r\n")
                writer.writerow(HEADER)
                writer.writerows(csv_row(p) for p in split_plans)
            for p in split_plans:
                if p.missing:
                    continue
                path = os.path.join(tmp, affectnet.IMAGES_DIR, *p.path.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(render(p, size, seed))
            counts[split] = {
                "rows": len(split_plans),
                "codes": {str(c): sum(p.code == c for p in split_plans) for c in range(affectnet.NUM_CODES)},
                "va_unannotated": sum(p.va[0] == affectnet.VA_UNANNOTATED for p in split_plans),
                "missing_images": sum(p.missing for p in split_plans), "png": sum(p.png for p in split_plans)}
        marker = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed, "images": images,
                  "val_images": val_images, "size": size, "counts": counts,
                  "seconds": round(time.perf_counter() - start, 3)}
        with open(os.path.join(tmp, MARKER_FILE), "w") as f:
            json.dump(marker, f, indent=1)
    return marker
