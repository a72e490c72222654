"""CLI: aligned face crops in the Aff-Wild2 layout (crop.py) from image files, folders of images and videos.

    python -m pasn_jax.faces crop --out DIR [--size 224] INPUT...
"""

import argparse
import sys
import time

from pasn_jax.faces import crop
from pasn_jax.faces.detector import Detector, FaceInputError
from pasn_jax.faces.weights import WeightsError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pasn_jax.faces", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("crop", help="detect (MTCNN), track and align faces; write "
                                  f"OUT/{crop.IMAGES_DIR}/<name>/<frame:05d>.jpg")
    command.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    command.add_argument("--out", required=True, help="dataset root to write into (created if missing)")
    command.add_argument("--size", type=int, default=224, help="crop side in pixels (224 as the paper, 112 small)")
    command.add_argument("--min-face", type=float, default=20.0, help="smallest face side searched, in pixels")
    command.add_argument("--batch", type=int, default=8, help="frames per detector call")
    command.add_argument("--max-missed", type=int, default=10, help="frames a track may miss before it ends")
    command.add_argument("--min-track", type=int, default=1, help="drop tracks with fewer frames than this")
    command.add_argument("--detect-every", type=int, default=1, help="search a video's frames in full every N "
                         "frames, follow its faces with R-Net and O-Net in between (1, the paper's way: every frame)")
    args = parser.parse_args(argv)
    if args.size < 16 or args.batch < 1 or args.max_missed < 0 or args.min_track < 1 or args.detect_every < 1:
        print(f"error: need --size >= 16, --batch >= 1, --max-missed >= 0, --min-track >= 1, --detect-every >= 1; "
              f"got {args.size}, {args.batch}, {args.max_missed}, {args.min_track}, {args.detect_every}",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        detector = Detector(min_face_size=args.min_face)
    except (WeightsError, FaceInputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"cropping {len(args.inputs)} input(s) to {args.out}/{crop.IMAGES_DIR} at {args.size} px", flush=True)
    summary = crop.run(detector, args.inputs, args.out, size=args.size, batch=args.batch,
                       max_missed=args.max_missed, min_track=args.min_track, detect_every=args.detect_every,
                       log=lambda line: print(line, flush=True))
    results = summary["results"]
    print(f"done in {time.perf_counter() - start:.1f} s: {len(results)} input(s) read, "
          f"{sum(r.frames for r in results)} frames, {sum(r.crops for r in results)} crops in "
          f"{sum(len(r.folders) for r in results)} folder(s)")
    return crop.report_unusable(summary)


if __name__ == "__main__":
    sys.exit(main())
