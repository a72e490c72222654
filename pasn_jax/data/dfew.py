"""DFEW (Dynamic Facial Expression in the Wild) reader: one fold's split files + the released face crops ->
per-frame expression records, and their conversion to shards (paper §3.4: EXPR fine-tuning on external data;
ARCHITECTURE.md, "Label conventions").

Layout read (DFEW's release):
- `EmoLabel_DataSplit/train(single-labeled)/set_<k>.csv` and `EmoLabel_DataSplit/test(single-labeled)/set_<k>.csv`,
  k = 1..5 (five-fold cross validation): a header `video_name,label`, then one line per clip: the clip number
  (written `1` or `00001`: matched as an integer) and its label 1..7 in DFEW's order (1 Happy, 2 Sad, 3 Neutral,
  4 Angry, 5 Surprise, 6 Disgust, 7 Fear).
- `Clip/clip_224x224/<clip:05d>/*.jpg`: DFEW's face crops of every frame of a clip. A frame's number is the last
  run of digits in its file name (`00001_00003.jpg` and `00003.jpg` are both frame 3); frames are sorted by it.

Label mapping: labels.DFEW_TO_ABAW_EXPR (Happy -> Happiness, Sad -> Sadness, Neutral, Angry -> Anger, Surprise,
Disgust, Fear). Every frame of a clip carries the clip's label; AU and VA are not annotated (sentinels); video =
`<clip:05d>`, identity unknown. Option `fold` picks the fold (splits `train` and `test` from its two files);
`frames_per_clip` N > 0 keeps N evenly spaced frames of a clip (the centre frame of each of N equal parts, in
the spirit of DFEW's 16-frame release; a shorter clip keeps all its frames), so that long clips do not outweigh
short ones in a mixture; 0 keeps every frame.

Assumptions: blank lines and a UTF-8 byte-order mark are ignored, fields are stripped, the header is matched
case-insensitively; a clip listed twice in one file, or in both files of a fold, is an error; a clip whose folder
is missing or holds no JPEG is skipped and counted; folders of clips the fold's files do not list (DFEW's
multi-labelled clips) are ignored; JPEG files without digits in their name are ignored and counted; two files of a
clip with the same frame number, or frame number 0, are an error.

Not read: the 7-d annotator vote distribution (`Annotation/annotation.xlsx`: the shards have no soft label) and
the raw videos `Clip/original/*` (when `Clip/clip_224x224` is absent the error says to crop faces first).
"""

import dataclasses
import os
import re

from pasn_jax import labels
from pasn_jax.data import conversion, shards

SPLITS_DIR = "EmoLabel_DataSplit"
SPLIT_FOLDERS = {"train": "train(single-labeled)", "test": "test(single-labeled)"}
FRAMES_DIR = os.path.join("Clip", "clip_224x224")
RAW_VIDEOS_DIR = os.path.join("Clip", "original")
FOLDS = (1, 2, 3, 4, 5)
HEADER = ("video_name", "label")
DFEW_NAMES = {1: "Happy", 2: "Sad", 3: "Neutral", 4: "Angry", 5: "Surprise", 6: "Disgust", 7: "Fear"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg")
SOURCE = "dfew"
# At the root of a tree the synthetic generator wrote: its conversion stores the source 'synthetic-dfew'.
MARKER_FILE = "synthetic_dfew.json"
SYNTHETIC_SOURCE = "synthetic-dfew"
CROP_COMMAND = "python -m pasn_jax.faces crop --out DIR VIDEOS..."
_DIGITS = re.compile(r"\d+")
_LABEL_TEXT = ", ".join(f"{k} {name}" for k, name in DFEW_NAMES.items())


class DFEWError(ValueError):
    """Bad DFEW input; the message names the file (and line) or folder and what was expected."""


@dataclasses.dataclass(frozen=True, slots=True)
class ClipLabel:
    clip: int  # DFEW's clip number
    label: int  # DFEW's label, 1..7
    line: int  # of the split file


@dataclasses.dataclass(frozen=True, slots=True)
class FrameRecord:
    video: str  # <clip:05d>
    frame: int  # from the file name, >= 1
    image_path: str
    expr: int  # ABAW2 index (labels.EXPR_NAMES)


@dataclasses.dataclass
class SplitRecords:
    split: str
    label_file: str
    records: list[FrameRecord]  # sorted by (clip, frame)
    clips_listed: int  # label lines of the split file
    clips_without_frames: list[int]  # listed clips whose folder is missing or holds no JPEG: skipped
    frames_found: int  # JPEG frames of the listed clips, before frames_per_clip
    frames_not_sampled: int  # left out by frames_per_clip
    files_without_frame_number: int  # JPEG files without digits in their name: ignored
    clip_expr_histogram: dict[str, int]  # clips with frames per ABAW2 expression


def split_file(root: str, split: str, fold: int) -> str:
    return os.path.join(root, SPLITS_DIR, SPLIT_FOLDERS[split], f"set_{fold}.csv")


def parse_split_file(path: str) -> list[ClipLabel]:
    """The clips and labels of one split file, in file order."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise DFEWError(f"{path}: not a UTF-8 text file") from None
    numbered = [(n, line.strip()) for n, line in enumerate(lines, start=1) if line.strip()]
    header = ",".join(HEADER)
    if not numbered or tuple(f.strip().lower() for f in numbered[0][1].split(",")) != HEADER:
        lineno, got = numbered[0] if numbered else (1, "an empty file")
        raise DFEWError(f"{path}:{lineno}: expected the header '{header}', got '{got}'")
    clips, first_line = [], {}
    for lineno, line in numbered[1:]:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(HEADER):
            raise DFEWError(f"{path}:{lineno}: expected 2 comma-separated values ({header}), got '{line}'")
        clip = int(fields[0]) if fields[0].isdecimal() and fields[0].isascii() else 0
        if clip < 1:
            raise DFEWError(f"{path}:{lineno}: expected a clip number (an integer >= 1), got '{fields[0]}'")
        label = int(fields[1]) if fields[1].isdecimal() and fields[1].isascii() else 0
        if label not in DFEW_NAMES:
            raise DFEWError(f"{path}:{lineno}: expected a label in 1..7 ({_LABEL_TEXT}), got '{fields[1]}'")
        if clip in first_line:
            raise DFEWError(f"{path}:{lineno}: expected each clip once, got clip {clip} again (first on line "
                            f"{first_line[clip]})")
        first_line[clip] = lineno
        clips.append(ClipLabel(clip, label, lineno))
    return clips


def clip_frames(folder: str) -> tuple[list[tuple[int, str]], int]:
    """The (frame number, path) of a clip folder's JPEG files sorted by frame number (empty if the folder is
    absent), and how many JPEG files had no digits in their name."""
    if not os.path.isdir(folder):
        return [], 0
    frames, unnumbered, seen = [], 0, {}
    for name in sorted(os.listdir(folder)):
        stem, extension = os.path.splitext(name)
        if extension.lower() not in IMAGE_EXTENSIONS or not os.path.isfile(os.path.join(folder, name)):
            continue
        digits = _DIGITS.findall(stem)
        if not digits:
            unnumbered += 1
            continue
        frame = int(digits[-1])
        if frame < 1:
            raise DFEWError(f"{os.path.join(folder, name)}: expected a frame number >= 1 (the last digits of the "
                            f"file name), got '{digits[-1]}'")
        if frame in seen:
            raise DFEWError(f"{os.path.join(folder, name)}: expected one image per frame, got frame {frame} again "
                            f"(also {seen[frame]})")
        seen[frame] = name
        frames.append((frame, os.path.join(folder, name)))
    return sorted(frames), unnumbered


def evenly_spaced(count: int, keep: int) -> list[int]:
    """Indices of `keep` evenly spaced items of `count` (the centres of `keep` equal parts); all when keep is 0 or
    not below count."""
    if keep <= 0 or keep >= count:
        return list(range(count))
    return [int((i + 0.5) * count / keep) for i in range(keep)]


def check_tree(root: str, fold: int) -> None:
    """Raises DFEWError naming the first missing folder or file of the layout for `fold`."""
    if not os.path.isdir(root):
        raise DFEWError(f"{root}: missing folder (expected DFEW's root, holding {SPLITS_DIR}/ and {FRAMES_DIR}/)")
    for split in SPLIT_FOLDERS:
        path = split_file(root, split, fold)
        if not os.path.isfile(path):
            raise DFEWError(f"{path}: missing file (expected DFEW's fold split files "
                            f"{SPLITS_DIR}/{{{','.join(SPLIT_FOLDERS.values())}}}/set_<k>.csv, k = 1..5)")
    frames = os.path.join(root, FRAMES_DIR)
    if not os.path.isdir(frames):
        raw = os.path.join(root, RAW_VIDEOS_DIR)
        videos = f"the raw videos in {raw} are not read: " if os.path.isdir(raw) else ""
        raise DFEWError(f"{frames}: missing folder (expected DFEW's face crops {FRAMES_DIR}/<clip:05d>/*.jpg; "
                        f"{videos}crop faces first with `{CROP_COMMAND}` and use DIR/cropped_aligned as {frames})")


def _check_options(fold: int, frames_per_clip: int) -> None:
    if fold not in FOLDS:
        raise DFEWError(f"--fold must be one of 1..5, got {fold}")
    if frames_per_clip < 0:
        raise DFEWError(f"--frames-per-clip must be >= 0 (0 = every frame), got {frames_per_clip}")


def read_fold(root: str, fold: int = 1, frames_per_clip: int = 0) -> dict[str, SplitRecords]:
    """The frame records of `fold`'s splits {'train', 'test'}; both split files are parsed, and every listed clip's
    folder listed, before anything is returned."""
    _check_options(fold, frames_per_clip)
    check_tree(root, fold)
    parsed = {split: parse_split_file(split_file(root, split, fold)) for split in SPLIT_FOLDERS}
    train_lines = {c.clip: c.line for c in parsed["train"]}
    for c in parsed["test"]:
        if c.clip in train_lines:
            raise DFEWError(f"{split_file(root, 'test', fold)}:{c.line}: expected test clips outside fold {fold}'s "
                            f"training file, got clip {c.clip} (also {split_file(root, 'train', fold)}:"
                            f"{train_lines[c.clip]})")
    result = {}
    for split, clips in parsed.items():
        records, without, found, unnumbered = [], [], 0, 0
        histogram = dict.fromkeys(labels.EXPR_NAMES, 0)
        for c in sorted(clips, key=lambda c: c.clip):
            video = f"{c.clip:05d}"
            frames, ignored = clip_frames(os.path.join(root, FRAMES_DIR, video))
            unnumbered += ignored
            if not frames:
                without.append(c.clip)
                continue
            found += len(frames)
            expr = labels.DFEW_TO_ABAW_EXPR[c.label]
            histogram[labels.EXPR_NAMES[expr]] += 1
            for i in evenly_spaced(len(frames), frames_per_clip):
                records.append(FrameRecord(video, frames[i][0], frames[i][1], expr))
        result[split] = SplitRecords(split, split_file(root, split, fold), records, len(clips), without, found,
                                     found - len(records), unnumbered, histogram)
    return result


def example(record: FrameRecord) -> tuple[dict, tuple[int, int]]:
    """A frame's shard fields (expression only: AU and VA not annotated) and its image's (height, width)."""
    image, shape = conversion.read_jpeg(record.image_path, DFEWError)
    return {"image": image, "video": record.video, "frame": record.frame, "au": (labels.AU_MISSING,) * labels.NUM_AUS,
            "expr": record.expr, "va": (labels.VA_MISSING,) * labels.NUM_VA, "identity": shards.IDENTITY_UNKNOWN}, shape


def convert(root: str, out: str, *, num_shards: int = 8, source: str | None = None, workers: int = 0, fold: int = 1,
            frames_per_clip: int = 0) -> dict:
    """Converts fold `fold` of a DFEW tree to shards in `out` (splits 'train' and 'test'); returns {split: metadata}.
    The source defaults to 'synthetic-dfew' when the tree carries the generator's marker file, else 'dfew'."""
    if num_shards < 1:
        raise DFEWError(f"--num-shards must be >= 1, got {num_shards}")
    _check_options(fold, frames_per_clip)
    check_tree(root, fold)
    if source is None:
        source = SYNTHETIC_SOURCE if os.path.isfile(os.path.join(root, MARKER_FILE)) else SOURCE
    for split in SPLIT_FOLDERS:  # from here on `out` does not claim a split of an earlier conversion
        conversion.forget_split(out, split)
    splits = read_fold(root, fold, frames_per_clip)
    result = {}
    for split, read in splits.items():
        counts = {"fold": fold, "frames_per_clip": frames_per_clip,
                  "label_file": os.path.relpath(read.label_file, root), "clips_listed": read.clips_listed,
                  "clips_without_frames": len(read.clips_without_frames), "frames_found": read.frames_found,
                  "frames_not_sampled": read.frames_not_sampled,
                  "files_without_frame_number": read.files_without_frame_number,
                  "clip_expr_histogram": read.clip_expr_histogram}
        result[split] = conversion.write_split(out, split, read.records, example, num_shards=num_shards,
                                               source=source, counts=counts, workers=workers)
    return result


def describe(metadata: dict) -> str:
    """One line of counts of a converted split, with the clips and frames the reader left out."""
    sampled = (f", {metadata['frames_not_sampled']} frames left out by --frames-per-clip "
               f"{metadata['frames_per_clip']}" if metadata["frames_per_clip"] else "")
    unnumbered = (f", {metadata['files_without_frame_number']} images without frame number ignored"
                  if metadata["files_without_frame_number"] else "")
    return (f"{conversion.describe(metadata)}; fold {metadata['fold']}: {metadata['clips_listed']} clips listed, "
            f"{metadata['clips_without_frames']} without frames skipped{sampled}{unnumbered}")
