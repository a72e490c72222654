"""Host-side image resampling for the detector: the P-Net pyramid levels and the R-Net / O-Net input patches.

Coordinates are continuous pixels: pixel (row i, column j) covers [j, j + 1) x [i, i + 1). A patch is sampled
bilinearly at the centres of a (k * size)^2 grid over its box and averaged over k x k blocks (k about box side /
size), an area-like resampling that does not alias large boxes, computed as two small matrix products per box;
outside the image the pixels are black (0), as in MTCNN's zero padding. Values are (pixel - 127.5) / 128.
"""

import numpy as np
from PIL import Image


def normalise(pixels):
    return (np.asarray(pixels, np.float32) - 127.5) / 128.0


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3] -> normalised float32 [height, width, 3], area (box filter) resampling."""
    if (height, width) == image.shape[:2]:
        return normalise(image)
    return normalise(np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BOX)))


def _weights(start: float, end: float, size: int, length: int) -> tuple[int, np.ndarray]:
    """Resampling of [start, end) to `size` outputs along an axis of `length` pixels, as (first pixel, matrix
    [size, n]): the mean of k bilinear samples per output; pixels outside [0, length) are black (dropped)."""
    k = int(min(max(1, round((end - start) / size)), 64))
    centres = start + (np.arange(size * k) + 0.5) * ((end - start) / (size * k)) - 0.5  # pixel-centre coordinates
    low = np.floor(centres).astype(np.int64)
    first, last = int(low.min()), int(low.max()) + 1
    columns = last - first + 1
    fraction = centres - low
    output = np.repeat(np.arange(size), k) * columns
    pixels = np.concatenate([low, low + 1])
    weights = np.concatenate([1 - fraction, fraction]) / k
    weights[(pixels < 0) | (pixels >= length)] = 0.0
    flat = np.bincount(np.concatenate([output, output]) + pixels - first, weights, minlength=size * columns)
    return first, flat.reshape(size, columns).astype(np.float32)


def _window(image: np.ndarray, first_row: int, rows: int, first_col: int, cols: int) -> np.ndarray:
    """image[first_row:first_row + rows, first_col:first_col + cols] with zeros where it leaves the image."""
    height, width = image.shape[:2]
    r0, r1 = max(first_row, 0), min(first_row + rows, height)
    c0, c1 = max(first_col, 0), min(first_col + cols, width)
    out = np.zeros((rows, cols, 3), np.float32)
    if r0 < r1 and c0 < c1:
        out[r0 - first_row:r1 - first_row, c0 - first_col:c1 - first_col] = image[r0:r1, c0:c1]
    return out


def patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Normalised float32 [N, size, size, 3] patches of uint8 image [H, W, 3] at boxes [N, 4] (x0, y0, x1, y1)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.empty((len(boxes), size, size, 3), np.float32)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    depths = np.floor(np.log2(np.maximum(sides / (2 * size), 1.0))).astype(int)
    levels = [image]  # levels[j]: 2^j x 2^j block means (a box keeps 2..4 level pixels per output pixel)
    for i, depth in enumerate(depths):
        while len(levels) <= depth:
            levels.append(np.asarray(Image.fromarray(levels[-1]).reduce(2)))
        level = levels[depth]
        x0, y0, x1, y1 = boxes[i] / 2 ** depth
        first_row, along_y = _weights(y0, y1, size, level.shape[0])
        first_col, along_x = _weights(x0, x1, size, level.shape[1])
        window = _window(level, first_row, along_y.shape[1], first_col, along_x.shape[1])
        rows = (along_y @ window.reshape(len(window), -1)).reshape(size, -1, 3)  # [size, columns, 3]
        out[i] = np.matmul(along_x[None], rows)  # out[i][r] = along_x @ rows[r]
    return normalise(out)


def rotation_grid(centre, side: float, angle: float, pixels: int) -> np.ndarray:
    """[2, 3] affine map from a pixels x pixels upright grid to the image: the square of `side` around `centre`
    turned by `angle` (radians, the image's x axis towards its y axis)."""
    step = side / pixels
    cos, sin = np.cos(angle) * step, np.sin(angle) * step
    half = pixels / 2
    return np.array([[cos, -sin, centre[0] - (cos - sin) * half], [sin, cos, centre[1] - (sin + cos) * half]])


def upright_patches(image: np.ndarray, centres: np.ndarray, sides: np.ndarray, angles: np.ndarray,
                    size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Normalised [N, size, size, 3] patches of turned squares (rotation_grid), and each patch's [2, 3] map from
    patch coordinates to the image. The square is first resampled upright at about the image's resolution (PIL,
    bilinear, black outside), then reduced as `patches` does."""
    out, maps = np.empty((len(centres), size, size, 3), np.float32), []
    pil = Image.fromarray(image)
    for i, (centre, side, angle) in enumerate(zip(centres, sides, angles)):
        pixels = max(size, int(np.ceil(side)))
        grid = rotation_grid(centre, side, angle, pixels)
        upright = np.asarray(pil.transform((pixels, pixels), Image.Transform.AFFINE, tuple(grid.reshape(-1)),
                                           Image.Resampling.BILINEAR))
        out[i] = patches(upright, np.array([[0.0, 0.0, pixels, pixels]]), size)[0]
        maps.append(grid @ np.diag([pixels / size, pixels / size, 1.0]))
    return out, maps
