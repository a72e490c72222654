"""BP4D-Spontaneous (AU occurrence, paper §3.4): the release's AU_OCC files and frame folders, read into per-frame
records whose faces are detected, aligned and cropped, then written as frame shards in Aff-Wild2's label space.

Layout read:
- frames `<root>/Sequences/<subject>/<task>/<frame>.jpg` (subjects F001.., M001..; tasks T1..T8): whole camera
  images (1040x1392 in the release), not face crops. The file name is the frame number; its zero padding varies,
  so images are matched by int(stem). Files whose stem is not a number, or that are not .jpg, are not frames.
- AU occurrence `<root>/AUCoding/AU_OCC/<subject>_<task>.csv`: a header row whose first cell names the frame
  column and whose other cells are AU numbers (`1`, `AU1`, `au01`, ...); then one row per coded frame: the frame
  number, then per AU 1 (present), 0 (absent) or 9 (unknown). Only a range of each sequence is coded. Columns are
  chosen by header: the files carry more AUs than the 12 coded ones.

Label mapping (labels.BP4D_AUS): the 10 AUs BP4D shares with Aff-Wild2 (AU1, 2, 4, 6, 7, 10, 12, 15, 23, 24) go to
their places in the ABAW order; AU25 and AU26 are not coded in BP4D and are labels.AU_MISSING in every record; AU14
and AU17 have no Aff-Wild2 counterpart and are dropped; 9 (unknown) becomes AU_MISSING for that AU. A row whose 10
shared AUs are all unknown is skipped (counted). BP4D has no expression or valence/arousal labels: expr is
EXPR_MISSING and va is VA_MISSING in every record; identity is unknown (-1).

Assumptions: frame numbers are >= 1 (the shard contract's 1-based frames; a 0 or negative frame is an error);
only the 10 shared AU columns and the frame column are read (other columns may hold anything); a CSV's subject is
its name up to the first '_', its task the rest. BP4D has no official split: every subject goes to `train`, those
named in `val_subjects` to `val`. Records are `<subject>_<task>` (the video) and the frame number, sorted.

Faces: each frame's faces are found by MTCNN (pasn_jax.faces, one Detector per process, made on first use so that
`example` works in worker processes); the most confident one is aligned to the five-point template at `size`
pixels (112 by default, as Aff-Wild2's cropped_aligned) and stored as a JPEG (quality 95). A frame where no face is
found is left out (write_split counts it as `records_left_out`).

Tallies in each split's metadata: `label_rows` (coded rows read), `rows_unknown` (rows whose shared AUs are all
9: skipped), `frames_without_image` (coded rows with no image: skipped), `images_without_label` (images of the
split's subjects with no coded row: ignored), `sequences` (AU_OCC files of the split).
"""

import dataclasses
import functools
import os
import re

import numpy as np
import simplejpeg

from pasn_jax import labels
from pasn_jax.data import conversion

SEQUENCES_DIR = "Sequences"
AU_OCC_DIR = os.path.join("AUCoding", "AU_OCC")
MARKER_FILE = "synthetic_bp4d.json"  # at the root of a tree the synthetic generator wrote
SOURCE = "bp4d"
UNKNOWN = 9  # the AU_OCC code of a frame whose AU was not coded
# BP4D AU number -> its index in the ABAW order, for the AUs both code (AU14 and AU17 have no ABAW counterpart).
SHARED_AUS = {int(name[2:]): labels.AU_NAMES.index(name) for name in labels.BP4D_AUS if name in labels.AU_NAMES}
_AU_HEADER = re.compile(r"^(?:au)?0*(\d+)$", re.IGNORECASE)
_CODES = {"0": 0, "1": 1, str(UNKNOWN): labels.AU_MISSING}


class BP4DError(ValueError):
    """Bad BP4D input or option; the message names the file (and line) and what was expected."""


@dataclasses.dataclass(frozen=True, slots=True)
class FrameRecord:
    video: str  # <subject>_<task>
    frame: int  # the frame number (>= 1)
    image_path: str
    au: tuple[int, ...]  # [12] in labels.AU_NAMES order; labels.AU_MISSING where not coded


@dataclasses.dataclass
class SplitRecords:
    split: str
    records: list[FrameRecord]  # sorted by (video, frame)
    sequences: list[str]  # <subject>_<task> of the split's AU_OCC files
    label_rows: int  # coded rows read
    rows_unknown: int  # rows whose shared AUs are all unknown: skipped
    frames_without_image: int  # coded rows with no image: skipped
    images_without_label: int  # images of the split's subjects with no coded row: ignored


def _au_number(cell: str) -> int | None:
    match = _AU_HEADER.match(cell.strip())
    return int(match.group(1)) if match else None


def parse_au_occ(path: str) -> dict[int, tuple[int, ...]]:
    """frame number -> the 12 ABAW AU labels of one AU_OCC file, for every coded row (rows whose shared AUs are all
    unknown included: they hold AU_MISSING only)."""
    if not os.path.isfile(path):
        raise BP4DError(f"{path}: missing file")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise BP4DError(f"{path}: not a UTF-8 text file") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise BP4DError(f"{path}:1: expected a header row (frame column, then AU numbers), got an empty file")
    header = [cell.strip() for cell in lines[0].split(",")]
    columns = {}  # AU number -> column
    for column, cell in enumerate(header[1:], start=1):
        number = _au_number(cell)
        if number is None:
            raise BP4DError(f"{path}:1: expected AU numbers (e.g. 1, AU1, au01) after the frame column, got "
                            f"'{cell}'")
        if number in columns:
            raise BP4DError(f"{path}:1: expected each AU once, got AU{number} twice")
        columns[number] = column
    for number in SHARED_AUS:
        if number not in columns:
            raise BP4DError(f"{path}:1: expected a column for AU{number} (one of the AUs shared with Aff-Wild2), "
                            f"got none")
    rows = {}
    expected = f"a frame number >= 1, then the codes 0, 1 or {UNKNOWN} of {len(header) - 1} AUs"
    for lineno, line in enumerate(lines[1:], start=2):
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(header):
            raise BP4DError(f"{path}:{lineno}: expected {len(header)} comma-separated values as in the header, got "
                            f"{len(cells)}")
        try:
            frame = int(cells[0])
            if frame < 1:
                raise ValueError
            au = [labels.AU_MISSING] * labels.NUM_AUS
            for number, index in SHARED_AUS.items():
                au[index] = _CODES[cells[columns[number]]]
        except (ValueError, KeyError):
            raise BP4DError(f"{path}:{lineno}: expected {expected}, got '{line.strip()}'") from None
        if frame in rows:
            raise BP4DError(f"{path}:{lineno}: expected each frame once, got frame {frame} again")
        rows[frame] = tuple(au)
    return rows


def sequence_images(folder: str) -> dict[int, str]:
    """frame number -> image path in a Sequences/<subject>/<task> folder (empty if the folder is absent)."""
    if not os.path.isdir(folder):
        return {}
    images = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() != ".jpg" or not stem.isdigit():
            continue
        frame = int(stem)
        if frame in images:
            raise BP4DError(f"{os.path.join(folder, name)}: expected one image per frame, got frame {frame} also "
                            f"in {images[frame]}")
        images[frame] = os.path.join(folder, name)
    return images


def check_tree(root: str) -> None:
    """Raises BP4DError naming the first missing folder of the layout."""
    for folder in (root, os.path.join(root, SEQUENCES_DIR), os.path.join(root, AU_OCC_DIR)):
        if not os.path.isdir(folder):
            raise BP4DError(f"{folder}: missing folder (expected the BP4D layout {SEQUENCES_DIR}/<subject>/<task>/"
                            f"<frame>.jpg and {AU_OCC_DIR}/<subject>_<task>.csv)")


def sequences(root: str) -> dict[str, tuple[str, str]]:
    """<subject>_<task> -> (subject, task) of every AU_OCC file, sorted."""
    check_tree(root)
    out = {}
    for name in sorted(os.listdir(os.path.join(root, AU_OCC_DIR))):
        stem, ext = os.path.splitext(name)
        if ext.lower() != ".csv":
            continue
        subject, _, task = stem.partition("_")
        if not subject or not task:
            raise BP4DError(f"{os.path.join(root, AU_OCC_DIR, name)}: expected a file name <subject>_<task>.csv")
        out[stem] = (subject, task)
    return out


def subject_splits(root: str, val_subjects=()) -> dict[str, list[str]]:
    """split -> the sequences (<subject>_<task>) in it: `val` those of `val_subjects`, `train` the others."""
    found = sequences(root)
    val_subjects = {str(s) for s in val_subjects}
    unknown = sorted(val_subjects - {subject for subject, _ in found.values()})
    if unknown:
        raise BP4DError(f"val_subjects: no AU_OCC file in {os.path.join(root, AU_OCC_DIR)} for {', '.join(unknown)}")
    splits = {"train": [name for name, (subject, _) in found.items() if subject not in val_subjects]}
    if val_subjects:
        splits["val"] = [name for name, (subject, _) in found.items() if subject in val_subjects]
    return splits


def read_sequences(root: str, split: str, names: list[str]) -> SplitRecords:
    """The records of the sequences `names` (all their AU_OCC files parsed before any image is looked at)."""
    check_tree(root)
    coded = {name: parse_au_occ(os.path.join(root, AU_OCC_DIR, name + ".csv")) for name in names}
    records, unknown, without_image, without_label = [], 0, 0, 0
    subjects = set()
    for name in names:
        subject, _, task = name.partition("_")
        subjects.add(subject)
        images = sequence_images(os.path.join(root, SEQUENCES_DIR, subject, task))
        rows = coded[name]
        without_label += sum(1 for frame in images if frame not in rows)
        for frame in sorted(rows):
            au = rows[frame]
            if all(au[i] == labels.AU_MISSING for i in SHARED_AUS.values()):
                unknown += 1
            elif frame not in images:
                without_image += 1
            else:
                records.append(FrameRecord(video=name, frame=frame, image_path=images[frame], au=au))
    # images of the split's subjects in task folders that have no AU_OCC file at all
    for subject in sorted(subjects):
        folder = os.path.join(root, SEQUENCES_DIR, subject)
        for task in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            if f"{subject}_{task}" not in coded:
                without_label += len(sequence_images(os.path.join(folder, task)))
    return SplitRecords(split=split, records=records, sequences=list(names),
                        label_rows=sum(len(rows) for rows in coded.values()), rows_unknown=unknown,
                        frames_without_image=without_image, images_without_label=without_label)


_DETECTORS: dict = {}  # min_face_size -> Detector, one per process (made on first use: workers make their own)


def detector(min_face_size: float = 20.0):
    """This process's MTCNN detector for `min_face_size`."""
    if min_face_size not in _DETECTORS:
        from pasn_jax.faces import Detector  # JAX is imported here, not when the module is (the CLI lists datasets)
        _DETECTORS[min_face_size] = Detector(min_face_size=min_face_size)
    return _DETECTORS[min_face_size]


def face_crop(path: str, size: int, min_face_size: float = 20.0) -> bytes | None:
    """The JPEG of the most confident face of an image aligned at size x size, or None when no face is found."""
    from pasn_jax.faces import align

    data, _ = conversion.read_jpeg(path, BP4DError)
    try:
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        raise BP4DError(f"{path}: not a JPEG image") from None
    faces = detector(min_face_size).detect(np.ascontiguousarray(rgb))
    if not faces:
        return None
    best = max(faces, key=lambda face: face.score)
    crop, _ = align.align(rgb, best.landmarks, size)
    return conversion.encode_crop(crop)


def example(record: FrameRecord, size: int = 112, min_face_size: float = 20.0):
    """The shard fields of a record with its face crop and the crop's (height, width); None when no face is found."""
    image = face_crop(record.image_path, size, min_face_size)
    if image is None:
        return None
    return {"image": image, "video": record.video, "frame": record.frame, "au": record.au,
            "expr": labels.EXPR_MISSING, "va": (labels.VA_MISSING, labels.VA_MISSING), "identity": -1}, (size, size)


def convert(root: str, out: str, *, num_shards: int = 8, source: str | None = None, workers: int = 0,
            size: int = 112, val_subjects=(), min_face_size: float = 20.0) -> dict:
    """Converts a BP4D tree to frame shards in `out` (`train`, and `val` when `val_subjects` names subjects);
    returns {split: metadata}. The source defaults to 'synthetic-bp4d' when the tree carries the generator's marker
    file, else 'bp4d'. Every AU_OCC file is parsed before anything is written."""
    if num_shards < 1:
        raise BP4DError(f"--num-shards must be >= 1, got {num_shards}")
    if size < 16:
        raise BP4DError(f"--size must be >= 16 pixels, got {size}")
    if min_face_size < 1:
        raise BP4DError(f"--min-face-size must be >= 1 pixel, got {min_face_size}")
    if isinstance(val_subjects, str):
        val_subjects = [s for s in val_subjects.split(",") if s.strip()]
    splits = subject_splits(root, [s.strip() for s in val_subjects])
    if source is None:
        source = f"synthetic-{SOURCE}" if os.path.isfile(os.path.join(root, MARKER_FILE)) else SOURCE
    for split in splits:  # from here on `out` does not claim these splits are whole, even if reading fails
        conversion.forget_split(out, split)
    reads = {split: read_sequences(root, split, names) for split, names in splits.items()}
    make = functools.partial(example, size=size, min_face_size=min_face_size)
    result = {}
    for split, read in reads.items():
        counts = {"sequences": len(read.sequences), "label_rows": read.label_rows, "rows_unknown": read.rows_unknown,
                  "frames_without_image": read.frames_without_image,
                  "images_without_label": read.images_without_label}
        result[split] = conversion.write_split(out, split, read.records, make, num_shards=num_shards, source=source,
                                               counts=counts, workers=workers)
    return result


def describe(metadata: dict) -> str:
    """One line of counts of a converted split, with what the reader skipped and the frames without a face."""
    return (f"{conversion.describe(metadata)}; {metadata['sequences']} sequences, {metadata['label_rows']} coded rows"
            f" ({metadata['rows_unknown']} all unknown skipped, {metadata['frames_without_image']} without image "
            f"skipped), {metadata['images_without_label']} images without coded row ignored, "
            f"{metadata.get('records_left_out', 0)} frames without a face left out")
