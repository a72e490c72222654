"""Frame records -> the shards of one split (ARCHITECTURE.md, "Shard record contract"): the part every converter
shares. Shards are written under temporary names and renamed; `<split>.json` is removed first and written last, so
an interrupted conversion never leaves a folder that claims the split is whole."""

import glob
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import simplejpeg

from pasn_jax import labels
from pasn_jax.data import shards
from pasn_jax.progress import PROGRESS_SECONDS, Progress


CROP_QUALITY = 95  # JPEG quality of the face crops converters cut out of larger images


def encode_crop(pixels) -> bytes:
    """A face crop (uint8 RGB pixels [H, W, 3], or a PIL image) as the JPEG a shard stores."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(np.asarray(pixels)), quality=CROP_QUALITY, colorspace="RGB")


def read_jpeg(path: str, error: type[Exception]) -> tuple[bytes, tuple[int, int]]:
    """The JPEG file's bytes and (height, width); `error` naming the file if it is not a JPEG image."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        raise error(f"{path}: not a JPEG image") from None
    return data, (height, width)


# A split with more videos than this (AffectNet: one "video" per image) keeps no per-video table in `<split>.json`
# (tens of MB there, read by every reader); folds, the table's only user, count such a split by a scan.
VIDEO_TABLE_LIMIT = 100_000


class FrameStatistics:
    """What `<split>.json` says of frame records, counted as they stream by: labelled frames per task, the
    expression histogram, AU positive rates, videos, identities and image sizes, and per video its records (the
    first's index and how many: a converter writes a video's frames together) and labelled frames per task, which
    folds are drawn from (pasn_jax/data/folds.py)."""

    def __init__(self):
        self.au_labelled = np.zeros(labels.NUM_AUS, np.int64)  # per AU
        self.au_positive = np.zeros(labels.NUM_AUS, np.int64)
        self.frames_with_au = 0
        self.expr = np.zeros(labels.NUM_EXPRS, np.int64)
        self.va = 0
        self.identities, self.sizes = set(), {}
        self.videos: dict[str, dict] = {}
        self.records = 0

    def add(self, fields: Mapping, shape: tuple | None) -> None:
        au = np.asarray(fields["au"])
        labelled = au != labels.AU_MISSING
        self.au_labelled += labelled
        self.au_positive += labelled & (au == 1)
        has = {"au": bool(labelled.any()), "expr": fields["expr"] != labels.EXPR_MISSING,
               "va": bool(np.all(np.asarray(fields["va"]) != labels.VA_MISSING))}
        self.frames_with_au += has["au"]
        if has["expr"]:
            self.expr[int(fields["expr"])] += 1
        self.va += has["va"]
        video = self.videos.setdefault(fields["video"], {"first": self.records, "records": 0, "au": 0, "expr": 0,
                                                         "va": 0})
        if video["first"] is not None and video["first"] + video["records"] != self.records:
            video["first"] = None  # its records are not together (e.g. an identity set in arbitrary order)
        video["records"] += 1
        for task, labelled_here in has.items():
            video[task] += int(labelled_here)
        self.records += 1
        if fields.get("identity", shards.IDENTITY_UNKNOWN) != shards.IDENTITY_UNKNOWN:
            self.identities.add(int(fields["identity"]))
        self.sizes[shape] = self.sizes.get(shape, 0) + 1

    def summary(self) -> dict:
        return {
            "num_videos": len(self.videos), "num_identities": len(self.identities),
            "labelled": {"au": self.frames_with_au, "expr": int(self.expr.sum()), "va": self.va},
            "expr_histogram": {n: int(self.expr[i]) for i, n in enumerate(labels.EXPR_NAMES)},
            "au_positive_rate": {n: round(float(self.au_positive[i] / max(1, self.au_labelled[i])), 4)
                                 for i, n in enumerate(labels.AU_NAMES)},
            "image_sizes": {f"{h}x{w}": n for (h, w), n in sorted(self.sizes.items())},
            **({"videos": self.videos} if len(self.videos) <= VIDEO_TABLE_LIMIT else {}),
        }


class _TripletStatistics:
    """What `<split>.json` says of triplet records: how many of each triplet type."""

    def __init__(self):
        self.types = {1: 0, 2: 0, 3: 0}

    def add(self, fields: Mapping, shape: tuple) -> None:
        self.types[int(fields["triplet_type"])] += 1

    def summary(self) -> dict:
        return {"triplet_types": {f"{k}_class": n for k, n in self.types.items()}}


WORKER_WINDOW = 1024  # records handed to the worker pool at a time: memory stays bounded


def _examples_in_order(records: Sequence, start: int, stop: int, example: Callable, pool, workers: int):
    """example(records[i]) for i in [start, stop), in order: in this process, or in `pool`'s worker processes
    (a window at a time, since a pool takes all the work it is given at once)."""
    if pool is None:
        yield from (example(records[i]) for i in range(start, stop))
        return
    for first in range(start, stop, WORKER_WINDOW):
        window = [records[i] for i in range(first, min(stop, first + WORKER_WINDOW))]
        yield from pool.imap(example, window, chunksize=max(1, len(window) // (4 * workers)))


def forget_split(out: str, split: str) -> None:
    """Removes `<split>.json` from `out`: from here on the folder does not claim the split is whole (converters
    call it before reading their input, so that a failed conversion never leaves an earlier one's claim)."""
    path = os.path.join(out, f"{split}.json")
    if os.path.exists(path):
        os.remove(path)


def write_split(out: str, split: str, records: Sequence, example: Callable[[object], tuple[Mapping, tuple]], *,
                num_shards: int, source: str, counts: Mapping, kind: str = "frame", workers: int = 0,
                progress_every: float = PROGRESS_SECONDS) -> dict:
    """Writes `records` in order as `<split>-*-of-*.tfrecord` (+ index) into `out`, then `<split>.json`; returns
    that metadata. `records` is read by index, one at a time (it may load each lazily: memory stays bounded).
    `example(record)` gives a record's shard fields (frames: image, video, frame, au, expr, va, identity; triplets:
    images, triplet_type, key; `source` is added) and its image's (height, width), or None to leave the record
    out (e.g. a frame where no face is found: counted as `records_left_out`). The metadata holds the statistics of
    the records and `counts` (the reader's own tallies, e.g. lines skipped). Stale shards of an earlier conversion
    are removed; a failed one leaves no `<split>.json` and no temporary files. With `workers` > 0, `example` runs in
    that many spawned processes (it and the records must pickle: a module-level function); the shards are the same.
    Progress with an ETA goes to stderr every `progress_every` seconds."""
    os.makedirs(out, exist_ok=True)
    forget_split(out, split)
    count = max(1, min(num_shards, len(records)))
    bounds = np.linspace(0, len(records), count + 1).round().astype(int)
    statistics = FrameStatistics() if kind == "frame" else _TripletStatistics()
    progress = Progress(f"{os.path.basename(os.path.normpath(out))}/{split}", len(records), every=progress_every)
    skipped = 0

    def examples(start: int, stop: int, pool):
        nonlocal skipped
        for result in _examples_in_order(records, start, stop, example, pool, workers):
            progress.step()
            if result is None:
                skipped += 1
                continue
            fields, shape = result
            statistics.add(fields, shape)
            yield {**fields, "source": source}

    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 0 and len(records) > 1 else None
    try:
        entries = [shards.write_shard(os.path.join(out, shards.shard_name(split, i, count)),
                                      examples(bounds[i], bounds[i + 1], pool), kind) for i in range(count)]
    except BaseException:  # an interrupted shard leaves its temporaries: remove them
        for partial in glob.glob(os.path.join(out, f"{split}-*-of-*.tfrecord*.tmp")):
            os.remove(partial)
        raise
    finally:
        if pool is not None:
            pool.terminate()
    progress.finish()
    keep = {e["file"] for e in entries} | {e["index"] for e in entries}
    for stale in glob.glob(os.path.join(out, f"{split}-*-of-*.tfrecord*")):
        if os.path.basename(stale) not in keep:
            os.remove(stale)
    metadata = {"format_version": shards.FORMAT_VERSION, "split": split, "record": kind, "source": source,
                "num_records": len(records) - skipped, "records_left_out": skipped, "shards": entries,
                **statistics.summary(), **counts}
    shards.write_metadata(out, split, metadata)
    return metadata


def describe(metadata: Mapping) -> str:
    """One line of counts of a converted split: records, videos, shards and labelled frames per task."""
    n = metadata["labelled"]
    return (f"{metadata['split']}: {metadata['num_records']} records from {metadata['num_videos']} videos in "
            f"{len(metadata['shards'])} shards; labelled AU {n['au']}, EXPR {n['expr']}, VA {n['va']}")
