"""Box arithmetic of MTCNN (numpy, host side): IoU, greedy non-maximum suppression, regression ("bounding box
calibration") and squaring. Boxes are float [N, 4] (x0, y0, x1, y1) in pixels, x1 - x0 the width."""

import numpy as np


def iou(a: np.ndarray, b: np.ndarray, mode: str = "union") -> np.ndarray:
    """[len(a), len(b)] overlaps: intersection over union, or over the smaller box with mode 'min'."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    if mode == "min":
        denominator = np.minimum(area_a[:, None], area_b[None, :])
    elif mode == "union":
        denominator = area_a[:, None] + area_b[None, :] - inter
    else:
        raise ValueError(f"iou mode must be 'union' or 'min', got '{mode}'")
    return inter / np.maximum(denominator, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy NMS, best score first: a box goes if it overlaps a kept box by more than threshold."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = np.asarray(boxes, np.float64)[order]
    keep = []
    alive = np.ones(len(order), bool)
    for start in range(0, len(order), 1024):  # overlaps in blocks: memory stays bounded on many proposals
        block = slice(start, min(start + 1024, len(order)))
        overlap = iou(boxes[block], boxes, mode)
        for i in range(block.start, block.stop):
            if alive[i]:
                keep.append(i)
                suppressed = overlap[i - block.start] > threshold
                suppressed[: i + 1] = False
                alive &= ~suppressed
    return order[np.asarray(keep, np.int64)]


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Calibrated boxes: each edge moved by its offset times the box width (x) or height (y)."""
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return boxes + offsets * size


def square(boxes: np.ndarray) -> np.ndarray:
    """Squares of side max(width, height) with the boxes' centres."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.max(boxes[:, 2:] - boxes[:, :2], axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)
