"""Face tracks across frames: greedy IoU matching of each frame's boxes to the tracks' last boxes.

Pairs are taken best IoU first, each track and each box at most once, a pair only if IoU >= iou_threshold (0.3);
an unmatched box starts a new track; a track unmatched for more than max_missed consecutive frames ends (a face
seen again later gets a new id). Track ids count from 0 in order of creation.
"""

import numpy as np

from pasn_jax.faces import boxes as box_ops


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10):
        if not 0 < iou_threshold <= 1 or max_missed < 0:
            raise ValueError(f"tracker: need 0 < iou_threshold <= 1 and max_missed >= 0, got {iou_threshold}, "
                             f"{max_missed}")
        self.iou_threshold, self.max_missed = iou_threshold, max_missed
        self._tracks: dict[int, list] = {}  # id -> [last box, frames missed]
        self.num_tracks = 0

    def update(self, boxes) -> list[int]:
        """Track ids of this frame's boxes [N, 4] (x0, y0, x1, y1), in the boxes' order."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = list(self._tracks)
        overlap = box_ops.iou(np.array([self._tracks[i][0] for i in ids]).reshape(-1, 4), boxes)
        assigned: list[int | None] = [None] * len(boxes)
        matched = set()
        for flat in np.argsort(-overlap, axis=None, kind="stable"):
            t, b = divmod(int(flat), len(boxes))
            if overlap[t, b] < self.iou_threshold:
                break
            if ids[t] not in matched and assigned[b] is None:
                assigned[b] = ids[t]
                matched.add(ids[t])
        for b, box in enumerate(boxes):
            if assigned[b] is None:
                assigned[b] = self.num_tracks
                self.num_tracks += 1
            self._tracks[assigned[b]] = [box, 0]
        for i in ids:
            if i not in matched:
                self._tracks[i][1] += 1
                if self._tracks[i][1] > self.max_missed:
                    del self._tracks[i]
        return assigned
