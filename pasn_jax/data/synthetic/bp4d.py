"""A synthetic BP4D-Spontaneous tree in the release's layout (pasn_jax/data/bp4d.py reads it): whole camera frames of
a few subjects performing a few tasks, and AU_OCC CSVs coding a range of each sequence.

    <out>/Sequences/<subject>/<task>/<frame>.jpg     subjects F001, M001, F002, ...; tasks T1, T2, ...
    <out>/AUCoding/AU_OCC/<subject>_<task>.csv
    <out>/synthetic_bp4d.json                        the marker: generator, version, seed, sizes, counts

Each subject is a new person (face.sample_identity, seeded by (seed, subject)), placed smaller than in the
synthetic Aff-Wild2 (half face height SCENE_FACE_SCALE of the frame side, so a face ~70-100 px tall at 160 px)
somewhere in a scene of their own per task (frames.render_background), rendered by frames.FrameRenderer with its
pose, light and noise nuisances. Expressions change in short segments (plan.sample_expression per segment, blended
over plan.TRANSITION_FRAMES) and drive the 12 ABAW AUs as in the synthetic Aff-Wild2; an AU is coded 1 when its
pre-jitter intensity reaches plan.AU_LABEL_THRESHOLD.

The CSVs: header `0,1,2,...,99` (the frame column, then AU numbers 1..99, as BP4D's files carry more AUs than it
codes); per coded row the frame number, then per AU 0/1/9. What the columns hold:
- the 10 AUs shared with Aff-Wild2 (1, 2, 4, 6, 7, 10, 12, 15, 23, 24): the drawn AUs' labels;
- AU14 and AU17 (coded by BP4D, not drawn by the renderer, so not visible): AU14 (dimpler) 1 with probability
  BP4D_ONLY_PROB where AU12 is 1, AU17 (chin raiser) 1 with that probability where AU15 or AU24 is 1, else 0;
- every other column (AU25 and AU26 included: BP4D does not code them, though the renderer draws them): 9.
Odd codes and gaps of the release: some coded cells are 9 (UNKNOWN_PROB, and one row per tree with all 12 coded
AUs 9); the coded range starts after the first image and ends before the last; one coded row per tree has no
image; frame file names use a zero padding that varies by sequence (none, 3 or 4 digits).
"""

import dataclasses
import json
import os
import time

import numpy as np

from pasn_jax import labels
from pasn_jax.data import bp4d
from pasn_jax.data.synthetic import plan
from pasn_jax.data.synthetic.face import sample_identity
from pasn_jax.data.synthetic.frames import FrameRenderer, render_background
from pasn_jax.data.synthetic.plan import SyntheticError
from pasn_jax.data.synthetic.tree import new_folder

GENERATOR = "pasn_jax.data.synthetic.bp4d"
GENERATOR_VERSION = 1  # bump when the rendering or labelling changes (invalidates prepared caches)
MARKER_FILE = bp4d.MARKER_FILE
BP4D_CODED = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)  # labels.BP4D_AUS as numbers
CSV_AUS = tuple(range(1, 100))  # the CSV's AU columns
SEGMENT_FRAMES = (2, 6)  # frames per expression segment (short: sequences are short)
SCENE_FACE_SCALE = (0.22, 0.30)  # half face height / frame side (the synthetic Aff-Wild2's crops use 0.38-0.44)
SCENE_FACE_MARGIN = 0.05  # the face centre keeps scale + this from the frame's edges (fractions of the side)
UNKNOWN_PROB = 0.04  # each coded AU cell is 9 with this chance
BP4D_ONLY_PROB = 0.6  # see the module docstring (AU14, AU17)
PADDINGS = (0, 3, 4)  # frame file name digits (0: no padding)
FIRST_FRAME = (1, 5)  # range of a sequence's first image's number
TASKS = tuple(f"T{i}" for i in range(1, 9))
UNKNOWN = bp4d.UNKNOWN

_ABAW = {int(name[2:]): i for i, name in enumerate(labels.AU_NAMES)}


def subject_names(count: int) -> list[str]:
    """F001, M001, F002, M002, ..."""
    return [f"{'FM'[i % 2]}{i // 2 + 1:03d}" for i in range(count)]


def _intensities(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Pre-jitter AU intensities [F, 12] of one sequence: plan.sample_expression per short segment, blended."""
    intensity = np.zeros((frames, labels.NUM_AUS))
    previous, start = None, 0
    while start < frames:
        stop = min(frames, start + int(rng.integers(SEGMENT_FRAMES[0], SEGMENT_FRAMES[1] + 1)))
        _, target, _ = plan.sample_expression(rng)
        for t in range(start, stop):
            blend = 1.0 if previous is None else min(1.0, (t - start + 1) / plan.TRANSITION_FRAMES)
            intensity[t] = target if previous is None else (1 - blend) * previous + blend * target
        previous, start = target, stop
    return intensity


def _coded_row(rng: np.random.Generator, frame: int, au: np.ndarray) -> list[int]:
    """One CSV row: the frame number and the codes of CSV_AUS, from the frame's ABAW AU labels [12]."""
    codes = {n: UNKNOWN for n in CSV_AUS}
    for number in BP4D_CODED:
        if number in _ABAW:
            codes[number] = int(au[_ABAW[number]])
    codes[14] = int(codes[12] == 1 and rng.random() < BP4D_ONLY_PROB)
    codes[17] = int((codes[15] == 1 or codes[24] == 1) and rng.random() < BP4D_ONLY_PROB)
    for number in BP4D_CODED:
        if rng.random() < UNKNOWN_PROB:
            codes[number] = UNKNOWN
    return [frame] + [codes[n] for n in CSV_AUS]



def _sequence(root: str, subject: int, task: int, name: str, identity, seed: int, frames: int, size: int,
              counts: dict) -> list[list[int]]:
    """Renders one sequence's frames into Sequences/<subject>/<task>/ and returns its AU_OCC rows."""
    subject_name, task_name = name.split("_")
    rng = np.random.default_rng([seed, 2, subject, task])
    folder = os.path.join(root, bp4d.SEQUENCES_DIR, subject_name, task_name)
    os.makedirs(folder)
    first = int(rng.integers(FIRST_FRAME[0], FIRST_FRAME[1] + 1))
    padding = PADDINGS[int(rng.integers(len(PADDINGS)))]
    intensity = _intensities(rng, frames)
    au = (intensity >= plan.AU_LABEL_THRESHOLD).astype(np.int64)
    drawn = np.clip(intensity + rng.uniform(0, plan.INACTIVE_JITTER, intensity.shape), 0, 1)
    # the coded range: after the first image, before the last
    start = int(rng.integers(1, max(2, frames // 3)))
    stop = int(rng.integers(max(start + 1, frames - max(2, frames // 3) + 1), frames))
    renderer = FrameRenderer(identity, (seed, 2, subject, task), size,
                             render_background(np.random.default_rng([seed, 3, subject, task]), size))
    for t in range(frames):
        with open(os.path.join(folder, f"{first + t:0{padding}d}.jpg"), "wb") as f:
            f.write(renderer.jpeg(t, drawn[t]))
        counts["images"] += 1
    counts["images_without_label"] += frames - (stop - start)
    return [_coded_row(rng, first + t, au[t]) for t in range(start, stop)]


def _write_csv(path: str, rows: list[list[int]]) -> None:
    with open(path, "w") as f:
        f.write(",".join(str(n) for n in (0,) + CSV_AUS) + "\n")
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)


def _image_path(root: str, name: str, frame: int) -> str:
    subject, task = name.split("_")
    images = bp4d.sequence_images(os.path.join(root, bp4d.SEQUENCES_DIR, subject, task))
    return images[frame]


def generate(out: str, *, subjects: int = 2, tasks: int = 2, frames: int = 6, size: int = 160, seed: int = 0) -> dict:
    """Renders a synthetic BP4D tree into `out` (a temporary folder renamed at the end); returns the marker."""
    if subjects < 1 or not 1 <= tasks <= len(TASKS) or frames < 4:
        raise SyntheticError(f"subjects must be >= 1, tasks in 1..{len(TASKS)} and frames >= 4, got {subjects}, "
                             f"{tasks} and {frames}")
    if size < 64:
        raise SyntheticError(f"--size must be >= 64 pixels (a whole scene around the face), got {size}")
    begin = time.perf_counter()
    counts = {"sequences": 0, "images": 0, "label_rows": 0, "rows_unknown": 0, "frames_without_image": 0,
              "images_without_label": 0}
    with new_folder(out) as tmp:
        os.makedirs(os.path.join(tmp, bp4d.AU_OCC_DIR))
        coded = {}
        for s, subject in enumerate(subject_names(subjects)):
            person_rng = np.random.default_rng([seed, 1, s])
            identity = sample_identity(person_rng)
            scale = person_rng.uniform(*SCENE_FACE_SCALE)
            edge = scale + SCENE_FACE_MARGIN
            identity = dataclasses.replace(identity, scale=scale, centre=tuple(person_rng.uniform(edge, 1 - edge, 2)))
            for t in range(tasks):
                name = f"{subject}_{TASKS[t]}"
                coded[name] = _sequence(tmp, s, t, name, identity, seed, frames, size, counts)
                counts["sequences"] += 1
        # the release's gaps, once per tree: a coded row with all coded AUs unknown, and one whose image is missing
        gaps = np.random.default_rng([seed, 4])
        names = sorted(coded)
        rows = coded[names[0]]
        unknown_row = rows[int(gaps.integers(len(rows)))]
        for number in BP4D_CODED:
            unknown_row[1 + CSV_AUS.index(number)] = UNKNOWN
        rows = coded[names[-1]]
        candidates = [row for row in rows if row is not unknown_row]
        if candidates:
            missing = candidates[int(gaps.integers(len(candidates)))]
            os.remove(_image_path(tmp, names[-1], missing[0]))
            counts["images"] -= 1
        for name, rows in coded.items():
            _write_csv(os.path.join(tmp, bp4d.AU_OCC_DIR, name + ".csv"), rows)
            counts["label_rows"] += len(rows)
            for row in rows:
                shared = [row[1 + CSV_AUS.index(n)] for n in bp4d.SHARED_AUS]
                if all(v == UNKNOWN for v in shared):
                    counts["rows_unknown"] += 1
                elif candidates and row is missing:
                    counts["frames_without_image"] += 1
        marker = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed, "subjects": subjects,
                  "tasks": tasks, "frames": frames, "size": size, "subject_names": subject_names(subjects), **counts,
                  "seconds": round(time.perf_counter() - begin, 3)}
        with open(os.path.join(tmp, MARKER_FILE), "w") as f:
            f.write(json.dumps(marker, indent=1) + "\n")
    return marker
