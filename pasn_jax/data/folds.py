"""Five video-disjoint folds over the union of Aff-Wild2's train and val (paper §4.3.1, Tab. 1), and the records a
split of a config reads (`config.data.fold`: -1 the original split, 0-4 fold k).

Fold k validates on its own videos and trains on those of the four others; the test split is never in a fold.
Aff-Wild2 has no subject ids: a two-person clip's `<name>_left` and `<name>_right` stay together, and a
`video,subject` file (`config.data.subjects`) keeps one person's videos together. Groups are dealt to folds largest
first (the order among equals drawn from `config.data.fold_seed`), each to the fold whose most loaded task (labelled
AU, EXPR and VA frames as shares of their totals) stays lowest: folds balanced in labelled frames per task.

    python -m pasn_jax.data.folds --data_dir SHARDS [--subjects VIDEO_SUBJECT.csv] [--seed S] [--out folds.csv]
"""

import argparse
import csv
import os
import re
import sys

import numpy as np

from pasn_jax import labels
from pasn_jax.data import conversion, shards

NUM_FOLDS = 5
ORIGINAL_SPLIT = -1
POOLED_SPLITS = ("train", "val")  # the folds split their union
_PAIR = re.compile(r"_(left|right)$")


class FoldError(ValueError):
    """A fold that cannot be made; the message names the file, key or video."""


def read_subjects(path: str) -> dict[str, str]:
    """{video: subject} from a CSV of `video,subject` lines (an optional header line `video,subject`)."""
    subjects = {}
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or (lineno == 1 and [v.strip() for v in row] == ["video", "subject"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise FoldError(f"{path}:{lineno}: expected 'video,subject', got '{','.join(row)}'")
            subjects[row[0].strip()] = row[1].strip()
    return subjects


def video_table(data_dir: str, split: str) -> dict[str, dict]:
    """{video: {first, records, au, expr, va}} of a split: its records' range and labelled frames per task, from
    `<split>.json` (shards converted before it held them, or with too many videos to hold it: counted from the
    records)."""
    table = shards.read_metadata(data_dir, split).get("videos")
    if table is None:
        statistics = conversion.FrameStatistics()
        source = shards.ShardSource(data_dir, split)
        for i in range(len(source)):
            statistics.add(source[i], shape=None)
        table = statistics.videos
    apart = [video for video, entry in table.items() if entry["first"] is None]
    if apart:
        raise FoldError(f"{data_dir}/{split}.json: the records of video {apart[0]} are not together; folds need "
                        "Aff-Wild2 shards as `python -m pasn_jax.data.convert affwild2` writes them")
    return table


def _groups(videos: list[str], subjects: dict[str, str]) -> list[list[str]]:
    """Videos that must share a fold: a clip's _left/_right halves, and the videos of one subject."""
    parent = {v: v for v in videos}

    def root(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    keys: dict[str, str] = {}
    for v in videos:
        for key in ("clip:" + _PAIR.sub("", v), "subject:" + subjects.get(v, subjects.get(_PAIR.sub("", v), ""))):
            if key == "subject:":
                continue
            if key in keys:
                parent[root(v)] = root(keys[key])
            else:
                keys[key] = v
    groups: dict[str, list[str]] = {}
    for v in videos:
        groups.setdefault(root(v), []).append(v)
    return sorted(sorted(g) for g in groups.values())


def assign_folds(counts: dict[str, dict], seed: int = 0, subjects: dict[str, str] | None = None) -> dict[str, int]:
    """{video: fold 0..4} for videos with labelled-frame counts {video: {au, expr, va}}; deterministic for a seed."""
    groups = _groups(sorted(counts), subjects or {})
    per_group = np.array([[sum(counts[v][t] for v in g) for t in labels.TASKS] for g in groups], np.float64)
    totals = per_group.sum(axis=0)
    shares = per_group / np.where(totals > 0, totals, 1.0)  # [G, 3]
    order = np.random.default_rng([seed, 5]).permutation(len(groups))
    order = order[np.argsort(-shares[order].sum(axis=1), kind="stable")]  # largest first, equals in seeded order
    loads = np.zeros((NUM_FOLDS, len(labels.TASKS)))
    sizes = np.zeros(NUM_FOLDS, np.int64)
    fold_of = {}
    for g in order:
        after = loads + shares[g]
        fold = min(range(NUM_FOLDS), key=lambda f: (after[f].max(), after[f].sum(), sizes[f], f))
        loads[fold] = after[fold]
        sizes[fold] += 1
        fold_of.update({v: fold for v in groups[g]})
    return fold_of


def pooled_folds(data_dir: str, seed: int = 0, subjects_path: str = "") -> tuple[dict[str, int], dict[str, tuple]]:
    """({video: fold}, {video: (split, table entry)}) over the union of a shard folder's train and val."""
    subjects = read_subjects(subjects_path) if subjects_path else {}
    where = {}
    for split in POOLED_SPLITS:
        for video, entry in video_table(data_dir, split).items():
            if video in where:
                raise FoldError(f"{data_dir}: video {video} is in both train and val")
            where[video] = (split, entry)
    return assign_folds({v: e for v, (_, e) in where.items()}, seed, subjects), where


class VideoSubset:
    """A random-access source over whole videos of several splits' shards, video after video (grain-picklable)."""

    def __init__(self, sources: dict[str, shards.ShardSource], ranges: list[tuple[str, int, int]]):
        self._sources = sources
        self._ranges = ranges  # (split, first record, records)
        self._starts = np.cumsum([0] + [n for _, _, n in ranges])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return f"VideoSubset({len(self._ranges)} videos, {len(self)} records)"

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        split, first, _ = self._ranges[part]
        return self._sources[split][first + index - int(self._starts[part])]


def split_source(data_dir: str, split: str, data_config):
    """The records that `split` ('train', 'val' or 'test') means under `data_config.fold` (-1: the split as stored;
    k: for train the videos of the other folds, for val those of fold k; test is never folded)."""
    fold = int(data_config.get("fold", ORIGINAL_SPLIT))
    if fold == ORIGINAL_SPLIT or split not in POOLED_SPLITS:
        return shards.ShardSource(data_dir, split)
    if not 0 <= fold < NUM_FOLDS:
        raise FoldError(f"config.data.fold: expected {ORIGINAL_SPLIT} (the original split) or 0..{NUM_FOLDS - 1}, "
                        f"got {fold}")
    fold_of, where = pooled_folds(data_dir, data_config.get("fold_seed", 0), data_config.get("subjects", ""))
    chosen = sorted(v for v in fold_of if (fold_of[v] == fold) == (split == "val"))
    sources = {s: shards.ShardSource(data_dir, s) for s in POOLED_SPLITS}
    return VideoSubset(sources, [(where[v][0], where[v][1]["first"], where[v][1]["records"]) for v in chosen])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pasn_jax.data.folds", description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="converted Aff-Wild2 shards (train and val)")
    parser.add_argument("--subjects", default="", help="CSV of video,subject: one person's videos stay together")
    parser.add_argument("--seed", type=int, default=0, help="config.data.fold_seed")
    parser.add_argument("--out", default="", help="also write video,split,fold to this CSV")
    args = parser.parse_args(argv)
    try:
        fold_of, where = pooled_folds(args.data_dir, args.seed, args.subjects)
    except (FoldError, shards.ShardError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(fold_of)} videos of train and val in {NUM_FOLDS} folds (seed {args.seed})")
    print("fold  videos  frames AU  frames EXPR  frames VA")
    for fold in range(NUM_FOLDS):
        videos = [v for v in sorted(fold_of) if fold_of[v] == fold]
        n = {t: sum(where[v][1][t] for v in videos) for t in labels.TASKS}
        print(f"{fold:>4}  {len(videos):>6}  {n['au']:>9}  {n['expr']:>11}  {n['va']:>9}   {' '.join(videos)}")
    if args.out:
        tmp = f"{args.out}.tmp-{os.getpid()}"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video", "split", "fold"])
            w.writerows([v, where[v][0], fold_of[v]] for v in sorted(fold_of))
        os.replace(tmp, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
