"""Inputs (image files, folders of images, video files) -> Aff-Wild2-style aligned face crops:
`OUT/cropped_aligned/<name>/<frame:05d>.jpg`, frames numbered from 1.

<name> is the file name without extension (the folder's name for a folder of images). A video's frames count in
decode order; a folder's images are its frames, numbered by their names where all are numbers (cropped_aligned's
00001.jpg), else in sorted file-name order (an unreadable one is reported and its number left out); a single image
is frame 1. Faces are linked across frames by track.py; when an input has more than one track, each track goes to
its own folder `<name>_<k>`, k = 1, 2, ... in order of first appearance (as Aff-Wild2 splits two-person videos into
`_left` and `_right`). A video's frames are all searched in full unless detect_every > 1 (stream.py). An input's
folders are written under a temporary name and renamed once it is complete; an existing output folder of the same
name is never overwritten (the input is reported and skipped).
"""

import dataclasses
import os
import re
import shutil
import time

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from pasn_jax.faces import align, track
from pasn_jax.faces.stream import FrameDetector
from pasn_jax.faces.video import Video, VideoError
from pasn_jax.progress import duration

IMAGES_DIR = "cropped_aligned"  # as pasn_jax.data.affwild2.IMAGES_DIR
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")
JPEG_QUALITY = 95
PROGRESS_SECONDS = 10.0


class CropError(ValueError):
    """An input that gives no frames (unreadable, empty, a name already used); the message names it."""


@dataclasses.dataclass(frozen=True)
class Source:
    path: str
    name: str
    kind: str  # 'image', 'folder' or 'video'


@dataclasses.dataclass
class Result:
    source: Source
    frames: int = 0  # frames read
    frames_with_face: int = 0
    crops: int = 0
    folders: tuple[str, ...] = ()


def source_of(path: str) -> Source:
    """What kind of input `path` is (by extension for files: images, anything else is tried as a video)."""
    stripped = path.rstrip(os.sep) or path
    if os.path.isdir(stripped):
        return Source(stripped, os.path.basename(os.path.abspath(stripped)), "folder")
    if not os.path.isfile(stripped):
        raise CropError(f"{path}: no such file or folder")
    stem, extension = os.path.splitext(os.path.basename(stripped))
    return Source(stripped, stem, "image" if extension.lower() in IMAGE_EXTENSIONS else "video")


def read_image(path: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an image file (EXIF orientation applied)."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise CropError(f"{path}: not a readable image ({type(e).__name__})") from None


def folder_images(folder: str) -> list[str]:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
    return [os.path.join(folder, n) for n in names]


def frames(source: Source, warn):
    """(frame count or None, iterator of (frame number, uint8 RGB image)); `warn(line)` for skipped frames. A
    folder's frames are numbered by their file names where every name is a number, else 1, 2, ... in name order."""
    if source.kind == "image":
        image = read_image(source.path)
        return 1, iter([(1, image)])
    if source.kind == "folder":
        paths = folder_images(source.path)
        if not paths:
            raise CropError(f"{source.path}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
        # Files named by frame number (cropped_aligned's 00001.jpg) keep it; others are numbered 1, 2, ...
        if all(s.isdigit() and int(s) > 0 for s in stems) and len({int(s) for s in stems}) == len(stems):
            numbers, paths = zip(*sorted(zip((int(s) for s in stems), paths)))
        else:
            numbers = range(1, len(paths) + 1)

        def images():
            for number, path in zip(numbers, paths):
                try:
                    yield number, read_image(path)
                except CropError as e:
                    warn(f"{e}; frame {number} skipped")
        return len(paths), images()
    video = Video(source.path)

    def decoded():
        with video:
            yield from video
    return video.frame_count, decoded()


def _taken(images_dir: str, name: str) -> str | None:
    """An existing output folder that `name` would collide with, if any."""
    if not os.path.isdir(images_dir):
        return None
    pattern = re.compile(re.escape(name) + r"(_\d+)?$")
    return next((n for n in sorted(os.listdir(images_dir)) if pattern.match(n)), None)


def crop_source(detector, source: Source, out: str, *, size: int = 224, batch: int = 8, max_missed: int = 10,
                min_track: int = 1, detect_every: int = 1, log=print) -> Result:
    """Detects, tracks, aligns and writes the faces of one input; returns its counts (raises CropError)."""
    images_dir = os.path.join(out, IMAGES_DIR)
    taken = _taken(images_dir, source.name)
    if taken is not None:
        raise CropError(f"{source.path}: output {os.path.join(images_dir, taken)} already exists; remove it or "
                        f"choose another --out")
    result = Result(source)
    count, stream = frames(source, log)
    os.makedirs(images_dir, exist_ok=True)
    tmp = os.path.join(images_dir, f".{source.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tracker, lengths = track.Tracker(max_missed=max_missed), {}
    faces_of = FrameDetector(detector, detect_every if source.kind == "video" else 1)
    start = last_report = time.perf_counter()
    try:
        for chunk in batched(stream, batch):
            for (number, image), faces in zip(chunk, faces_of([image for _, image in chunk])):
                result.frames += 1
                ids = tracker.update([face.box for face in faces])
                result.frames_with_face += bool(faces)
                for face, track_id in zip(faces, ids):
                    crop, _ = align.align(image, face.landmarks, size)
                    folder = os.path.join(tmp, str(track_id))
                    os.makedirs(folder, exist_ok=True)
                    with open(os.path.join(folder, f"{number:05d}.jpg"), "wb") as f:
                        f.write(simplejpeg.encode_jpeg(crop, quality=JPEG_QUALITY, colorspace="RGB"))
                    lengths[track_id] = lengths.get(track_id, 0) + 1
                    result.crops += 1
            now = time.perf_counter()
            if now - last_report >= PROGRESS_SECONDS:
                last_report = now
                rate = result.frames / (now - start)
                eta = f", ETA {duration((count - result.frames) / rate)}" if count and count > result.frames else ""
                total = f"/{count}" if count else ""
                log(f"  {source.name}: {result.frames}{total} frames, {rate:.1f} frames/s{eta}")
        if source.kind == "video" and result.frames == 0:
            raise CropError(f"{source.path}: a video without frames")
        kept = [t for t in sorted(lengths) if lengths[t] >= min_track]
        for t in sorted(set(lengths) - set(kept)):
            result.crops -= lengths[t]
            shutil.rmtree(os.path.join(tmp, str(t)))
        names = [source.name] if len(kept) == 1 else [f"{source.name}_{k}" for k in range(1, len(kept) + 1)]
        for t, name in zip(kept, names):
            os.rename(os.path.join(tmp, str(t)), os.path.join(images_dir, name))
        result.folders = tuple(names)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def batched(stream, size: int):
    chunk = []
    for item in stream:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run(detector, inputs: list[str], out: str, *, size: int = 224, batch: int = 8, max_missed: int = 10,
        min_track: int = 1, detect_every: int = 1, log=print) -> dict:
    """crop_source over every input, going on after a bad one; returns {'results', 'errors', 'faceless'}."""
    results, errors, faceless, names = [], [], [], {}
    for number, path in enumerate(inputs, start=1):
        try:
            source = source_of(path)
            if source.name in names:
                raise CropError(f"{path}: its output name '{source.name}' is already used by {names[source.name]}")
            names[source.name] = path
            start = time.perf_counter()
            result = crop_source(detector, source, out, size=size, batch=batch, max_missed=max_missed,
                                 min_track=min_track, detect_every=detect_every, log=log)
        except (CropError, VideoError, OSError) as e:
            errors.append(path)
            log(f"error: {e}")
            continue
        results.append(result)
        seconds = time.perf_counter() - start
        if not result.folders:
            faceless.append(path)
            log(f"[{number}/{len(inputs)}] {path}: no face in {result.frames} frame(s)")
        else:
            log(f"[{number}/{len(inputs)}] {path}: {result.frames} frames, {result.frames_with_face} with a face, "
                f"{result.crops} crops -> {', '.join(result.folders)} ({seconds:.1f} s, "
                f"{result.frames / max(seconds, 1e-9):.1f} frames/s)")
    return {"results": results, "errors": errors, "faceless": faceless}


def report_unusable(summary: dict) -> int:
    """Prints which inputs of a run (`summary['faceless']`, `summary['errors']`) gave no face or could not be read;
    returns the command's exit code: 1 when an input could not be read, else 0."""
    if summary["faceless"]:
        print(f"no face in {len(summary['faceless'])} input(s): {', '.join(summary['faceless'])}")
    if summary["errors"]:
        print(f"{len(summary['errors'])} input(s) not read: {', '.join(summary['errors'])}")
    return 1 if summary["errors"] else 0
