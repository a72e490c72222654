"""Benchmark: end-to-end `pasn_jax.predict` frames per second on a synthetic video with one face (the astronaut's
head on skimage's coffee photo, benchmarks/detector.py, moving 2 px a frame): decode + detect + track + align +
PASN, with every frame searched in full (--detect-every 1) and with predict's default (faces followed between key
frames, pasn_jax/faces/stream.py), in the same run. The model is a workdir's, or with no --workdir a randomly
initialised PASN of the demo config (configs/abaw.py:demo tower fields and image size; speed does not depend on the
weights).

    python -m benchmarks.predict [--workdir RUN] [--width 640 --height 360 --frames 50 --batch 8]
"""

import argparse
import os
import tempfile
import time

import jax
import numpy as np

from benchmarks import common
from benchmarks.detector import frame
from configs import abaw
from pasn_jax import train_state, workdir_config
from pasn_jax.faces.video import Video, write_video
from pasn_jax.predict import DETECT_EVERY, Predictor
from pasn_jax.tasks import pasn as pasn_task


def demo_predictor(batch: int) -> Predictor:
    """A randomly initialised PASN of the demo config."""
    config = abaw.get_config("demo")
    with tempfile.TemporaryDirectory() as empty:
        workdir_config.resolve_dtype(empty, config)  # float32 on a CPU, bfloat16 on a GPU/TPU
    model = pasn_task.build_model(config)
    variables = train_state.init_variables(model, config.model.image_size, jax.random.key(0))
    return Predictor(model, variables, config, batch=batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="", help="a trained PASN workdir (default: a random demo PASN)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8, help="frames per detector call")
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    predictor = Predictor.from_workdir(args.workdir, batch=args.batch) if args.workdir else demo_predictor(args.batch)
    m = predictor.config.model
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "clip.mp4")
        image = frame(args.width, args.height)
        write_video(path, [np.roll(image, 2 * i, axis=1) for i in range(args.frames)])
        start = time.perf_counter()
        with Video(path) as video:
            decoded = sum(1 for _ in video)
        decode = decoded / (time.perf_counter() - start)
        rates = {}
        for every in (1, DETECT_EVERY):
            predictor.detect_every = every
            predictor.predict_video(path)  # compiles
            start = time.perf_counter()
            records = predictor.predict_video(path)
            rates[every] = decoded / (time.perf_counter() - start)
    print(f"predict {args.width}x{args.height}, {decoded} frames, {len(records)} faces, PASN {m.backbone} width "
          f"{m.width} @{m.image_size} {m.dtype} ({args.workdir or 'random demo'}), batch {args.batch}: "
          f"{rates[DETECT_EVERY]:.1f} frames/s end to end with --detect-every {DETECT_EVERY}, {rates[1]:.1f} "
          f"searching every frame ({rates[DETECT_EVERY] / rates[1]:.2f}x; decode alone {decode:.0f} frames/s)")


if __name__ == "__main__":
    main()
