"""Frame records -> the shards of one split (ARCHITECTURE.md, "Shard record contract"): the part every converter
shares. Shards are written under temporary names and renamed; `<split>.json` is removed first and written last, so
an interrupted conversion never leaves a folder that claims the split is whole."""

import glob
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import simplejpeg

from pasn_jax import labels
from pasn_jax.data import shards


def read_jpeg(path: str, error: type[Exception]) -> tuple[bytes, tuple[int, int]]:
    """The JPEG file's bytes and (height, width); `error` naming the file if it is not a JPEG image."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        raise error(f"{path}: not a JPEG image") from None
    return data, (height, width)


def label_statistics(au: np.ndarray, expr: np.ndarray, va: np.ndarray) -> dict:
    """Labelled counts per task, the expression histogram and the AU positive rates of au [N, 12], expr [N],
    va [N, 2] (sentinels where not annotated)."""
    au_labelled = au != labels.AU_MISSING
    positives = ((au == 1) & au_labelled).sum(0)
    return {
        "labelled": {"au": int(au_labelled.any(1).sum()), "expr": int((expr != labels.EXPR_MISSING).sum()),
                     "va": int((va != labels.VA_MISSING).all(1).sum())},
        "expr_histogram": {n: int((expr == i).sum()) for i, n in enumerate(labels.EXPR_NAMES)},
        "au_positive_rate": {n: round(float(positives[i] / max(1, au_labelled[:, i].sum())), 4)
                             for i, n in enumerate(labels.AU_NAMES)},
    }


def write_split(out: str, split: str, records: Sequence, example: Callable[[object], tuple[Mapping, tuple]], *,
                num_shards: int, source: str, counts: Mapping) -> dict:
    """Writes `records` in order as `<split>-*-of-*.tfrecord` (+ index) into `out`, then `<split>.json`; returns
    that metadata. `example(record)` gives a record's shard fields (image, video, frame, au, expr, va; `source` is
    added) and its image's (height, width). The metadata holds the label statistics, the image sizes and `counts`
    (the reader's own tallies, e.g. lines skipped). Stale shards of an earlier conversion are removed."""
    os.makedirs(out, exist_ok=True)
    metadata_path = os.path.join(out, f"{split}.json")
    if os.path.exists(metadata_path):  # from here on the folder does not claim this split is whole
        os.remove(metadata_path)
    count = max(1, min(num_shards, len(records)))
    bounds = np.linspace(0, len(records), count + 1).round().astype(int)
    sizes: dict = {}
    au, expr, va, videos = [], [], [], set()

    def examples(part):
        for record in part:
            fields, shape = example(record)
            sizes[shape] = sizes.get(shape, 0) + 1
            au.append(fields["au"])
            expr.append(fields["expr"])
            va.append(fields["va"])
            videos.add(fields["video"])
            yield {**fields, "source": source}

    entries = [shards.write_shard(os.path.join(out, shards.shard_name(split, i, count)),
                                  examples(records[bounds[i]:bounds[i + 1]])) for i in range(count)]
    keep = {e["file"] for e in entries} | {e["index"] for e in entries}
    for stale in glob.glob(os.path.join(out, f"{split}-*-of-*.tfrecord*")):
        if os.path.basename(stale) not in keep:
            os.remove(stale)
    statistics = label_statistics(np.asarray(au, np.int64).reshape(-1, labels.NUM_AUS), np.asarray(expr, np.int64),
                                  np.asarray(va, np.float64).reshape(-1, labels.NUM_VA))
    metadata = {"format_version": shards.FORMAT_VERSION, "split": split, "source": source,
                "num_records": len(records), "num_videos": len(videos), "shards": entries, **statistics, **counts,
                "image_sizes": {f"{h}x{w}": n for (h, w), n in sorted(sizes.items())}}
    shards.write_metadata(out, split, metadata)
    return metadata


def describe(metadata: Mapping) -> str:
    """One line of counts of a converted split: records, videos, shards and labelled frames per task."""
    n = metadata["labelled"]
    return (f"{metadata['split']}: {metadata['num_records']} records from {metadata['num_videos']} videos in "
            f"{len(metadata['shards'])} shards; labelled AU {n['au']}, EXPR {n['expr']}, VA {n['va']}")
