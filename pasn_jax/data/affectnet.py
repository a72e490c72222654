"""AffectNet (the manually annotated part) reader: the file lists -> per-image records in Aff-Wild2's label space
(paper §3.4: AffectNet serves EXPR and VA fine-tuning), and their conversion to shards.

Release layout read:
- `<root>/Manually_Annotated_file_lists/training.csv` -> split `train`, `validation.csv` -> split `val` (either may
  be absent, not both). A header line names the columns `subDirectory_filePath, face_x, face_y, face_width,
  face_height, facial_landmarks, expression, valence, arousal`; columns are picked by name, so their order does not
  matter. A file whose first line is not a header (some copies of validation.csv lack it) is read in that order.
  The landmarks field (`x;y;...`) is not used.
- `<root>/Manually_Annotated_Images/<subDirectory_filePath>`: JPEG or PNG images (read with PIL), e.g.
  `689/737db2....jpg`; the face box (face_x, face_y, face_width, face_height) is in the image's pixels.

Labels (labels.AFFECTNET_TO_ABAW_EXPR): expression 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust,
6 Anger -> their ABAW2 classes; 7 Contempt has no ABAW2 class: its EXPR is missing (-1), its VA is kept;
8 None, 9 Uncertain, 10 No-Face: the row is dropped (counted per code). Valence and arousal in [-1, 1]; -2 marks
them unannotated: if either is -2, both become labels.VA_MISSING. Option `va_range=(lo, hi)` (the paper's VA
filter, [-1, -0.25]): VA is kept only where both values lie in [lo, hi], elsewhere it becomes missing (EXPR stays).
A row left with neither EXPR nor VA (contempt without VA) is dropped and counted. AffectNet has no AU labels: au
is all labels.AU_MISSING. Each image is its own "video" (its subDirectory_filePath), frame 1, identity unknown.

Faces: the box, clipped to the image, is cropped and resized to `size` x `size` (bilinear), JPEG quality 95.
Rows dropped while reading (each counted in the split's metadata): codes 8/9/10, images missing from disk, boxes
with a non-positive width or height or ending left of / above the image (`empty_boxes`). A box that lies beyond
the image's right or bottom edge is only seen when the image is opened: the row is left out while writing and
counted in `records_left_out` (describe adds both as "empty face boxes").

Assumptions: a field's text is an integer code, plain numbers, or -2; anything else, a value outside [-1, 1] other
than -2, a code outside 0..10, or a row with the wrong number of fields is an error naming file:line. All label
files are parsed before anything is written, so a bad line leaves no `<split>.json`.
"""

import csv
import dataclasses
import functools
import math
import os

from PIL import Image

from pasn_jax import labels
from pasn_jax.data import conversion

LISTS_DIR = "Manually_Annotated_file_lists"
IMAGES_DIR = "Manually_Annotated_Images"
SPLIT_FILES = {"train": "training.csv", "val": "validation.csv"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")  # the release's order (used when a file has no header line)
_NEEDED = tuple(c for c in COLUMNS if c != "facial_landmarks")
MARKER_FILE = "synthetic_affectnet.json"  # at the root of a tree the synthetic generator wrote
SOURCE = "affectnet"
SYNTHETIC_SOURCE = "synthetic-affectnet"
DROPPED_CODES = {8: "none", 9: "uncertain", 10: "no_face"}  # code -> tally name
NUM_CODES = 11
VA_UNANNOTATED = -2.0
DEFAULT_SIZE = 112


class AffectNetError(ValueError):
    """Bad AffectNet input or options; the message names the file (and line) and what was expected."""


@dataclasses.dataclass(frozen=True, slots=True)  # slots: a real split holds ~300k of these
class ImageRecord:
    video: str  # subDirectory_filePath
    image_path: str
    box: tuple[float, float, float, float]  # face_x, face_y, face_width, face_height in the image's pixels
    expr: int  # ABAW2 index, labels.EXPR_MISSING for contempt
    va: tuple[float, float]  # labels.VA_MISSING each where unannotated or filtered
    where: str  # file:line of its row, for errors


@dataclasses.dataclass
class SplitRecords:
    split: str
    records: list[ImageRecord]  # in file order
    counts: dict  # the tallies (see convert)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


def _header(row: list[str], path: str) -> dict[str, int] | None:
    """column -> index from a header row; None when the row is data of a header-less file (release order)."""
    names = [field.strip().lstrip("\ufeff") for field in row]
    if COLUMNS[0] not in names and len(names) == len(COLUMNS):
        return None
    missing = [c for c in _NEEDED if c not in names]
    if missing:
        raise AffectNetError(f"{path}:1: expected a header naming the columns {','.join(COLUMNS)}, got "
                             f"'{','.join(names)}'")
    return {name: names.index(name) for name in _NEEDED}


def _parse_row(row: list[str], columns: dict[str, int], width: int, where: str):
    """(image path relative to the images folder, box, AffectNet code, (valence, arousal)) of one data row."""
    if len(row) != width:
        raise AffectNetError(f"{where}: expected {width} comma-separated fields, got {len(row)}: "
                             f"'{','.join(row)}'")
    field = {name: row[i].strip() for name, i in columns.items()}
    path = field["subDirectory_filePath"]
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith("/") or any(p in ("", "..") for p in parts):
        raise AffectNetError(f"{where}: expected a relative image path (subDirectory/file), got '{path}'")
    try:
        box = tuple(_number(field[c]) for c in ("face_x", "face_y", "face_width", "face_height"))
    except ValueError:
        raise AffectNetError(f"{where}: expected 4 box numbers (face_x, face_y, face_width, face_height), got "
                             f"'{','.join(field[c] for c in ('face_x', 'face_y', 'face_width', 'face_height'))}'"
                             ) from None
    try:
        code = int(field["expression"])
        if not 0 <= code < NUM_CODES:
            raise ValueError
    except ValueError:
        raise AffectNetError(f"{where}: expected an expression code in 0..{NUM_CODES - 1}, got "
                             f"'{field['expression']}'") from None
    try:
        va = (_number(field["valence"]), _number(field["arousal"]))
        if any(not (-1.0 <= v <= 1.0 or v == VA_UNANNOTATED) for v in va):
            raise ValueError
    except ValueError:
        raise AffectNetError(f"{where}: expected valence and arousal in [-1, 1] or {VA_UNANNOTATED:g}, got "
                             f"'{field['valence']},{field['arousal']}'") from None
    return "/".join(parts), box, code, va


def empty_counts() -> dict:
    return {"rows": 0, "dropped": {name: 0 for name in DROPPED_CODES.values()}, "missing_images": 0,
            "empty_boxes": 0, "contempt": 0, "va_unannotated": 0, "va_out_of_range": 0, "unlabelled": 0}


def read_split(root: str, split: str, *, va_range: tuple[float, float] | None = None) -> SplitRecords:
    """All records of `split` from its file list, in file order, with the tallies of what was dropped or changed."""
    path = os.path.join(root, LISTS_DIR, SPLIT_FILES[split])
    if not os.path.isfile(path):
        raise AffectNetError(f"{path}: missing file")
    images_dir = os.path.join(root, IMAGES_DIR)
    counts = empty_counts()
    records = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            columns, width = None, len(COLUMNS)
            for row in reader:
                if not row or not any(field.strip() for field in row):
                    continue
                where = f"{path}:{reader.line_num}"
                if columns is None:
                    columns = _header(row, path)
                    if columns is not None:
                        width = len(row)
                        continue
                    columns = {name: COLUMNS.index(name) for name in _NEEDED}
                relative, box, code, va = _parse_row(row, columns, width, where)
                counts["rows"] += 1
                if code in DROPPED_CODES:
                    counts["dropped"][DROPPED_CODES[code]] += 1
                    continue
                image_path = os.path.join(images_dir, *relative.split("/"))
                if not os.path.isfile(image_path):
                    counts["missing_images"] += 1
                    continue
                x, y, w, h = box
                if w <= 0 or h <= 0 or x + w <= 0 or y + h <= 0:
                    counts["empty_boxes"] += 1
                    continue
                if VA_UNANNOTATED in va:
                    counts["va_unannotated"] += 1
                    va = (labels.VA_MISSING, labels.VA_MISSING)
                elif va_range is not None and not all(va_range[0] <= v <= va_range[1] for v in va):
                    counts["va_out_of_range"] += 1
                    va = (labels.VA_MISSING, labels.VA_MISSING)
                expr = labels.AFFECTNET_TO_ABAW_EXPR[code]
                if expr is None:
                    counts["contempt"] += 1
                    expr = labels.EXPR_MISSING
                    if va[0] == labels.VA_MISSING:
                        counts["unlabelled"] += 1
                        continue
                records.append(ImageRecord(video=relative, image_path=image_path, box=box, expr=expr, va=va,
                                           where=where))
    except UnicodeDecodeError:
        raise AffectNetError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as e:
        raise AffectNetError(f"{path}:{reader.line_num}: expected a CSV line ({e})") from None
    if columns is None:
        raise AffectNetError(f"{path}:1: expected a header naming the columns {','.join(COLUMNS)}, got an empty "
                             f"file")
    return SplitRecords(split, records, counts)


def example(record: ImageRecord, size: int = DEFAULT_SIZE) -> tuple[dict, tuple[int, int]] | None:
    """The shard fields of one record (its face crop resized to size x size) and (size, size); None when its box
    lies outside the image."""
    try:
        with Image.open(record.image_path) as opened:
            width, height = opened.size
            x, y, w, h = record.box
            left, top = max(0, round(x)), max(0, round(y))
            right, bottom = min(width, round(x + w)), min(height, round(y + h))
            if right <= left or bottom <= top:
                return None
            shrink = min(right - left, bottom - top) / size
            if opened.format == "JPEG" and shrink >= 2:  # decode a large JPEG at a reduced scale (DCT scaling)
                opened.draft("RGB", (math.ceil(width / shrink), math.ceil(height / shrink)))
            sx, sy = opened.size[0] / width, opened.size[1] / height
            image = opened.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise AffectNetError(f"{record.image_path}: not a decodable image ({e}); listed at {record.where}") from None
    crop = image.resize((size, size), Image.Resampling.BILINEAR, box=(left * sx, top * sy, right * sx, bottom * sy))
    return {"image": conversion.encode_crop(crop), "video": record.video, "frame": 1,
            "au": (labels.AU_MISSING,) * labels.NUM_AUS, "expr": record.expr, "va": record.va,
            "identity": -1}, (size, size)


def splits_present(root: str) -> list[str]:
    """The splits whose file list exists; AffectNetError naming the missing folder or files when none does."""
    for folder in (root, os.path.join(root, LISTS_DIR), os.path.join(root, IMAGES_DIR)):
        if not os.path.isdir(folder):
            raise AffectNetError(f"{folder}: missing folder (expected the AffectNet layout {LISTS_DIR}/"
                                 f"{{{','.join(SPLIT_FILES.values())}}} and {IMAGES_DIR}/<subDirectory>/<file>)")
    splits = [s for s, name in SPLIT_FILES.items() if os.path.isfile(os.path.join(root, LISTS_DIR, name))]
    if not splits:
        raise AffectNetError(f"{os.path.join(root, LISTS_DIR)}: missing files (expected "
                             f"{' and/or '.join(SPLIT_FILES.values())})")
    return splits


def convert(root: str, out: str, *, num_shards: int = 8, source: str | None = None, workers: int = 0,
            size: int = DEFAULT_SIZE, va_range: tuple[float, float] | None = None) -> dict:
    """Converts the AffectNet file lists under `root` to the shards of `train` (training.csv) and `val`
    (validation.csv) in `out`; returns {split: metadata}. The source defaults to 'synthetic-affectnet' when the
    tree carries the generator's marker file, else 'affectnet'. Every file list is read before anything is
    written. The metadata holds the tallies of empty_counts()."""
    if num_shards < 1 or size < 1:
        raise AffectNetError(f"--num-shards and --size must be >= 1, got {num_shards} and {size}")
    if va_range is not None:
        lo, hi = (float(v) for v in va_range)
        if not (-1.0 <= lo <= hi <= 1.0):
            raise AffectNetError(f"--va-range must be lo,hi with -1 <= lo <= hi <= 1, got {lo:g},{hi:g}")
        va_range = (lo, hi)
    splits = splits_present(root)
    for split in splits:  # from here on `out` does not claim these splits, even if reading fails
        conversion.forget_split(out, split)
    if source is None:
        source = SYNTHETIC_SOURCE if os.path.isfile(os.path.join(root, MARKER_FILE)) else SOURCE
    reads = [read_split(root, split, va_range=va_range) for split in splits]
    make = functools.partial(example, size=size)
    return {read.split: conversion.write_split(out, read.split, read.records, make, num_shards=num_shards,
                                               source=source, counts={**read.counts, "va_range": va_range},
                                               workers=workers)
            for read in reads}


def describe(metadata: dict) -> str:
    """One line of counts of a converted split, with the rows the reader dropped or relabelled."""
    dropped = metadata["dropped"]
    va_range = metadata.get("va_range")
    range_note = f" [{va_range[0]:g}, {va_range[1]:g}]" if va_range else ""
    return (f"{conversion.describe(metadata)}; of {metadata['rows']} rows dropped {dropped['none']} None, "
            f"{dropped['uncertain']} Uncertain, {dropped['no_face']} No-Face, {metadata['missing_images']} with "
            f"missing image, {metadata['empty_boxes'] + metadata['records_left_out']} empty face boxes, "
            f"{metadata['unlabelled']} without label; {metadata['contempt']} Contempt (no EXPR), "
            f"{metadata['va_unannotated']} VA -2, {metadata['va_out_of_range']} VA outside va_range{range_note}")
