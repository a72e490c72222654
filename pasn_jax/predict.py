"""PASN's predictions on faces in raw media: detect (MTCNN), track, align, then the trained model of a workdir.

    python -m pasn_jax.predict --workdir RUN [--out predictions] [--overlay] [--detect-every 5] INPUT...

INPUTs are image files, folders of images (their frames, in sorted file-name order) and video files, read as
`python -m pasn_jax.faces crop` reads them (pasn_jax/faces/crop.py). Each face is aligned at the crop size of the
model's training data (a cropped_aligned frame: 112 px for Aff-Wild2, data.synthetic.size for the synthetic set),
then resized and normalised as the evaluation pipeline prepares such a frame (data.image_size). A video's frames are
searched in full every --detect-every (5) frames and its faces followed by R-Net and O-Net in between
(faces/stream.py: a face entering the picture is found up to 4 frames late; 1 searches every frame); images and
folders are searched in full.

OUT/predictions.csv has one row per face per frame in the layout of every predictions file (pasn_jax/predictions.py):
the video (the input's name: a video file's or folder's name without extension, so that a cropped_aligned tree's
folders give ABAW's video names), the frame (from 1), prob_<AU> x 12, prob_<expression> x 7, pred_valence,
pred_arousal; then the most probable expression, the input's path, the face's track, `face` in `status`, its box
and five landmarks. A frame without a face is a row with status `no face`; an input that cannot be read, a row with
status `unreadable` (and a line on stderr); readers of predictions skip both. `--overlay` draws each frame's boxes,
expressions and valence/arousal into OUT/overlays/<name>/<frame:05d>.jpg. The exit code is 1 when an input could
not be read, else 0.
"""

import argparse
import csv
import functools
import os
import sys
import time

import jax
import numpy as np
from PIL import Image, ImageDraw

from pasn_jax import checkpointing
from pasn_jax.data import pipeline
from pasn_jax.faces import align, crop, track
from pasn_jax.faces.detector import LANDMARK_NAMES, Detector, FaceInputError
from pasn_jax.faces.stream import FrameDetector
from pasn_jax.faces.video import VideoError
from pasn_jax.faces.weights import WeightsError
from pasn_jax.labels import EXPR_NAMES
from pasn_jax.predictions import PREDICTED_COLUMNS
from pasn_jax.progress import duration
from pasn_jax.tasks import pasn as pasn_task

AFFWILD2_CROP_SIZE = 112  # side of Aff-Wild2's cropped_aligned frames
COLUMNS = (PREDICTED_COLUMNS + ["expression", "input", "track", "status", "x1", "y1", "x2", "y2"]
           + [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"])
PROGRESS_SECONDS = 10.0
MAX_BATCH = 64  # faces per model call
DETECT_EVERY = 5  # a video's frames searched in full: every 5th (stream.py); faces followed in between


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Predictor:
    """A trained PASN with a face detector: `predict_images` and `predict_video` give one record (a dict) per face
    per frame: video, input, frame, track, box (x1, y1, x2, y2), landmarks (5 x (x, y)), au_prob (12), expr_prob (7),
    expression, valence, arousal."""

    def __init__(self, model, variables: dict, config, *, detector: Detector | None = None, batch: int = 8,
                 detect_every: int = DETECT_EVERY, step: int | None = None):
        if detect_every < 1:
            raise FaceInputError(f"detect_every must be >= 1 frame, got {detect_every}")
        self.config, self.batch, self.detect_every, self.step = config, batch, detect_every, step
        self.image_size = int(config.data.image_size)
        synthetic = config.data.source == "synthetic"
        self.crop_size = int(config.data.synthetic.size) if synthetic else AFFWILD2_CROP_SIZE
        self.detector = detector or Detector()
        self._variables = jax.device_put(variables)
        self._forward = jax.jit(functools.partial(pasn_task._predict, model))

    @classmethod
    def from_workdir(cls, workdir: str, **kwargs) -> "Predictor":
        """The workdir's model (config.json) with its latest checkpoint; kwargs as Predictor's."""
        config, model, variables, step = checkpointing.read_trained(workdir, pasn_task.build_model)
        return cls(model, variables, config, step=step, **kwargs)

    def model_input(self, face_crop: np.ndarray) -> np.ndarray:
        """An aligned uint8 crop -> the model's float32 [S, S, 3], as pipeline.plain_image makes an eval frame."""
        return pipeline.plain_pixels(face_crop, self.image_size)

    def predict_crops(self, crops: np.ndarray) -> dict:
        """Model inputs [N, S, S, 3] -> {'au_prob' [N, 12], 'expr_prob' [N, 7], 'va_pred' [N, 2]} (host arrays)."""
        parts = []
        for start in range(0, len(crops), MAX_BATCH):
            chunk = crops[start:start + MAX_BATCH]
            padded = np.zeros((_pow2(len(chunk)),) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            parts.append({k: v[:len(chunk)] for k, v in jax.device_get(self._forward(self._variables, padded)).items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in ("au_prob", "expr_prob", "va_pred")}

    def frames(self, stream, name: str, tracker: track.Tracker | None, video: str | None = None, *,
               follow: bool = False):
        """(frame number, image, records) per frame of a stream of (number, uint8 RGB image) of input `name` (video
        `video`, by default the name); without a tracker, a face's track is its index in its frame. follow: the
        stream is a video's frames, searched in full every detect_every-th and followed in between (stream.py);
        otherwise every image is searched in full."""
        faces_of = FrameDetector(self.detector, self.detect_every if follow else 1)
        for chunk in crop.batched(stream, self.batch):
            found = faces_of([image for _, image in chunk])
            records, inputs = [], []
            for (number, image), faces in zip(chunk, found):
                ids = tracker.update([f.box for f in faces]) if tracker else list(range(len(faces)))
                records.append([dict(video=video or name, input=name, frame=number, track=t, box=f.box,
                                     landmarks=tuple(tuple(float(v) for v in p) for p in f.landmarks))
                                for f, t in zip(faces, ids)])
                inputs += [self.model_input(align.align(image, f.landmarks, self.crop_size)[0]) for f in faces]
            if inputs:
                out, index = self.predict_crops(np.stack(inputs)), 0
                for record in (r for frame_records in records for r in frame_records):
                    expr = out["expr_prob"][index]
                    record.update(au_prob=tuple(map(float, out["au_prob"][index])), expr_prob=tuple(map(float, expr)),
                                  expression=EXPR_NAMES[int(np.argmax(expr))],
                                  valence=float(out["va_pred"][index][0]), arousal=float(out["va_pred"][index][1]))
                    index += 1
            for (number, image), frame_records in zip(chunk, records):
                yield number, image, frame_records

    def predict_images(self, images, name: str = "images") -> list[dict]:
        """Records of a list of uint8 RGB images [H, W, 3], image i as frame i + 1 of input `name` (not tracked)."""
        return [r for _, _, rs in self.frames(enumerate(images, start=1), name, None) for r in rs]

    def predict_video(self, path: str) -> list[dict]:
        """Records of a video file's faces, frames from 1, faces tracked (raises VideoError)."""
        source = crop.Source(path, os.path.splitext(os.path.basename(path))[0], "video")
        _, stream = crop.frames(source, None)
        return [r for _, _, rs in self.frames(stream, path, track.Tracker(), source.name, follow=True)
                for r in rs]


def training_note(config) -> str:
    """Which data the model learnt from, and, for the synthetic set, what its outputs on real faces are worth."""
    if config.data.source == "synthetic":
        return ("the model was trained on the synthetic Aff-Wild2 (rendered faces, data.source 'synthetic'): its AU, "
                "expression and valence/arousal outputs on real photographs mean nothing until a model trained on "
                "real data (Aff-Wild2) is given")
    return f"the model was trained on the Aff-Wild2 shards in {config.data.get('dir') or '?'}"


def row(record: dict) -> list:
    """A predictions.csv row of a face record."""
    model = [*record["au_prob"], *record["expr_prob"], record["valence"], record["arousal"]]
    face = [*record["box"], *(v for point in record["landmarks"] for v in point)]
    return ([record["video"], record["frame"]] + [repr(float(v)) for v in model]
            + [record["expression"], record["input"], record["track"], "face"] + [repr(float(v)) for v in face])


def _empty_row(video: str, name: str, frame, status: str) -> list:
    values = dict(video=video, frame=frame, input=name, status=status)
    return [values.get(column, "") for column in COLUMNS]


def overlay(image: np.ndarray, records: list[dict]) -> Image.Image:
    """The frame with each face's box, expression and valence/arousal drawn on it."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for r in records:
        x1, y1, x2, y2 = r["box"]
        draw.rectangle((x1, y1, x2, y2), outline=(0, 255, 0), width=2)
        text = f"{r['expression']} {max(r['expr_prob']):.2f}  V {r['valence']:+.2f} A {r['arousal']:+.2f}"
        left, top, right, bottom = draw.textbbox((x1, max(0.0, y1 - 14)), text)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
        draw.text((x1, max(0.0, y1 - 14)), text, fill=(0, 255, 0))
    return picture


def predict_input(predictor: Predictor, source: crop.Source, video: str, writer, overlay_dir: str | None, log,
                  warn) -> tuple:
    """Writes one input's rows (its frames as those of `video`); returns (frames read, faces found)."""
    count, stream = crop.frames(source, warn)
    frames_read = faces = 0
    start = last_report = time.perf_counter()
    for number, image, records in predictor.frames(stream, source.path, track.Tracker(), video,
                                                     follow=source.kind == "video"):
        frames_read += 1
        faces += len(records)
        writer.writerows([row(r) for r in records] or [_empty_row(video, source.path, number, "no face")])
        if overlay_dir:
            os.makedirs(overlay_dir, exist_ok=True)
            overlay(image, records).save(os.path.join(overlay_dir, f"{number:05d}.jpg"), quality=90)
        now = time.perf_counter()
        if now - last_report >= PROGRESS_SECONDS:
            last_report = now
            rate = frames_read / (now - start)
            eta = f", ETA {duration((count - frames_read) / rate)}" if count and count > frames_read else ""
            log(f"  {source.name}: {frames_read}{f'/{count}' if count else ''} frames, {rate:.1f} frames/s{eta}")
    if source.kind == "video" and frames_read == 0:
        raise VideoError(f"{source.path}: a video without frames")
    return frames_read, faces


def run(predictor: Predictor, inputs: list[str], out: str, *, overlays: bool = False, log=print,
        warn=lambda line: print(line, file=sys.stderr, flush=True)) -> dict:
    """Predicts every input into OUT/predictions.csv (written under a temporary name, then renamed), going on after
    a bad one; returns {'errors': [...], 'faceless': [...], 'faces': n, 'frames': n}."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "predictions.csv")
    tmp = f"{path}.tmp-{os.getpid()}"
    summary, seen = {"errors": [], "faceless": [], "faces": 0, "frames": 0}, {}
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for number, item in enumerate(inputs, start=1):
                try:
                    source = crop.source_of(item)
                    seen[source.name] = seen.get(source.name, 0) + 1  # a second input of a name: <name>_2
                    name = source.name if seen[source.name] == 1 else f"{source.name}_{seen[source.name]}"
                    overlay_dir = os.path.join(out, "overlays", name) if overlays else None
                    frames, faces = predict_input(predictor, source, name, writer, overlay_dir, log, warn)
                except (crop.CropError, VideoError, OSError) as e:
                    summary["errors"].append(item)
                    warn(f"error: {e}")
                    writer.writerow(_empty_row("", item, "", "unreadable"))
                    continue
                summary["frames"] += frames
                summary["faces"] += faces
                if not faces:
                    summary["faceless"].append(item)
                    warn(f"{item}: no face in {frames} frame(s)")
                else:
                    log(f"[{number}/{len(inputs)}] {item}: {frames} frame(s), {faces} face(s)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pasn_jax.predict", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, video files")
    parser.add_argument("--workdir", required=True, help="a trained PASN workdir (config.json and checkpoints)")
    parser.add_argument("--out", default="predictions", help="folder for predictions.csv (and overlays/)")
    parser.add_argument("--overlay", action="store_true", help="also write OUT/overlays/<name>/<frame:05d>.jpg")
    parser.add_argument("--min-face", type=float, default=20.0, help="smallest face side searched, in pixels")
    parser.add_argument("--batch", type=int, default=8, help="frames per detector call")
    parser.add_argument("--detect-every", type=int, default=DETECT_EVERY,
                        help="search a video's frames in full every N frames, follow its faces in between (1: all)")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.detect_every < 1:
        print(f"error: need --batch >= 1 and --detect-every >= 1, got {args.batch}, {args.detect_every}",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        predictor = Predictor.from_workdir(args.workdir, detector=Detector(min_face_size=args.min_face),
                                           batch=args.batch, detect_every=args.detect_every)
    except (FileNotFoundError, WeightsError, FaceInputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.workdir} (step {predictor.step}): {training_note(predictor.config)}", flush=True)
    summary = run(predictor, args.inputs, args.out, overlays=args.overlay, log=lambda line: print(line, flush=True))
    print(f"done in {time.perf_counter() - start:.1f} s: {summary['frames']} frame(s), {summary['faces']} face(s) "
          f"-> {os.path.join(args.out, 'predictions.csv')}")
    return crop.report_unusable(summary)


if __name__ == "__main__":
    sys.exit(main())
