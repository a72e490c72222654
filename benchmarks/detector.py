"""Benchmark: MTCNN face detection (pasn_jax.faces) frames per second on a 640x360 frame with one face, one frame
per call and batched, with and without the upright landmark pass.

    python -m benchmarks.detector [--width 640 --height 360 --frames 30 --batch 8]
"""

import argparse
import time

import numpy as np
import skimage.data
from PIL import Image

from benchmarks import common
from pasn_jax.faces.detector import Detector


def frame(width: int, height: int) -> np.ndarray:
    """skimage's coffee photo with the astronaut's head (about 110 px tall) pasted in."""
    canvas = Image.fromarray(skimage.data.coffee()).resize((width, height))
    canvas.paste(Image.fromarray(skimage.data.astronaut()[20:220, 130:320]).resize((160, 168)),
                 (width // 2 - 80, height // 2 - 84))
    return np.asarray(canvas)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    image = frame(args.width, args.height)
    for refine in (True, False):
        detector = Detector(refine_landmarks=refine)
        faces = detector.detect(image)  # compiles
        detector.detect_batch([image] * args.batch)
        start = time.perf_counter()
        for _ in range(args.frames):
            detector.detect(image)
        single = args.frames / (time.perf_counter() - start)
        batches = max(1, args.frames // args.batch)
        start = time.perf_counter()
        for _ in range(batches):
            detector.detect_batch([image] * args.batch)
        batched = batches * args.batch / (time.perf_counter() - start)
        print(f"detect {args.width}x{args.height}, refine_landmarks={refine}: {len(faces)} face(s); "
              f"{single:.1f} frames/s one per call, {batched:.1f} frames/s in batches of {args.batch}")


if __name__ == "__main__":
    main()
