"""Frames of a `cropped_aligned` tree without annotation files (ABAW's test set: the cropped frames and a list of
video names), as a random-access source of frame records with every label missing, for the evaluation pipeline.

Layout: `ROOT/cropped_aligned/<video>/<frame:05d>.jpg`; the list names one video per line (no list: every folder).
The root and the list may be local or on an object store (pasn_jax/paths.py).
"""

import re

from pasn_jax import labels, paths
from pasn_jax.data import affwild2

_IMAGE_NAME = re.compile(r"^(\d{5})\.jpg$")


class TreeError(ValueError):
    """A tree or video list that cannot be read; the message names the file (and line)."""


def read_video_list(path: str) -> list[str]:
    """Video names, one per line (blank lines skipped)."""
    try:
        return [line.strip() for line in paths.path(path).read_text().splitlines() if line.strip()]
    except OSError as e:
        raise TreeError(f"{path}: cannot read the video list ({e.strerror})") from None


class TreeFrames:
    """Frame records (video, frame, image bytes read on access, labels missing) of a tree's videos, in (video, frame)
    order; picklable for grain's workers."""

    def __init__(self, root: str, videos_file: str = ""):
        images = paths.path(root) / affwild2.IMAGES_DIR
        if not images.is_dir():
            raise TreeError(f"{images}: missing folder (expected {affwild2.IMAGES_DIR}/<video>/<frame:05d>.jpg)")
        if videos_file:
            videos = read_video_list(videos_file)
            for lineno, video in enumerate(videos, start=1):
                if not (images / video).is_dir():
                    raise TreeError(f"{videos_file}:{lineno}: no folder {images / video}")
        else:
            videos = sorted(v.name for v in images.iterdir() if v.is_dir())
        self.root, self.videos = root, sorted(videos)
        self._frames = []  # (video, frame)
        for video in self.videos:
            numbers = sorted(int(m.group(1)) for m in (_IMAGE_NAME.match(f.name) for f in (images / video).iterdir())
                             if m)
            if not numbers:
                raise TreeError(f"{images / video}: no frame images (<frame:05d>.jpg)")
            self._frames += [(video, n) for n in numbers]

    def __len__(self) -> int:
        return len(self._frames)

    def __repr__(self) -> str:
        return f"TreeFrames({self.root!r}, {len(self.videos)} videos, {len(self)} frames)"

    def path(self, index: int) -> str:
        video, frame = self._frames[index]
        return paths.join(self.root, affwild2.IMAGES_DIR, video, f"{frame:05d}.jpg")

    def __getitem__(self, index: int) -> dict:
        video, frame = self._frames[index]
        path = self.path(index)
        image = paths.path(path).read_bytes()
        return {"image": image, "video": video, "frame": frame, "au": [labels.AU_MISSING] * labels.NUM_AUS,
                "expr": labels.EXPR_MISSING, "va": [labels.VA_MISSING] * labels.NUM_VA, "where": path}
