"""CLI: an Aff-Wild2 tree (real or synthetic) -> TFRecord shards per split (ARCHITECTURE.md, "Shard record
contract"), and `prepare_synthetic`, the cached synthetic dataset that tests and the demo train on.

    python -m pasn_jax.data.convert affwild2 --root ROOT --out OUT [--num-shards N] [--source NAME]
"""

import argparse
import glob
import os
import shutil
import sys
import time

import numpy as np
import simplejpeg

from pasn_jax.data import affwild2, labels, shards, synthetic


def _image_bytes(path: str) -> tuple[bytes, tuple[int, int]]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        raise affwild2.AffWild2Error(f"{path}: not a JPEG image") from None
    return data, (height, width)


def _split_metadata(split: str, source: str, read: affwild2.SplitRecords, entries: list, sizes: dict) -> dict:
    au = np.asarray([r.au for r in read.records], np.int64).reshape(-1, labels.NUM_AUS)  # [N, 12]
    expr = np.asarray([r.expr for r in read.records], np.int64)  # [N]
    va = np.asarray([r.va for r in read.records], np.float64).reshape(-1, 2)  # [N, 2]
    au_labelled = au != labels.AU_MISSING
    positives = ((au == 1) & au_labelled).sum(0)
    return {
        "format_version": shards.FORMAT_VERSION,
        "split": split,
        "source": source,
        "num_records": len(read.records),
        "num_videos": len({r.video for r in read.records}),
        "shards": entries,
        "labelled": {"au": int(au_labelled.any(1).sum()), "expr": int((expr != labels.EXPR_MISSING).sum()),
                     "va": int((va != labels.VA_MISSING).all(1).sum())},
        "expr_histogram": {n: int((expr == i).sum()) for i, n in enumerate(labels.EXPR_NAMES)},
        "au_positive_rate": {n: round(float(positives[i] / max(1, au_labelled[:, i].sum())), 4)
                             for i, n in enumerate(labels.AU_NAMES)},
        "label_lines": read.label_lines,
        "frames_without_image": read.frames_without_image,
        "images_without_label": read.images_without_label,
        "image_sizes": {f"{h}x{w}": n for (h, w), n in sorted(sizes.items())},
    }


def convert_split(root: str, out: str, split: str, *, num_shards: int, source: str) -> dict:
    """Writes `<split>-*.tfrecord` (+ index) and then `<split>.json` into `out`; returns the metadata."""
    read = affwild2.read_split(root, split)
    metadata_path = os.path.join(out, f"{split}.json")
    if os.path.exists(metadata_path):  # from here on the folder does not claim this split is whole
        os.remove(metadata_path)
    count = max(1, min(num_shards, len(read.records)))
    bounds = np.linspace(0, len(read.records), count + 1).round().astype(int)
    sizes: dict = {}

    def examples(records):
        for r in records:
            image, shape = _image_bytes(r.image_path)
            sizes[shape] = sizes.get(shape, 0) + 1
            yield {"image": image, "video": r.video, "frame": r.frame, "au": r.au, "expr": r.expr, "va": r.va,
                   "source": source}

    entries = [shards.write_shard(os.path.join(out, shards.shard_name(split, i, count)),
                                  examples(read.records[bounds[i]:bounds[i + 1]])) for i in range(count)]
    keep = {e["file"] for e in entries} | {e["index"] for e in entries}
    for stale in glob.glob(os.path.join(out, f"{split}-*-of-*.tfrecord*")):
        if os.path.basename(stale) not in keep:
            os.remove(stale)
    metadata = _split_metadata(split, source, read, entries, sizes)
    shards.write_metadata(out, split, metadata)
    return metadata


def convert_affwild2(root: str, out: str, *, num_shards: int = 8, source: str | None = None) -> dict:
    """Converts both splits of an Aff-Wild2 tree; returns {split: metadata}. The source defaults to 'synthetic'
    when the tree carries the generator's marker file, else 'affwild2'."""
    if num_shards < 1:
        raise affwild2.AffWild2Error(f"--num-shards must be >= 1, got {num_shards}")
    affwild2.check_tree(root)
    if source is None:
        source = "synthetic" if os.path.isfile(os.path.join(root, synthetic.MARKER_FILE)) else "affwild2"
    os.makedirs(out, exist_ok=True)
    return {split: convert_split(root, out, split, num_shards=num_shards, source=source) for split in labels.SPLIT_SETS}


def describe(metadata: dict) -> str:
    """One line of counts per split and task."""
    n = metadata["labelled"]
    return (f"{metadata['split']}: {metadata['num_records']} records from {metadata['num_videos']} videos in "
            f"{len(metadata['shards'])} shards; labelled AU {n['au']}, EXPR {n['expr']}, VA {n['va']}; "
            f"{metadata['frames_without_image']} label lines without image skipped, "
            f"{metadata['images_without_label']} images without label line ignored")


def prepare_synthetic(cache_dir: str, *, videos: int, frames: int, size: int, seed: int, num_shards: int) -> str:
    """Renders and converts the synthetic Aff-Wild2 once per argument set; returns its shards folder.

    Everything is built in a temporary folder of `cache_dir` that is renamed into place at the end, so an
    interrupted run leaves nothing that looks finished and concurrent callers agree on one result.
    """
    name = (f"synthetic-v{synthetic.GENERATOR_VERSION}-{videos}videos-{frames}frames-{size}px-seed{seed}-"
            f"{num_shards}shards")
    final = os.path.join(cache_dir, name)
    shards_dir = os.path.join(final, "shards")
    if all(os.path.isfile(os.path.join(shards_dir, f"{s}.json")) for s in labels.SPLIT_SETS):
        print(f"synthetic Aff-Wild2: using {shards_dir}")
        return shards_dir
    start = time.perf_counter()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = os.path.join(cache_dir, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        marker = synthetic.generate(os.path.join(tmp, "tree"), videos=videos, frames=frames, size=size, seed=seed)
        metadata = convert_affwild2(os.path.join(tmp, "tree"), os.path.join(tmp, "shards"), num_shards=num_shards)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            shutil.rmtree(tmp)  # another process finished the same dataset first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"synthetic Aff-Wild2: rendered {marker['images']} images ({videos} videos x {frames} frames, {size} px, "
          f"seed {seed}) and wrote {shards_dir} in {time.perf_counter() - start:.1f} s")
    for split in labels.SPLIT_SETS:
        print("  " + describe(metadata[split]))
    return shards_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="dataset", required=True)
    command = commands.add_parser("affwild2", help="an Aff-Wild2 (ABAW2 layout) tree, real or synthetic")
    command.add_argument("--root", required=True, help="folder holding cropped_aligned/ and annotations/")
    command.add_argument("--out", required=True, help="shard folder to write")
    command.add_argument("--num-shards", type=int, default=8, help="shards per split")
    command.add_argument("--source", default=None, help="source name stored in every record "
                         "(default: 'synthetic' for the generator's trees, else 'affwild2')")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        metadata = convert_affwild2(args.root, args.out, num_shards=args.num_shards, source=args.source)
    except (affwild2.AffWild2Error, shards.ShardError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split in labels.SPLIT_SETS:
        print(describe(metadata[split]))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
