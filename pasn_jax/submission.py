"""ABAW2 submission files from the per-frame predictions (pasn_jax/predictions.py), and their validator.

ABAW2's submission format: one folder per task, `AU/`, `EXPR/`, `VA/`, with one `<video>.txt` per video: the task's
header line (labels.HEADERS), then one line per frame of the video, frame 1 first: AU twelve 0/1 values, EXPR one
class index 0-6, VA `valence,arousal` in [-1, 1]. A frame without a prediction (no face cropped) takes the nearest
earlier predicted frame's; frames before the first predicted one take the first's.

    python -m pasn_jax.submission write --predictions P.csv --out DIR [--videos LIST.txt] [--videos-dir D]
        [--frame-counts F.csv] [--root TREE] [--tasks au,expr,va]
    python -m pasn_jax.submission check DIR [--frame-counts F.csv]

Frames per video: the video file (--videos-dir), else --frame-counts (`video,frames` lines), else the last
`cropped_aligned/<video>/NNNNN.jpg` of --root, else the last predicted frame; DIR/frame_counts.csv records each
count and its source (checkers ignore it).
"""

import argparse
import math
import os
import re
import shutil
import sys

import numpy as np

from pasn_jax import labels
from pasn_jax.predictions import read_predictions

FOLDERS = {"au": "AU", "expr": "EXPR", "va": "VA"}
VIDEO_EXTENSIONS = ("mp4", "avi", "mkv", "mov", "webm")
FRAME_COUNTS_FILE = "frame_counts.csv"
# Where a video's frame count came from (frame_counts.csv's source column) -> the tally's words (None: the file's name).
SOURCES = {"video_file": "video files", "frame_count_file": None, "last_cropped": "the last cropped frame",
           "last_predicted": "the last predicted frame"}
MAX_PROBLEMS_PER_FILE = 5
_CROPPED_NAME = re.compile(r"^(\d+)\.jpg$")


class SubmissionError(ValueError):
    """Bad input; the message names the file (and line) and what was expected."""


def read_frame_counts(path: str) -> dict[str, int]:
    """`video,frames` lines (an optional `video,frames` header; further columns, e.g. frame_counts.csv's source,
    ignored) -> {video: frames}."""
    if not os.path.isfile(path):
        raise SubmissionError(f"{path}: no such file")
    counts = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = [p.strip() for p in line.strip().split(",")]
            if parts == [""] or (lineno == 1 and parts[:2] == ["video", "frames"]):
                continue
            if len(parts) < 2 or not parts[0] or not parts[1].isdigit() or int(parts[1]) < 1:
                raise SubmissionError(f"{path}:{lineno}: expected 'video,frames' with frames a positive integer, "
                                      f"got '{line.strip()}'")
            counts[parts[0]] = int(parts[1])
    return counts


def video_file(videos_dir: str, video: str) -> str | None:
    """`<videos_dir>/<video>.<ext>`; an Aff-Wild2 two-person clip `<base>_left`/`_right` is `<base>.<ext>`."""
    names = [video] + [video[:-len(s)] for s in ("_left", "_right") if video.endswith(s)]
    for name in names:
        for ext in VIDEO_EXTENSIONS:
            path = os.path.join(videos_dir, f"{name}.{ext}")
            if os.path.isfile(path):
                return path
    return None


def count_frames(videos, last_predicted: dict[str, int], *, videos_dir: str | None = None,
                 frame_counts: dict[str, int] | None = None, root: str | None = None) -> dict[str, tuple[int, str]]:
    """{video: (frames, source)}, source a key of SOURCES: the first of the video file, `frame_counts`, the last
    cropped frame under `root`, the last predicted frame that gives a count."""
    from pasn_jax.faces.video import Video  # PyAV: only when videos are read

    counts = {}
    for video in videos:
        path = video_file(videos_dir, video) if videos_dir else None
        if path:
            with Video(path) as v:
                n = v.frame_count or sum(1 for _ in v)
            counts[video] = (n, "video_file")
        elif frame_counts and video in frame_counts:
            counts[video] = (frame_counts[video], "frame_count_file")
        elif root and (cropped := _last_cropped(os.path.join(root, "cropped_aligned", video))):
            counts[video] = (cropped, "last_cropped")
        else:
            counts[video] = (last_predicted[video], "last_predicted")
    return counts


def _last_cropped(folder: str) -> int:
    if not os.path.isdir(folder):
        return 0
    return max((int(m.group(1)) for m in map(_CROPPED_NAME.match, os.listdir(folder)) if m), default=0)


def fill(frames: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """values [n, ...] of frames [n] (1-based, unique) -> [count, ...] for frames 1..count: each frame takes the
    nearest earlier predicted frame's values, frames before the first predicted one the first's."""
    order = np.argsort(frames, kind="stable")
    frames, values = frames[order], values[order]
    earlier = np.searchsorted(frames, np.arange(1, count + 1), side="right") - 1
    return values[np.maximum(earlier, 0)]


def task_lines(task: str, values: np.ndarray) -> list[str]:
    """A task's frame lines: AU 0/1 at probability >= 0.5, EXPR the argmax, VA clipped to [-1, 1]."""
    if task == "au":
        return [",".join(map(str, row)) for row in (values >= 0.5).astype(int)]
    if task == "expr":
        return [str(i) for i in np.argmax(values, axis=1)]
    return [f"{v:.6f},{a:.6f}" for v, a in np.clip(values.astype(np.float64), -1.0, 1.0)]


def write_submission(predictions: dict, out: str, *, videos=None, tasks=labels.TASKS, videos_dir=None,
                     frame_counts: dict[str, int] | None = None, root=None) -> dict[str, tuple[int, str]]:
    """Writes the submission folder `out` whole or not at all (a temporary folder beside it, checked, renamed into
    place); returns {video: (frames, source)}."""
    if os.path.exists(out):
        raise SubmissionError(f"{out}: already exists; not overwriting it")
    video_of = np.asarray(predictions["video"]).astype(str)
    frame_of = np.asarray(predictions["frame"]).astype(np.int64)
    videos = list(dict.fromkeys(videos if videos is not None else video_of))
    rows = {v: np.flatnonzero(video_of == v) for v in videos}
    for video, idx in rows.items():
        if not len(idx):
            raise SubmissionError(f"video {video}: no predictions")
        frames = frame_of[idx]
        if frames.min() < 1 or len(np.unique(frames)) != len(frames):
            raise SubmissionError(f"video {video}: frame numbers must be unique and >= 1")
    counts = count_frames(videos, {v: int(frame_of[i].max()) for v, i in rows.items()}, videos_dir=videos_dir,
                          frame_counts=frame_counts, root=root)
    for video, (n, source) in counts.items():
        if (last := int(frame_of[rows[video]].max())) > n:
            raise SubmissionError(f"video {video}: predictions reach frame {last} but it has {n} frames "
                                  f"(from {SOURCES[source] or 'the frame-count file'})")
    parent, name = os.path.split(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for task in tasks:
            os.makedirs(os.path.join(tmp, FOLDERS[task]))
            key = {"au": "au_prob", "expr": "expr_prob", "va": "va_pred"}[task]
            for video, idx in rows.items():
                values = fill(frame_of[idx], np.asarray(predictions[key])[idx], counts[video][0])
                with open(os.path.join(tmp, FOLDERS[task], f"{video}.txt"), "w") as f:
                    f.write("\n".join([labels.HEADERS[task]] + task_lines(task, values)) + "\n")
        with open(os.path.join(tmp, FRAME_COUNTS_FILE), "w") as f:
            f.write("video,frames,source\n" + "".join(f"{v},{n},{s}\n" for v, (n, s) in counts.items()))
        problems = check(tmp, {v: n for v, (n, _) in counts.items()})
        if problems:
            raise SubmissionError("the written submission failed its check:\n" + "\n".join(problems))
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _task_files(folder: str) -> dict[str, dict[str, str]]:
    """{task: {video: path}} for the task folders present."""
    found = {}
    for task, sub in FOLDERS.items():
        if os.path.isdir(path := os.path.join(folder, sub)):
            found[task] = {n[:-4]: os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".txt")}
    return found


_EXPECTED = {"au": f"{labels.NUM_AUS} comma-separated values each 0 or 1",
             "expr": f"one integer 0-{labels.NUM_EXPRS - 1}", "va": "two comma-separated finite floats in [-1, 1]"}


def _line_ok(task: str, line: str) -> bool:
    parts = line.split(",")
    try:
        if task == "au":
            return len(parts) == labels.NUM_AUS and all(int(p) in (0, 1) for p in parts)
        if task == "expr":
            return len(parts) == 1 and 0 <= int(parts[0]) < labels.NUM_EXPRS
        return len(parts) == 2 and all(math.isfinite(float(p)) and -1 <= float(p) <= 1 for p in parts)
    except ValueError:
        return False


def check(folder: str, frame_counts: dict[str, int] | None = None) -> list[str]:
    """Problems of an ABAW2 submission folder, one line each naming the file and line (empty: valid). Line counts
    are checked where `frame_counts` (or else the folder's frame_counts.csv) knows the video."""
    files = _task_files(folder)
    if not files:
        return [f"{folder}: expected at least one of the folders {', '.join(FOLDERS.values())}, found none"]
    problems, known = [], {}
    if os.path.isfile(path := os.path.join(folder, FRAME_COUNTS_FILE)):
        try:
            known = read_frame_counts(path)
        except SubmissionError as e:
            problems.append(str(e))
    known.update(frame_counts or {})
    videos = sorted(set().union(*(v.keys() for v in files.values())))
    for task, by_video in files.items():
        for video in videos:
            if video not in by_video:
                problems.append(f"{os.path.join(folder, FOLDERS[task], video + '.txt')}: missing (the video is "
                                f"in {', '.join(FOLDERS[t] for t in files if video in files[t])})")
                continue
            problems += _file_problems(task, by_video[video], known.get(video))
    return problems


def _file_problems(task: str, path: str, frames: int | None) -> list[str]:
    with open(path) as f:
        lines = f.read().splitlines()
    found = []
    if not lines or lines[0] != labels.HEADERS[task]:
        found.append(f"{path}:1: expected the header '{labels.HEADERS[task]}', found '{lines[0] if lines else ''}'")
    n = len(lines) - 1
    if frames is not None and n != frames:
        found.append(f"{path}:{min(n, frames) + 2}: expected {frames} frame lines after the header, found {n}")
    elif frames is None and n < 1:
        found.append(f"{path}:2: expected at least one frame line, found none")
    for lineno, line in enumerate(lines[1:], 2):
        if not _line_ok(task, line):
            found.append(f"{path}:{lineno}: expected {_EXPECTED[task]}, found '{line}'")
    if len(found) > MAX_PROBLEMS_PER_FILE:
        found = found[:MAX_PROBLEMS_PER_FILE] + [f"{path}: {len(found) - MAX_PROBLEMS_PER_FILE} more problems"]
    return found


def _read_video_list(path: str, available) -> list[str]:
    if not os.path.isfile(path):
        raise SubmissionError(f"{path}: no such file")
    videos = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if (video := line.strip()) and video not in available:
                raise SubmissionError(f"{path}:{lineno}: expected a video of the predictions, got '{video}' "
                                      "(no predictions for it)")
            if video:
                videos.append(video)
    return videos


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pasn_jax.submission", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="predictions.csv -> an ABAW2 submission folder")
    write.add_argument("--predictions", required=True, help="per-frame predictions.csv (pasn_jax/predictions.py)")
    write.add_argument("--out", required=True, help="submission folder to create (must not exist)")
    write.add_argument("--videos", help="file with one video name per line (default: every predicted video)")
    write.add_argument("--videos-dir", help="folder of the videos, to count their frames")
    write.add_argument("--frame-counts", help="CSV of 'video,frames' lines")
    write.add_argument("--root", help="Aff-Wild2 tree: the last cropped_aligned frame counts a video's frames")
    write.add_argument("--tasks", default=",".join(labels.TASKS), help="comma-separated subset of au,expr,va")
    chk = commands.add_parser("check", help="validate an ABAW2 submission folder")
    chk.add_argument("folder")
    chk.add_argument("--frame-counts", help="CSV of 'video,frames' lines")
    args = parser.parse_args(argv)
    try:
        counts = read_frame_counts(args.frame_counts) if args.frame_counts else None
        if args.command == "check":
            return _check_command(args.folder, counts)
        tasks = args.tasks.split(",")
        if not tasks or any(t not in FOLDERS for t in tasks):
            raise SubmissionError(f"--tasks: expected a comma-separated subset of au,expr,va, got '{args.tasks}'")
        if not os.path.isfile(args.predictions):
            raise SubmissionError(f"{args.predictions}: no such file")
        try:
            predictions = read_predictions(args.predictions)
        except (ValueError, KeyError, IndexError) as e:
            raise SubmissionError(str(e) if args.predictions in str(e) else f"{args.predictions}: {e}") from None
        videos = _read_video_list(args.videos, set(predictions["video"])) if args.videos else None
        written = write_submission(predictions, args.out, videos=videos, tasks=tasks, videos_dir=args.videos_dir,
                                   frame_counts=counts, root=args.root)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    tally = {s: sum(source == s for _, source in written.values()) for s in SOURCES}
    names = {**SOURCES, "frame_count_file": os.path.basename(args.frame_counts or "")}
    print("frame counts: " + ", ".join(f"{n} from {names[s]}" for s, n in tally.items() if n))
    print(f"wrote {args.out}: {len(written)} videos x {', '.join(FOLDERS[t] for t in tasks)}, "
          f"{sum(n for n, _ in written.values())} frame lines per task ({FRAME_COUNTS_FILE}: counts and sources)")
    return 0


def _check_command(folder: str, counts) -> int:
    if not os.path.isdir(folder):
        raise SubmissionError(f"{folder}: no such folder")
    problems = check(folder, counts)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    files = _task_files(folder)
    videos = set().union(*(v.keys() for v in files.values()))
    print(f"ok: {folder} ({len(videos)} videos, tasks {', '.join(FOLDERS[t] for t in files)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
