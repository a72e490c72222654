"""Aff-Wild2 (ABAW2 layout) reader: annotation files + frame paths -> per-frame records, and their conversion to
shards (ARCHITECTURE.md, "Label conventions").

Layout: `annotations/{AU_Set,EXPR_Set,VA_Set}/{Train_Set,Validation_Set}/<video>.txt` (a header line, then line i
labels frame i, 1-based) and `cropped_aligned/<video>/{i:05d}.jpg`. A split's record for a frame carries every
label that any task set of that split gives it; sentinels stand where a set has no line or marks it unannotated.
"""

import dataclasses
import os
import re

from pasn_jax import labels
from pasn_jax.data import conversion

IMAGES_DIR = "cropped_aligned"
ANNOTATIONS_DIR = "annotations"
# annotations/<task set>/<split set>/<video>.txt
TASK_SETS = {"au": "AU_Set", "expr": "EXPR_Set", "va": "VA_Set"}
SPLIT_SETS = {"train": "Train_Set", "val": "Validation_Set", "test": "Test_Set"}
REQUIRED_SPLITS = ("train", "val")  # ABAW releases no test labels: a Test_Set folder is optional (the synthetic
# Aff-Wild2 writes one, for its held-out people)
# At the root of a tree the synthetic generator wrote: its conversion stores the source 'synthetic'.
MARKER_FILE = "synthetic_affwild2.json"
_IMAGE_NAME = re.compile(r"^(\d{5})\.jpg$")


class AffWild2Error(ValueError):
    """Bad Aff-Wild2 input; the message names the file (and line) and what was expected."""


@dataclasses.dataclass(frozen=True, slots=True)  # slots: a real split holds millions of these
class FrameRecord:
    video: str
    frame: int  # 1-based, the line number after the header
    image_path: str
    au: tuple[int, ...]  # [12] in labels.AU_NAMES order; labels.AU_MISSING where not annotated
    expr: int  # 0..6, labels.EXPR_MISSING where not annotated
    va: tuple[float, float]  # valence, arousal; labels.VA_MISSING where not annotated


@dataclasses.dataclass
class SplitRecords:
    split: str
    records: list[FrameRecord]  # sorted by (video, frame)
    videos: list[str]  # videos with a label file in any task set of the split
    label_lines: dict[str, int]  # task -> label lines read (before dropping image-less frames)
    frames_without_image: int  # frames with a label line but no image: skipped
    images_without_label: int  # images of the split's videos with no label line in any set: ignored


def _parse_au(fields: list[str]) -> tuple[int, ...]:
    values = tuple(int(f) for f in fields)
    if any(v not in (0, 1, labels.AU_MISSING) for v in values):
        raise ValueError
    return values


def _parse_expr(fields: list[str]) -> int:
    value = int(fields[0])
    if not labels.EXPR_MISSING <= value < labels.NUM_EXPRS:
        raise ValueError
    return value


def _parse_va(fields: list[str]) -> tuple[float, float]:
    values = tuple(float(f) for f in fields)  # NaN and inf fail the range test below
    if any(not (-1.0 <= v <= 1.0 or v == labels.VA_MISSING) for v in values):
        raise ValueError
    return values


# task -> (number of fields, parser, what a line must hold)
_TASK_FORMATS = {
    "au": (labels.NUM_AUS, _parse_au, f"{labels.NUM_AUS} integers in {{0, 1, {labels.AU_MISSING}}}"),
    "expr": (1, _parse_expr, f"one integer in {labels.EXPR_MISSING}..{labels.NUM_EXPRS - 1}"),
    "va": (2, _parse_va, f"2 numbers in [-1, 1] or {labels.VA_MISSING:g}"),
}


def parse_annotation_file(path: str, task: str) -> list:
    """Label lines of one annotation file, in frame order (entry i labels frame i + 1)."""
    num_fields, parse, expected = _TASK_FORMATS[task]
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise AffWild2Error(f"{path}: not a UTF-8 text file") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or lines[0].strip() != labels.HEADERS[task]:
        got = lines[0].strip() if lines else "an empty file"
        raise AffWild2Error(f"{path}:1: expected the header '{labels.HEADERS[task]}', got '{got}'")
    values = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.strip().split(",")
        if len(fields) != num_fields:
            raise AffWild2Error(f"{path}:{lineno}: expected {num_fields} comma-separated values, got {len(fields)}")
        try:
            value = parse(fields)
        except ValueError:
            raise AffWild2Error(f"{path}:{lineno}: expected {expected}, got '{line.strip()}'") from None
        values.append(value)
    return values


def _image_frames(video_dir: str) -> set[int]:
    """Frame numbers that have an image in cropped_aligned/<video>/ (empty if the folder is absent)."""
    if not os.path.isdir(video_dir):
        return set()
    frames = set()
    for name in os.listdir(video_dir):
        match = _IMAGE_NAME.match(name)
        if match:
            frames.add(int(match.group(1)))
    return frames


def check_tree(root: str) -> None:
    """Raises AffWild2Error naming the first missing folder of the layout."""
    folders = [root, os.path.join(root, IMAGES_DIR), os.path.join(root, ANNOTATIONS_DIR)]
    folders += [os.path.join(root, ANNOTATIONS_DIR, t, SPLIT_SETS[s]) for t in TASK_SETS.values()
                for s in REQUIRED_SPLITS]
    for folder in folders:
        if not os.path.isdir(folder):
            raise AffWild2Error(f"{folder}: missing folder (expected the Aff-Wild2 layout "
                                f"{IMAGES_DIR}/<video>/ and {ANNOTATIONS_DIR}/<task set>/<split set>/<video>.txt)")


def labelled_splits(root: str) -> list[str]:
    """The splits of a tree with annotation folders: train and val, and test where some task set has Test_Set."""
    return [s for s in SPLIT_SETS if s in REQUIRED_SPLITS
            or any(os.path.isdir(os.path.join(root, ANNOTATIONS_DIR, t, SPLIT_SETS[s])) for t in TASK_SETS.values())]


def read_split(root: str, split: str) -> SplitRecords:
    """All frame records of `split` ('train' from Train_Set, 'val' from Validation_Set, 'test' from Test_Set),
    sorted by (video, frame)."""
    check_tree(root)
    per_task: dict[str, dict[str, list]] = {}
    for task, task_set in TASK_SETS.items():
        folder = os.path.join(root, ANNOTATIONS_DIR, task_set, SPLIT_SETS[split])
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        per_task[task] = {name[:-4]: parse_annotation_file(os.path.join(folder, name), task)
                          for name in names if name.endswith(".txt")}
    videos = sorted(set().union(*per_task.values()))
    missing = {"au": (labels.AU_MISSING,) * labels.NUM_AUS, "expr": labels.EXPR_MISSING,
               "va": (labels.VA_MISSING,) * len(labels.VA_NAMES)}
    records, without_image, without_label = [], 0, 0
    for video in videos:
        video_dir = os.path.join(root, IMAGES_DIR, video)
        images = _image_frames(video_dir)
        task_lines = {task: per_task[task].get(video, []) for task in TASK_SETS}
        num_frames = max(len(lines) for lines in task_lines.values())
        without_label += sum(1 for f in images if f > num_frames)
        for frame in range(1, num_frames + 1):
            if frame not in images:
                without_image += 1
                continue
            value = {task: lines[frame - 1] if frame <= len(lines) else missing[task]
                     for task, lines in task_lines.items()}
            records.append(FrameRecord(video=video, frame=frame,
                                       image_path=os.path.join(video_dir, f"{frame:05d}.jpg"),
                                       au=value["au"], expr=value["expr"], va=value["va"]))
    return SplitRecords(split=split, records=records, videos=videos,
                        label_lines={t: sum(len(v) for v in per_task[t].values()) for t in TASK_SETS},
                        frames_without_image=without_image, images_without_label=without_label)


def _example(record: FrameRecord) -> tuple[dict, tuple[int, int]]:
    image, shape = conversion.read_jpeg(record.image_path, AffWild2Error)
    return {"image": image, "video": record.video, "frame": record.frame, "au": record.au, "expr": record.expr,
            "va": record.va}, shape


def convert(root: str, out: str, *, num_shards: int = 8, source: str | None = None, workers: int = 0,
            progress_every: float = conversion.PROGRESS_SECONDS) -> dict:
    """Converts the labelled splits of an Aff-Wild2 tree (labelled_splits) to shards in `out`, reading images in
    `workers` processes (0: this one); returns {split: metadata}. The source defaults to 'synthetic' when the tree
    carries the generator's marker file, else 'affwild2'."""
    if num_shards < 1:
        raise AffWild2Error(f"--num-shards must be >= 1, got {num_shards}")
    check_tree(root)
    if source is None:
        source = "synthetic" if os.path.isfile(os.path.join(root, MARKER_FILE)) else "affwild2"
    result = {}
    for split in labelled_splits(root):
        read = read_split(root, split)
        counts = {"label_lines": read.label_lines, "frames_without_image": read.frames_without_image,
                  "images_without_label": read.images_without_label}
        result[split] = conversion.write_split(out, split, read.records, _example, num_shards=num_shards,
                                               source=source, counts=counts, workers=workers,
                                               progress_every=progress_every)
    return result


def describe(metadata: dict) -> str:
    """One line of counts of a converted split, with the label lines and images the reader left out."""
    return (f"{conversion.describe(metadata)}; {metadata['frames_without_image']} label lines without image skipped, "
            f"{metadata['images_without_label']} images without label line ignored")
