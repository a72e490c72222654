"""CLI: a dataset tree -> TFRecord shards per split (ARCHITECTURE.md, "Shard record contract").

    python -m pasn_jax.data.convert affwild2 --root ROOT --out OUT [--num-shards N] [--source NAME]
"""

import argparse
import sys
import time

from pasn_jax.data import affwild2, shards


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
        metadata = affwild2.convert(args.root, args.out, num_shards=args.num_shards, source=args.source)
    except (affwild2.AffWild2Error, shards.ShardError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split in affwild2.SPLIT_SETS:
        print(affwild2.describe(metadata[split]))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
