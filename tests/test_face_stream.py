"""pasn_jax.faces.stream: a video's faces searched in full on key frames and followed by O-Net in between, against
the full search of every frame, on a clip made of scikit-image's astronaut (see test_faces.py): her head moves and
turns, a second head enters at frame 7 and the first leaves at frame 14."""

import numpy as np
import pytest
import skimage.data
from PIL import Image
from test_faces import _face_source, _warp

from pasn_jax.faces import boxes
from pasn_jax.faces.detector import Detector, FaceInputError
from pasn_jax.faces.stream import FrameDetector

WIDTH, HEIGHT, FRAMES, ENTERS, LEAVES = 320, 200, 18, 7, 14


def _clip() -> list[np.ndarray]:
    patch, mask, box, _ = _face_source(None, "astronaut")
    background = np.asarray(Image.fromarray(skimage.data.coffee()).resize((WIDTH, HEIGHT)), np.float32)
    centre = (box[:2] + box[2:]) / 2

    def paste(image, scale, degrees, at):
        angle = np.deg2rad(degrees)
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = np.concatenate([rotation, (np.asarray(at) - rotation @ centre)[:, None]], axis=1)
        canvas = max(WIDTH, HEIGHT)
        alpha = (_warp(mask, matrix, canvas).astype(np.float32)[..., None] / 255)[:HEIGHT, :WIDTH]
        return image * (1 - alpha) + _warp(patch, matrix, canvas)[:HEIGHT, :WIDTH] * alpha

    frames = []
    for t in range(FRAMES):
        image = background.copy()
        if t < LEAVES:
            image = paste(image, 0.55, 1.5 * t, (80 + 3 * t, 100 + t))
        if t >= ENTERS:
            image = paste(image, 0.5, -8.0, (250, 95))
        frames.append(image.round().astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


def test_followed_faces_equal_searched_ones_and_new_faces_wait_for_a_key_frame(detector):
    frames = _clip()
    searched = detector.detect_batch(frames)
    assert [len(f) for f in searched] == [(t < LEAVES) + (t >= ENTERS) for t in range(FRAMES)]
    stream = FrameDetector(detector, detect_every=5)
    followed = stream(frames[:8]) + stream(frames[8:])  # state carries across calls
    # Keys 0, 5, 10, 15; the second head, entering at 7, waits for key 10; frame 14 loses the first: searched too.
    assert stream.frames == FRAMES and stream.searches == 5
    expected = [(t < LEAVES) + (t >= 10) for t in range(FRAMES)]
    assert [len(f) for f in followed] == expected
    worst = 0.0  # largest landmark difference over the matched box's side (README's figure)
    for t, (mine, reference) in enumerate(zip(followed, searched)):
        for face in mine:
            overlap = boxes.iou(np.array([face.box]), np.array([f.box for f in reference]))[0]
            match = reference[int(overlap.argmax())]
            side = match.box[3] - match.box[1]
            assert overlap.max() >= 0.8, (t, overlap)
            difference = np.abs(face.landmarks - match.landmarks).max()
            assert difference <= 0.03 * side, (t, face.landmarks, match.landmarks)
            worst = max(worst, float(difference / side))
    print(f"followed landmarks within {worst:.1%} of the box side of the searched ones")


def test_every_frame_searched_by_default_and_bad_option(detector):
    frames = _clip()[:3]
    stream = FrameDetector(detector)
    found = stream(frames)
    assert stream.searches == 3
    for mine, reference in zip(found, detector.detect_batch(frames)):
        assert [f.box for f in mine] == [f.box for f in reference]
    with pytest.raises(FaceInputError, match="detect_every must be >= 1"):
        FrameDetector(detector, detect_every=0)
