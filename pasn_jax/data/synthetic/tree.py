"""Writes a synthetic Aff-Wild2 tree in the ABAW2 layout (ARCHITECTURE.md, "Label conventions"): every test and the
demo read it through the real Aff-Wild2 reading path.

Per video an identity (face shape, skin, hair, parts' placement, clothes, background) and smooth per-frame
nuisances (pose, scale, translation, lighting, noise, JPEG quality); expressions change in segments and drive the
12 AUs (plan.py); faces are drawn by face.py, frames by frames.py.

    python -m pasn_jax.data.synthetic --out DIR [--videos N --frames M --size PX --seed S --test-videos T]
        [--expr-keep F]

Test videos (people in neither train nor val) are labelled in Test_Set and listed, one name per line, in
`test_videos.txt`: the list that ABAW gives with its unlabelled test set.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time

import numpy as np

from pasn_jax import labels
from pasn_jax.data import affwild2
from pasn_jax.data.synthetic.face import Identity, sample_identity
from pasn_jax.data.synthetic.frames import FrameRenderer, render_background
from pasn_jax.data.synthetic.plan import SyntheticError, VideoPlan, plan_videos

GENERATOR_VERSION = 2  # bump when the rendering or labelling changes (invalidates prepared caches)
MARKER_FILE = affwild2.MARKER_FILE
TEST_LIST_FILE = "test_videos.txt"


def label_lines(plan: VideoPlan, task: str) -> list[str]:
    lines = [labels.HEADERS[task]]
    sentinel = {"au": ",".join([str(labels.AU_MISSING)] * labels.NUM_AUS), "expr": str(labels.EXPR_MISSING),
                "va": f"{labels.VA_MISSING:g},{labels.VA_MISSING:g}"}[task]
    for t in range(plan.num_frames):
        if plan.unannotated[task][t]:
            lines.append(sentinel)
        elif task == "au":
            lines.append(",".join(str(int(v)) for v in plan.au[t]))
        elif task == "expr":
            lines.append(str(int(plan.expr[t])))
        else:
            lines.append(f"{plan.va[t, 0]:.4f},{plan.va[t, 1]:.4f}")
    return lines



def video_identity(plan: VideoPlan) -> Identity:
    """The person of a video (each video is a new person, so train and val identities are disjoint)."""
    return sample_identity(np.random.default_rng(list(plan.seed) + [1]))



def _write_text(path: str, lines: list[str]) -> None:
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_tree(plans: list[VideoPlan], root: str, size: int) -> dict:
    """Writes the Aff-Wild2 tree of `plans` under `root` (which must not exist yet); returns counts."""
    counts = {"videos": len(plans), "images": 0, "faceless_frames": 0, "images_without_label": 0}
    backgrounds = {}
    for plan in plans:
        video_dir = os.path.join(root, affwild2.IMAGES_DIR, plan.name)
        os.makedirs(video_dir)
        scene_rng = np.random.default_rng(list(plan.seed) + [2])
        backgrounds[plan.name] = backgrounds[plan.background_from] if plan.background_from else \
            render_background(scene_rng, size)
        renderer = FrameRenderer(video_identity(plan), plan.seed, size, backgrounds[plan.name])
        extra_intensity = plan.intensity[-1]
        for t in range(plan.num_frames + plan.extra_images):
            if t < plan.num_frames and plan.faceless[t]:
                counts["faceless_frames"] += 1
                continue
            data = renderer.jpeg(t, plan.intensity[t] if t < plan.num_frames else extra_intensity)
            with open(os.path.join(video_dir, f"{t + 1:05d}.jpg"), "wb") as f:
                f.write(data)
            counts["images"] += 1
        counts["images_without_label"] += plan.extra_images
        for task in plan.tasks:
            folder = os.path.join(root, affwild2.ANNOTATIONS_DIR, affwild2.TASK_SETS[task],
                                  affwild2.SPLIT_SETS[plan.split])
            os.makedirs(folder, exist_ok=True)
            _write_text(os.path.join(folder, plan.name + ".txt"), label_lines(plan, task))
    splits = {p.split for p in plans} | set(affwild2.REQUIRED_SPLITS)
    for task_set in affwild2.TASK_SETS.values():  # the layout has every folder, even if a split has no such video
        for split in splits:
            os.makedirs(os.path.join(root, affwild2.ANNOTATIONS_DIR, task_set, affwild2.SPLIT_SETS[split]),
                        exist_ok=True)
    test = [p.name for p in plans if p.split == "test"]
    if test:
        _write_text(os.path.join(root, TEST_LIST_FILE), test)
    return counts


@contextlib.contextmanager
def new_folder(out: str):
    """A temporary folder beside `out` (which must not exist yet) to write into: renamed to `out` when the block
    ends, removed when it raises, so that `out` is either whole or absent."""
    if os.path.exists(out):
        raise SyntheticError(f"{out}: already exists; remove it or choose another --out")
    tmp = f"{out.rstrip(os.sep)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        yield tmp
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def generate(out: str, *, videos: int, frames: int, size: int, seed: int, test_videos: int = 0,
             expr_keep: float = 1.0) -> dict:
    """Renders a synthetic Aff-Wild2 tree into `out` (temporary folder, renamed at the end); returns the marker.
    `expr_keep` < 1: only that share of the training videos keeps its EXPR labels (plan_videos)."""
    if size < 32:
        raise SyntheticError(f"--size must be >= 32 pixels, got {size}")
    start = time.perf_counter()
    plans = plan_videos(videos, frames, seed, test_videos, expr_keep)
    with new_folder(out) as tmp:
        counts = write_tree(plans, tmp, size)
        marker = {
            "generator": "pasn_jax.data.synthetic", "version": GENERATOR_VERSION, "seed": seed, "videos": videos,
            "frames": frames, "size": size, "test_videos": test_videos, "expr_keep": expr_keep,
            "splits": {s: [p.name for p in plans if p.split == s] for s in affwild2.SPLIT_SETS
                       if s in affwild2.REQUIRED_SPLITS or test_videos},
            "task_sets": {p.name: list(p.tasks) for p in plans},
            **counts, "seconds": round(time.perf_counter() - start, 3),
        }
        _write_text(os.path.join(tmp, MARKER_FILE), [json.dumps(marker, indent=1)])
    return marker



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to create (must not exist)")
    parser.add_argument("--videos", type=int, default=16, help="number of videos over both splits")
    parser.add_argument("--frames", type=int, default=120, help="label lines (frames) per video")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-videos", type=int, default=0, help="videos of held-out people (Test_Set)")
    parser.add_argument("--expr-keep", type=float, default=1.0,
                        help="share of training videos that keep their EXPR labels (the others lose them)")
    args = parser.parse_args(argv)
    try:
        marker = generate(args.out, videos=args.videos, frames=args.frames, size=args.size, seed=args.seed,
                          test_videos=args.test_videos, expr_keep=args.expr_keep)
    except (SyntheticError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    split_counts = ", ".join(f"{len(names)} {split}" for split, names in marker["splits"].items())
    print(f"wrote {args.out}: {marker['videos']} videos ({split_counts}), {marker['images']} images at {args.size} px, "
          f"{marker['faceless_frames']} label lines without image, {marker['images_without_label']} images without "
          f"label line, in {marker['seconds']:.1f} s ({marker['images'] / marker['seconds']:.0f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
