"""MTCNN face detection (Zhang et al. 2016, the paper's §4.1 face detector) with the `mtcnn` package's weights.

Stages, as MTCNN does them:
1. P-Net on an image pyramid (scales (12 / min_face_size) * scale_factor^k while the shorter side stays >= 12 px):
   windows with face probability > thresholds[0], NMS (IoU 0.5) per scale, NMS (0.7) over scales, box regression,
   squaring.
2. R-Net on 24x24 patches: probability > thresholds[1], NMS (0.7), regression, squaring.
3. O-Net on 48x48 patches: probability > thresholds[2], landmarks, regression, NMS (0.7, over the smaller box).
4. Beyond MTCNN (refine_landmarks, on by default; boxes and scores unchanged): a second O-Net pass for the
   landmarks, on each face's squared final box turned upright along the eye line of the first landmarks. O-Net
   places landmarks best on upright, centred faces: on 150 scenes of the astronaut turned by up to 30 degrees
   (tests/test_faces.py) the worst eye error after alignment falls from 5.8% to 3.9% of the crop size.

Video (`follow`, used by stream.py): the faces of the previous frame are followed into the next one by stages 2
and 3 alone, R-Net and O-Net on the squares of their boxes (the box regressions move them with the face), skipping
the pyramid: the cascade of a search without its first stage (O-Net alone, on the astronaut clip of
tests/test_face_stream.py, scored the coffee a face had just left 0.75, just under its threshold).

Networks are jit-compiled; P-Net inputs are padded to size buckets and every batch to a power of two, so that a
stream of frames (or photographs of similar sizes) compiles a handful of programs. Pyramid and patch resampling and
the box arithmetic run on the host; the networks on JAX's default device (CPU or GPU).

Landmarks are, in this order: left eye, right eye, nose, mouth left, mouth right, where left/right mean the side of
the image (the left eye is the subject's right eye, the one with the smaller x in an upright face), the convention
of MTCNN and of the insightface template (align.py). Coordinates are continuous pixels (crops.py); boxes may reach
outside the image.
"""

import dataclasses
import math

import jax
import numpy as np

from pasn_jax.faces import boxes as box_ops
from pasn_jax.faces import crops, networks, weights

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
_PIXEL_BUDGET = 1 << 22  # input pixels per P-Net call (bounds the activations' memory)
_MAX_BATCH = 256  # R-Net / O-Net batches: powers of two up to this


# Shared by every Detector (one compilation per input shape per process); parameters are arguments, not constants.
_PNET = jax.jit(lambda params, x, valid: networks.PNet().apply(params, x, valid))
_NETWORKS = {"rnet": jax.jit(lambda params, x: networks.RNet().apply(params, x)),
             "onet": jax.jit(lambda params, x: networks.ONet().apply(params, x))}


class FaceInputError(ValueError):
    """An image or option given to the detector is not usable; the message names it."""


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: an array field has no truth value
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float  # O-Net face probability
    landmarks: np.ndarray  # [5, 2] (x, y) in LANDMARK_NAMES order


def _bucket(n: int) -> int:
    """n rounded up to a multiple of 16, or of 1/16 of its power of two (at most ~6% padding)."""
    step = max(16, 1 << max(0, n.bit_length() - 5))
    return -(-n // step) * step


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _pnet_output_size(n: int) -> int:
    return max(0, math.ceil((n - 2) / 2) - 4)


def _check_image(image, index: int) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise FaceInputError(f"image {index}: expected a uint8 RGB array [H, W, 3], got {array.dtype} "
                             f"{list(array.shape)}")
    return np.ascontiguousarray(array)


class Detector:
    """MTCNN with weights loaded once; `detect(image)` and `detect_batch(images)` give lists of Face, best first.

    thresholds: the stages' face probabilities, (0.6, 0.7, 0.8) as the mtcnn package 1.0.0 whose weights these are
    (the original MTCNN's O-Net threshold was 0.7: on the 600 scenes of tests/test_faces.py, with the 0.709 pyramid,
    it gave 0.027 false positives per image, 0.8 gives 0.017, 0.9 0.003 at a lower recall of LFW's crops).
    min_face_size: the smallest face side searched, in pixels (the first pyramid scale is 12 / min_face_size).
    scale_factor: between pyramid levels, 0.79 rather than MTCNN's 0.709: on those scenes LFW's tight crops are
    found 0.950 of the time instead of 0.925 (false positives 0.015 per image), for a search about 25% slower."""

    def __init__(self, *, min_face_size: float = 20.0, scale_factor: float = 0.79,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8), refine_landmarks: bool = True,
                 weights_dir: str | None = None):
        if min_face_size < 1:
            raise FaceInputError(f"min_face_size must be >= 1 pixel, got {min_face_size}")
        if not 0.1 <= scale_factor < 1:
            raise FaceInputError(f"scale_factor must be in [0.1, 1), got {scale_factor}")
        if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
            raise FaceInputError(f"thresholds must be 3 probabilities in [0, 1), got {thresholds}")
        self.min_face_size, self.scale_factor, self.thresholds = float(min_face_size), scale_factor, tuple(thresholds)
        self.refine_landmarks = refine_landmarks
        arrays = weights.load_all(weights_dir)
        self._params = {n: jax.device_put(networks.params_from_arrays(n, arrays[n])) for n in weights.NETWORKS}

    def scales(self, height: int, width: int) -> list[float]:
        """The pyramid's scales for an image of this size."""
        scale, out = 12.0 / self.min_face_size, []
        while min(height, width) * scale >= 12:
            out.append(scale)
            scale *= self.scale_factor
        return out

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one uint8 RGB image [H, W, 3], best score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images) -> list[list[Face]]:
        """Faces of each image (uint8 RGB [H, W, 3], sizes may differ), networks batched over all of them."""
        images = [_check_image(image, i) for i, image in enumerate(images)]
        candidates = self._proposals(images)
        candidates = self._refine(images, candidates)
        return self._output(images, candidates)

    def follow(self, image: np.ndarray, previous: list[Face]) -> list[Face]:
        """The faces `previous` (found in the frame before) in `image`: stages 2 and 3 on the squares of their boxes,
        without the pyramid; a face R-Net or O-Net no longer accepts is dropped."""
        image = _check_image(image, 0)
        if not previous:
            return []
        squares = [box_ops.square(np.array([face.box for face in previous]))]
        return self._output([image], self._refine([image], squares))[0]

    # Stage 1
    def _proposals(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Squared P-Net boxes [N, 4] per image."""
        groups: dict[tuple[int, int], list] = {}
        for index, image in enumerate(images):
            height, width = image.shape[:2]
            for scale in self.scales(height, width):
                size = (math.ceil(height * scale), math.ceil(width * scale))
                groups.setdefault((_bucket(size[0]), _bucket(size[1])), []).append((index, size))
        found = [[] for _ in images]  # per image: (boxes, scores, offsets) of each scale after NMS
        for (bucket_h, bucket_w), members in sorted(groups.items()):
            per_call = 1 << max(0, (_PIXEL_BUDGET // (bucket_h * bucket_w)).bit_length() - 1)
            for start in range(0, len(members), per_call):
                chunk = members[start:start + per_call]
                x = np.zeros((_pow2(len(chunk)), bucket_h, bucket_w, 3), np.float32)
                valid = np.full((len(x), 2), (bucket_h, bucket_w), np.int32)
                for row, (index, (h, w)) in enumerate(chunk):
                    x[row, :h, :w] = crops.resize(images[index], h, w)
                    valid[row] = (h, w)
                regression, probability = jax.device_get(_PNET(self._params["pnet"], x, valid))
                for row, (index, (h, w)) in enumerate(chunk):
                    image_h, image_w = images[index].shape[:2]
                    found[index].append(self._windows(regression[row], probability[row], h, w, h / image_h,
                                                      w / image_w))
        out = []
        for per_scale in found:
            boxes = np.concatenate([f[0] for f in per_scale] + [np.zeros((0, 4))])
            scores = np.concatenate([f[1] for f in per_scale] + [np.zeros(0)])
            offsets = np.concatenate([f[2] for f in per_scale] + [np.zeros((0, 4))])
            keep = box_ops.nms(boxes, scores, 0.7)
            out.append(box_ops.square(box_ops.regress(boxes[keep], offsets[keep])))
        return out

    def _windows(self, regression, probability, h, w, scale_y, scale_x):
        """One pyramid level's windows above thresholds[0], NMS 0.5: boxes (image pixels), scores, offsets."""
        probability = probability[:_pnet_output_size(h), :_pnet_output_size(w)]
        rows, cols = np.nonzero(probability > self.thresholds[0])
        scores = probability[rows, cols].astype(np.float64)
        boxes = np.stack([2 * cols / scale_x, 2 * rows / scale_y, (2 * cols + 12) / scale_x,
                          (2 * rows + 12) / scale_y], axis=1).astype(np.float64)
        keep = box_ops.nms(boxes, scores, 0.5)
        return boxes[keep], scores[keep], regression[rows, cols].astype(np.float64)[keep]

    # Stages 2 and 3
    def _run(self, network: str, patches: np.ndarray) -> list[np.ndarray]:
        """The network's outputs on patches [N, S, S, 3], in batches of power-of-two sizes."""
        apply, outputs = _NETWORKS[network], []
        for start in range(0, len(patches), _MAX_BATCH):
            chunk = patches[start:start + _MAX_BATCH]
            batch = np.zeros((_pow2(len(chunk)),) + chunk.shape[1:], np.float32)
            batch[:len(chunk)] = chunk
            outputs.append([o[:len(chunk)] for o in jax.device_get(apply(self._params[network], batch))])
        return [np.concatenate(parts).astype(np.float64) for parts in zip(*outputs)]

    def _refine(self, images, candidates):
        """Squared R-Net boxes per image."""
        counts = [len(c) for c in candidates]
        if not sum(counts):
            return candidates
        patches = np.concatenate([crops.patches(image, c, 24) for image, c in zip(images, candidates)])
        regression, probability = self._run("rnet", patches)
        out, start = [], 0
        for boxes, count in zip(candidates, counts):
            offsets, scores = regression[start:start + count], probability[start:start + count]
            start += count
            selected = scores > self.thresholds[1]
            boxes, scores, offsets = boxes[selected], scores[selected], offsets[selected]
            keep = box_ops.nms(boxes, scores, 0.7)
            out.append(box_ops.square(box_ops.regress(boxes[keep], offsets[keep])))
        return out

    def _output(self, images, candidates) -> list[list[Face]]:
        """O-Net's faces per image (stage 3), then the upright landmark pass."""
        counts = [len(c) for c in candidates]
        if not sum(counts):
            return [[] for _ in images]
        patches = np.concatenate([crops.patches(image, c, 48) for image, c in zip(images, candidates)])
        regression, landmarks, probability = self._run("onet", patches)
        out, start = [], 0
        for boxes, count in zip(candidates, counts):
            part = slice(start, start + count)
            start += count
            selected = probability[part] > self.thresholds[2]
            boxes, scores = boxes[selected], probability[part][selected]
            points = landmarks[part][selected].reshape(-1, 2, 5).transpose(0, 2, 1)  # [n, 5, (x, y)]
            points = boxes[:, None, :2] + points * (boxes[:, None, 2:] - boxes[:, None, :2])
            boxes = box_ops.regress(boxes, regression[part][selected])
            keep = box_ops.nms(boxes, scores, 0.7, mode="min")
            out.append([Face(box=tuple(float(v) for v in boxes[i]), score=float(scores[i]), landmarks=points[i])
                        for i in keep])
        return self._upright_landmarks(images, out) if self.refine_landmarks else out

    def _upright_landmarks(self, images, faces: list[list[Face]]) -> list[list[Face]]:
        """Landmarks of a second O-Net pass on each face's square turned upright along its eye line."""
        patches, maps = [], []
        for image, found in zip(images, faces):
            if not found:
                continue
            squares = box_ops.square(np.array([face.box for face in found]))
            eyes = np.array([face.landmarks[1] - face.landmarks[0] for face in found])
            crop, grids = crops.upright_patches(image, (squares[:, :2] + squares[:, 2:]) / 2,
                                                squares[:, 2] - squares[:, 0], np.arctan2(eyes[:, 1], eyes[:, 0]), 48)
            patches.append(crop)
            maps.extend(grids)
        if not patches:
            return faces
        _, landmarks, _ = self._run("onet", np.concatenate(patches))
        points = landmarks.reshape(-1, 2, 5).transpose(0, 2, 1) * 48  # [n, 5, 2] in patch pixels
        points = [p @ m[:, :2].T + m[:, 2] for p, m in zip(points, maps)]
        out, index = [], 0
        for found in faces:
            out.append([dataclasses.replace(face, landmarks=points[index + i]) for i, face in enumerate(found)])
            index += len(found)
        return out
