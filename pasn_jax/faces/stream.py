"""Faces of consecutive video frames: the full detector on key frames, its last two stages following the faces in
between.

With detect_every = k, frames 0, k, 2k, ... of a stream (counted from its first) are key frames: MTCNN's three
stages search the whole frame. On the other frames `Detector.follow` re-finds the previous frame's faces with R-Net
and O-Net alone (P-Net's pyramid skipped: ~10 ms a frame against ~190 ms for a search of a 640 x 360 frame on 2 CPU
cores); where it loses one of them (occlusion, a cut) the frame is searched again in full at once. A face that
enters the picture is found at the next key frame, at most k - 1 frames late. k = 1 searches every frame (batched
over frames, as `Detector.detect_batch`).
"""

from pasn_jax.faces.detector import Detector, Face, FaceInputError


class FrameDetector:
    def __init__(self, detector: Detector, detect_every: int = 1):
        if detect_every < 1:
            raise FaceInputError(f"detect_every must be >= 1 frame, got {detect_every}")
        self.detector, self.detect_every = detector, detect_every
        self.frames = 0  # frames seen
        self.searches = 0  # frames searched in full
        self._previous: list[Face] = []

    def __call__(self, images) -> list[list[Face]]:
        """Faces of each of the next frames of the stream (uint8 RGB [H, W, 3]), in order."""
        images = list(images)
        if self.detect_every == 1:
            self.frames += len(images)
            self.searches += len(images)
            return self.detector.detect_batch(images)
        return [self._next(image) for image in images]

    def _next(self, image) -> list[Face]:
        faces = None
        if self.frames % self.detect_every:
            faces = self.detector.follow(image, self._previous)
            if len(faces) < len(self._previous):
                faces = None  # a face lost: search the frame
        if faces is None:
            faces = self.detector.detect(image)
            self.searches += 1
        self.frames += 1
        self._previous = faces
        return faces
