"""A synthetic DFEW-like tree in DFEW's release layout (pasn_jax/data/dfew.py), so that the DFEW reader is the path
always exercised: `EmoLabel_DataSplit/{train,test}(single-labeled)/set_<k>.csv` for the five folds and the face
crops `Clip/clip_224x224/<clip:05d>/*.jpg`.

Each clip is a new person (face.sample_identity) showing one expression (plan.sample_expression: the same
expression -> AU prototypes as the synthetic Aff-Wild2) rising from neutral in its first frame to full in its last:
the AU intensities are ramped linearly, rendered with the Aff-Wild2 tree's FrameRenderer. The clip's label is its
expression, written in DFEW's 1-based order (labels.DFEW_TO_ABAW_EXPR inverted).

DFEW's odd codes, each present even in a tiny tree: clip numbers with gaps (DFEW's split files list only its
single-labelled clips), some written without zero padding; one listed clip without a frames folder; one clip folder
listed in no split file; frame files named both `<clip:05d>_<frame:05d>.jpg` and `<frame:05d>.jpg`. Folds as
DFEW's: every listed clip is in exactly one fold's test file and in the four other folds' train files.

The marker `synthetic_dfew.json` holds the generator, version, seed, sizes, counts and per clip what was planned.
"""

import json
import os
import time

import numpy as np

from pasn_jax import labels
from pasn_jax.data import dfew
from pasn_jax.data.synthetic import workers
from pasn_jax.data.synthetic.face import sample_identity
from pasn_jax.data.synthetic.frames import FrameRenderer, render_background
from pasn_jax.data.synthetic.plan import AU_LABEL_THRESHOLD, INACTIVE_JITTER, SyntheticError, sample_expression
from pasn_jax.data.synthetic.tree import new_folder

GENERATOR = "pasn_jax.data.synthetic.dfew"
GENERATOR_VERSION = 1  # bump when the rendering or labelling changes (invalidates prepared caches)
MARKER_FILE = dfew.MARKER_FILE
ABAW_TO_DFEW = {abaw: k for k, abaw in labels.DFEW_TO_ABAW_EXPR.items()}
UNPADDED_PROB = 0.3  # a clip number written without zero padding in the split files
PREFIXED_NAMES_PROB = 0.5  # a clip's frames named <clip:05d>_<frame:05d>.jpg (else <frame:05d>.jpg)
CLIP_NUMBER_SPREAD = 3  # clip numbers are drawn from 1 .. this x the number of clip folders (gaps as in DFEW)
_STREAM = 0xDF  # SeedSequence stream of this dataset (Aff-Wild2 tree 0 and 1, identities 7, FEC 8)


def clip_expression(seed: int, index: int, frames: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Clip `index`'s expression (ABAW2 index), its AU intensities per frame, drawn (jittered) [frames, 12], and
    their labels (intensity before jitter >= AU_LABEL_THRESHOLD) [frames, 12]: a linear ramp from neutral (0) in
    the first frame to the expression's full intensities in the last."""
    rng = np.random.default_rng([seed, _STREAM, 1, index])
    expr, target, _ = sample_expression(rng)
    ramp = np.linspace(0.0, 1.0, frames)[:, None] * target[None, :]  # [F, 12]
    drawn = np.clip(ramp + rng.uniform(0, INACTIVE_JITTER, ramp.shape), 0, 1)
    return expr, drawn, (ramp >= AU_LABEL_THRESHOLD).astype(np.int64)


def render_clip(seed: int, index: int, frames: int, size: int) -> list[bytes]:
    """The JPEG frames of clip `index`: a new person (identity and scene from (seed, index)) showing its expression."""
    _, drawn, _ = clip_expression(seed, index, frames)
    identity = sample_identity(np.random.default_rng([seed, _STREAM, 2, index]))
    background = render_background(np.random.default_rng([seed, _STREAM, 3, index]), size)
    renderer = FrameRenderer(identity, (seed, _STREAM, 4, index), size, background)
    return [renderer.jpeg(t, drawn[t]) for t in range(frames)]


def plan_clips(clips: int, frames: int, seed: int) -> list[dict]:
    """Per clip folder index (`clips` listed ones and one unlisted): its number, how the split files write it, its
    fold, frame file naming, whether its folder is written, its expression and DFEW label. Deterministic."""
    rng = np.random.default_rng([seed, _STREAM, 0])
    count = clips + 1
    numbers = np.sort(rng.choice(np.arange(1, CLIP_NUMBER_SPREAD * count + 1), count, replace=False))
    unlisted = int(rng.integers(count))
    listed = [i for i in range(count) if i != unlisted]
    without_folder = listed[int(rng.integers(clips))]
    folds = {i: k % len(dfew.FOLDS) + 1 for k, i in enumerate(rng.permutation(listed).tolist())}
    unpadded = {i: bool(rng.random() < UNPADDED_PROB) for i in listed}
    unpadded[listed[0]], unpadded[listed[-1]] = True, False  # both spellings occur
    with_frames = [i for i in range(count) if i != without_folder]
    prefixed = {i: bool(rng.random() < PREFIXED_NAMES_PROB) for i in with_frames}
    prefixed[with_frames[0]], prefixed[with_frames[-1]] = True, False  # both namings occur
    plans = []
    for i in range(count):
        number = int(numbers[i])
        expr, _, au = clip_expression(seed, i, frames)
        plans.append({
            "index": i, "clip": number, "listed": i != unlisted,
            "written_as": (str(number) if unpadded[i] else f"{number:05d}") if i != unlisted else None,
            "test_fold": folds.get(i), "frames": 0 if i == without_folder else frames,
            "frame_names": None if i == without_folder else ("clip_frame" if prefixed[i] else "frame"),
            "expr": expr, "expr_name": labels.EXPR_NAMES[expr], "label": ABAW_TO_DFEW[expr],
            "apex_au": [name for name, on in zip(labels.AU_NAMES, au[-1]) if on],
        })
    return plans


def frame_name(plan: dict, frame: int) -> str:
    return f"{plan['clip']:05d}_{frame:05d}.jpg" if plan["frame_names"] == "clip_frame" else f"{frame:05d}.jpg"


def _write_split_files(root: str, plans: list[dict]) -> dict:
    listed = [p for p in plans if p["listed"]]
    sizes = {}
    for fold in dfew.FOLDS:
        sizes[fold] = {}
        for split in dfew.SPLIT_FOLDERS:
            rows = [p for p in listed if (p["test_fold"] == fold) == (split == "test")]
            path = dfew.split_file(root, split, fold)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("\n".join([",".join(dfew.HEADER)] + [f"{p['written_as']},{p['label']}" for p in rows]) + "\n")
            sizes[fold][split] = len(rows)
    return sizes


def generate(out: str, *, clips: int = 10, frames: int = 8, size: int = 64, seed: int = 0,
             processes: int | None = None) -> dict:
    """Renders `clips` listed clips (one of them left without frames folder) and one unlisted clip folder, `frames`
    frames each at `size` px, in DFEW's layout into `out` (a temporary folder renamed at the end). Returns the
    marker."""
    if clips < len(dfew.FOLDS) or frames < 2 or size < 32:
        raise SyntheticError(f"--clips must be >= {len(dfew.FOLDS)} (one per fold), --frames >= 2 and --size >= 32, "
                             f"got {clips}, {frames} and {size}")
    start = time.perf_counter()
    plans = plan_clips(clips, frames, seed)
    with new_folder(out) as tmp:
        folds = _write_split_files(tmp, plans)
        drawn = [p for p in plans if p["frames"]]
        rendered = workers.map_ordered(render_clip, [(seed, p["index"], frames, size) for p in drawn],
                                       len(drawn) * frames, processes)
        for plan, jpegs in zip(drawn, rendered):
            folder = os.path.join(tmp, dfew.FRAMES_DIR, f"{plan['clip']:05d}")
            os.makedirs(folder)
            for t, data in enumerate(jpegs, start=1):
                with open(os.path.join(folder, frame_name(plan, t)), "wb") as f:
                    f.write(data)
        counts = {"clips_listed": clips, "clips_without_frames": sum(p["listed"] and not p["frames"] for p in plans),
                  "clips_unlisted": sum(not p["listed"] for p in plans), "images": len(drawn) * frames}
        marker = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed, "clips": clips,
                  "frames": frames, "size": size, **counts,
                  "folds": {str(k): v for k, v in folds.items()}, "clip_plans": plans,
                  "seconds": round(time.perf_counter() - start, 3)}
        with open(os.path.join(tmp, MARKER_FILE), "w") as f:
            f.write(json.dumps(marker, indent=1) + "\n")
    return marker
