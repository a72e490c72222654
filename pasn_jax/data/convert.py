"""CLI: a dataset in its release layout -> TFRecord shards (ARCHITECTURE.md, "Shard record contract").

    python -m pasn_jax.data.convert affwild2 --root ROOT --out OUT [--num-shards N] [--source NAME]
    python -m pasn_jax.data.convert insightface --root FOLDER --out OUT [--num-shards N]
    python -m pasn_jax.data.convert fec --csv CSV --images DIR --out OUT --split train|test [--url-map CSV]
        [--size 112] [--skip-missing]
    python -m pasn_jax.data.convert bp4d --root ROOT --out OUT [--size 112] [--val-subjects F001,M003]
    python -m pasn_jax.data.convert dfew --root ROOT --out OUT [--fold 1] [--frames-per-clip 16]
    python -m pasn_jax.data.convert affectnet --root ROOT --out OUT [--size 112] [--va-range=-1,-0.25]
    (every converter but fec: [--workers N]; all: progress with an ETA on stderr, each split atomic)
    OUT may be on an object store (gs://BUCKET/shards): the shards are written locally, then uploaded, each split's
    <split>.json last.

affwild2: Aff-Wild2 (ABAW2 layout), both splits. insightface: a face-recognition training set (train.rec, train.idx,
property: MS1MV3, Glint360K, CASIA-WebFace...) streamed into split 'train' with identities; the verification sets
beside it (*.bin) are copied next to the shards, where the face-identity stage evaluates on them. fec: one CSV of
Google's FEC (expression-similarity triplets) with the images downloaded into a folder. bp4d, dfew, affectnet: the
external datasets of the paper's data augmentation (§3.4) in Aff-Wild2's label space (ARCHITECTURE.md, "Label
conventions"): BP4D's AU occurrence (faces cropped by pasn_jax.faces), one DFEW fold's clips (splits train and test)
and AffectNet's manually annotated images (EXPR and VA, faces cropped by their boxes).
"""

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time

from pasn_jax import paths
from pasn_jax.data import affectnet, affwild2, bp4d, dfew, fec, insightface, recordio, shards


def _affwild2(args) -> list[str]:
    metadata = affwild2.convert(args.root, args.out, num_shards=args.num_shards, source=args.source,
                                workers=args.workers)
    return [affwild2.describe(metadata[split]) for split in metadata]


def _insightface(args) -> list[str]:
    metadata = insightface.convert_identities(args.root, args.out, num_shards=args.num_shards,
                                              source=args.source or "recordio", workers=args.workers)
    copied = []
    for path in sorted(glob.glob(os.path.join(args.root, "*.bin"))):
        target = os.path.join(args.out, os.path.basename(path))
        shutil.copy(path, target + ".tmp")
        os.replace(target + ".tmp", target)
        copied.append(os.path.basename(path))
    return [f"train: {metadata['num_records']} images of {metadata['num_identities']} identities "
            f"({metadata['num_classes']} classes) in {len(metadata['shards'])} shards",
            f"verification sets copied: {', '.join(copied) or 'none'}"]


def _fec(args) -> list[str]:
    metadata = fec.convert(args.csv, args.images, args.out, args.split, url_map=args.url_map, size=args.size,
                           num_shards=args.num_shards, source=args.source or "fec", skip_missing=args.skip_missing)
    return [fec.describe(metadata)]


def _bp4d(args) -> list[str]:
    metadata = bp4d.convert(args.root, args.out, num_shards=args.num_shards, source=args.source, workers=args.workers,
                            size=args.size, val_subjects=args.val_subjects)
    return [bp4d.describe(m) for m in metadata.values()]


def _dfew(args) -> list[str]:
    metadata = dfew.convert(args.root, args.out, num_shards=args.num_shards, source=args.source, workers=args.workers,
                            fold=args.fold, frames_per_clip=args.frames_per_clip)
    return [dfew.describe(m) for m in metadata.values()]


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (e.g. -1,-0.25), got {text!r}") from None
    return lo, hi


def _affectnet(args) -> list[str]:
    metadata = affectnet.convert(args.root, args.out, num_shards=args.num_shards, source=args.source,
                                 workers=args.workers, size=args.size, va_range=args.va_range)
    return [affectnet.describe(m) for m in metadata.values()]


def _run(args) -> list[str]:
    """args.run(args); for an --out on an object store, into a local temporary folder, then uploaded."""
    if not paths.is_remote(args.out):
        return args.run(args)
    out = str(paths.check(args.out, "--out"))
    local = tempfile.mkdtemp(prefix=".convert-")
    try:
        args.out = local
        lines = args.run(args)
        splits = [n for n in os.listdir(local) if n.endswith(".json")]
        paths.copy_tree(local, out, last=splits)  # a split is whole once its <split>.json is there
    finally:
        args.out = out
        shutil.rmtree(local, ignore_errors=True)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="dataset", required=True)
    command = commands.add_parser("affwild2", help="an Aff-Wild2 (ABAW2 layout) tree, real or synthetic")
    command.add_argument("--root", required=True, help="folder holding cropped_aligned/ and annotations/")
    command.set_defaults(run=_affwild2, shards=8)
    command = commands.add_parser("insightface", help="an insightface face-recognition training set folder")
    command.add_argument("--root", required=True, help="folder holding train.rec, train.idx, property (and *.bin)")
    command.set_defaults(run=_insightface, shards=8)
    command = commands.add_parser("fec", help="a CSV of Google's FEC triplets and its downloaded images")
    command.add_argument("--csv", required=True, help="faceexp-comparison-data-{train,test}-public.csv")
    command.add_argument("--images", required=True, help="folder of the images, named as their URLs' last part")
    command.add_argument("--split", required=True, help="split name to write (train, test)")
    command.add_argument("--url-map", default=None, help="CSV of url,path lines where names differ")
    command.add_argument("--size", type=int, default=112, help="side of the face crops, px")
    command.add_argument("--skip-missing", action="store_true", help="skip (and count) triplets with a missing image")
    command.set_defaults(run=_fec, shards=4)
    command = commands.add_parser("bp4d", help="BP4D-Spontaneous: Sequences/ frames and AUCoding/AU_OCC/ CSVs")
    command.add_argument("--root", required=True, help="folder holding Sequences/ and AUCoding/AU_OCC/")
    command.add_argument("--size", type=int, default=112, help="side of the aligned face crops, px")
    command.add_argument("--val-subjects", default="", help="comma-separated subjects for a val split (else all "
                         "train)")
    command.set_defaults(run=_bp4d, shards=8)
    command = commands.add_parser("dfew", help="DFEW: EmoLabel_DataSplit/ fold files and Clip/clip_224x224/ frames")
    command.add_argument("--root", required=True, help="folder holding EmoLabel_DataSplit/ and Clip/")
    command.add_argument("--fold", type=int, default=1, help="which of the five folds (1-5): splits train and test")
    command.add_argument("--frames-per-clip", type=int, default=0, help="evenly spaced frames kept per clip (0: all)")
    command.set_defaults(run=_dfew, shards=8)
    command = commands.add_parser("affectnet", help="AffectNet: Manually_Annotated_file_lists/ and _Images/")
    command.add_argument("--root", required=True, help="folder holding Manually_Annotated_file_lists/ and "
                         "Manually_Annotated_Images/")
    command.add_argument("--size", type=int, default=112, help="side of the face crops, px")
    command.add_argument("--va-range", type=_range, default=None, help="keep VA only where both values lie in "
                         "LO,HI (the paper: --va-range=-1,-0.25)")
    command.set_defaults(run=_affectnet, shards=8)
    for name, command in commands.choices.items():
        if name != "fec":  # FEC's face crops are cached across triplets in one process
            command.add_argument("--workers", type=int, default=0,
                                 help="processes that read and crop images (0: this one); the shards are the same")
        command.add_argument("--out", required=True, help="shard folder to write")
        command.add_argument("--num-shards", type=int, default=command.get_default("shards"), help="shards per split")
        command.add_argument("--source", default=None, help="source name stored in every record (default: the "
                             "dataset's; 'synthetic' for the generator's Aff-Wild2 trees)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        lines = _run(args)
    except (affwild2.AffWild2Error, recordio.RecordIOError, fec.FECError, bp4d.BP4DError, dfew.DFEWError,
            affectnet.AffectNetError, shards.ShardError, paths.PathError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
