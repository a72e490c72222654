"""Five-point face alignment: the similarity transform (rotation, uniform scale, translation; least squares,
Umeyama 1991 without reflection) taking a face's 5 landmarks to the insightface template, then a bilinear warp.

This replaces the paper's OpenFace alignment (§4.1 crops Aff-Wild2 faces with OpenFace's landmarks): MTCNN's five
points and the insightface 112-px template (the ArcFace convention) give the same kind of upright, eye-levelled
crop. The template is scaled to the crop size (size / 112): 224 for the paper, 112 for small models.
Coordinates are continuous pixels (crops.py), as PIL's affine transform uses them.
"""

import numpy as np
from PIL import Image

# insightface's arcface_dst for 112x112 crops: left eye, right eye, nose, mouth left, mouth right (image sides).
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                         [70.7299, 92.2041]])


class AlignError(ValueError):
    """Landmarks or a crop size that cannot give an alignment; the message names it."""


def template(size: int) -> np.ndarray:
    """[5, 2] template points for a size x size crop."""
    return TEMPLATE_112 * (size / 112.0)


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[2, 3] matrix M of the least-squares similarity (no reflection) with target ~ M @ [x, y, 1]."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise AlignError(f"landmarks: expected two [N >= 2, 2] point sets of the same shape, got "
                         f"{list(source.shape)} and {list(target.shape)}")
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    variance = (centred_s ** 2).sum() / len(source)
    if not np.isfinite(variance) or variance < 1e-12:
        raise AlignError("landmarks: the points coincide or are not finite; no similarity transform")
    u, singular, vt = np.linalg.svd(centred_t.T @ centred_s / len(source))
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (singular * signs).sum() / variance
    return np.concatenate([scale * rotation, (mean_t - scale * rotation @ mean_s)[:, None]], axis=1)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points [N, 2] mapped by a [2, 3] affine matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """(aligned uint8 crop [size, size, 3], the [2, 3] transform from image to crop coordinates); black outside."""
    if size < 16:
        raise AlignError(f"crop size must be >= 16 pixels, got {size}")
    matrix = similarity(landmarks, template(size))
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]  # PIL wants crop -> image
    crop = Image.fromarray(np.asarray(image, np.uint8)).transform((size, size), Image.Transform.AFFINE,
                                                                  tuple(inverse.reshape(-1)), Image.Resampling.BILINEAR)
    return np.asarray(crop), matrix
