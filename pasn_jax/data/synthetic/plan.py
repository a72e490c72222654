"""What each synthetic video shows and how it is labelled: splits, task sets, expression segments driving the AUs
through prototypes, valence/arousal on the circumplex, and Aff-Wild2's label gaps (videos missing from task sets,
sentinel runs, label lines without images, images without label lines, two-person videos). Deterministic for a
seed; nothing is drawn here (face.py draws, tree.py writes)."""

import dataclasses

import numpy as np

from pasn_jax import labels

# ---- Splits and missing labels (Aff-Wild2's gaps) ----
VAL_FRACTION = 0.25  # share of videos in Validation_Set; every video is a new person, so splits are disjoint
# Test videos (people in neither train nor val, labelled in Test_Set) come after them: their number does not change
# what train and val hold.
TWO_PERSON_PROB = 0.15  # chance that a video slot is a two-person clip, written as <name>_left/<name>_right
TASK_SET_COUNT_PROBS = (0.15, 0.25, 0.60)  # chance that a video is in 1, 2 or all 3 task sets
SENTINEL_RUN_PROB = 0.3  # per (video, task set): chance of one run of unannotated lines (-1 / -5)
SENTINEL_RUN_FRAMES = (3, 12)  # its length range (capped at a third of the video)
FACELESS_RUN_PROB = 0.4  # per video: chance of one run of frames with a label line but no image
FACELESS_RUN_FRAMES = (1, 4)
EXTRA_IMAGES_PROB = 0.15  # per video: chance of 1-3 trailing images with no label line

# ---- Expressions, AUs, valence/arousal ----
EXPR_PROBS = (0.22, 0.13, 0.13, 0.13, 0.13, 0.13, 0.13)  # per segment, labels.EXPR_NAMES order
PROTOTYPES = {  # expression -> AUs it activates
    "Neutral": (),
    "Anger": ("AU4", "AU7", "AU23", "AU24"),
    "Disgust": ("AU10", "AU15"),
    "Fear": ("AU1", "AU2", "AU4", "AU7", "AU25"),
    "Happiness": ("AU6", "AU12"),
    "Sadness": ("AU1", "AU4", "AU15"),
    "Surprise": ("AU1", "AU2", "AU25", "AU26"),
}
CIRCUMPLEX = {  # expression -> (valence, arousal) at full intensity
    "Neutral": (0.0, 0.0),
    "Anger": (-0.7, 0.65),
    "Disgust": (-0.7, 0.3),
    "Fear": (-0.5, 0.85),
    "Happiness": (0.8, 0.45),
    "Sadness": (-0.65, -0.5),
    "Surprise": (0.3, 0.85),
}
SEGMENT_FRAMES = (8, 24)  # frames per expression segment
TRANSITION_FRAMES = 3  # AU intensities and VA blend linearly into a new segment over this many frames
SEGMENT_INTENSITY = (0.4, 1.0)  # a segment's expression intensity: scales its AUs and its VA point
AU_INTENSITY_SPREAD = 0.15  # a prototype AU's intensity = segment intensity +- this, kept in AU_INTENSITY
AU_INTENSITY = (0.4, 1.0)  # range of an active AU's intensity (clearly visible)
AU_DROP_PROB = 0.1  # each prototype AU is left out with this chance
AU_EXTRA_PROB = 0.2  # a segment gets one extra random AU with this chance
INACTIVE_JITTER = 0.08  # drawn intensity = label-defining intensity + U[0, this] (sub-threshold)
AU_LABEL_THRESHOLD = 0.25  # an AU is labelled 1 when its (pre-jitter) intensity reaches this
VA_NOISE = 0.06  # sigma of the per-frame Gaussian noise on valence and arousal

_AU = {name: i for i, name in enumerate(labels.AU_NAMES)}


class SyntheticError(ValueError):
    """Bad arguments or output folder for the generator; the message names them."""


@dataclasses.dataclass
class VideoPlan:
    """Everything drawn and written for one video."""
    name: str
    split: str  # 'train', 'val' or 'test'
    seed: tuple  # SeedSequence entropy for the video's identity, nuisances and expressions
    tasks: tuple[str, ...]  # task sets the video appears in
    num_frames: int  # label lines per task set
    au: np.ndarray  # [F, 12] int 0/1
    expr: np.ndarray  # [F] int
    va: np.ndarray  # [F, 2] float, rounded as written
    intensity: np.ndarray  # [F, 12] drawn AU intensities
    unannotated: dict  # task -> [F] bool: line written as sentinel
    faceless: np.ndarray  # [F] bool: label line but no image
    extra_images: int  # trailing images with no label line
    background_from: str | None = None  # a two-person clip's right half shares the left half's scene


def sample_expression(rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    """One expression as a face shows it: its class (EXPR_PROBS), the AU intensities its prototype drives at a random
    strength (some prototype AUs left out, sometimes one extra AU) [12], and its valence/arousal point [2]."""
    e = int(rng.choice(labels.NUM_EXPRS, p=EXPR_PROBS))
    name = labels.EXPR_NAMES[e]
    strength = rng.uniform(*SEGMENT_INTENSITY)
    target = np.zeros(labels.NUM_AUS)
    for au in PROTOTYPES[name]:
        if rng.random() >= AU_DROP_PROB:
            spread = rng.uniform(-AU_INTENSITY_SPREAD, AU_INTENSITY_SPREAD)
            target[_AU[au]] = np.clip(strength + spread, *AU_INTENSITY)
    if rng.random() < AU_EXTRA_PROB:
        off = np.flatnonzero(target == 0)
        if len(off):
            target[rng.choice(off)] = rng.uniform(*AU_INTENSITY)
    return e, target, np.asarray(CIRCUMPLEX[name]) * strength


def _expressions(rng: np.random.Generator, num_frames: int):
    """Per frame: pre-jitter AU intensities [F,12], expression [F], valence/arousal [F,2] (noise-free)."""
    intensity = np.zeros((num_frames, labels.NUM_AUS))
    expr = np.zeros(num_frames, np.int64)
    va = np.zeros((num_frames, 2))
    prev_au, prev_va, start = None, None, 0
    while start < num_frames:
        length = int(rng.integers(SEGMENT_FRAMES[0], SEGMENT_FRAMES[1] + 1))
        e, target, va_target = sample_expression(rng)
        stop = min(num_frames, start + length)
        for t in range(start, stop):
            blend = 1.0 if prev_au is None else min(1.0, (t - start + 1) / TRANSITION_FRAMES)
            intensity[t] = target if prev_au is None else (1 - blend) * prev_au + blend * target
            va[t] = va_target if prev_va is None else (1 - blend) * prev_va + blend * va_target
            expr[t] = e
        prev_au, prev_va, start = target, va_target, stop
    return intensity, expr, va


def _run(rng: np.random.Generator, num_frames: int, length_range) -> np.ndarray:
    """[F] bool with one run of random length inside the video (not touching its first and last frame)."""
    mask = np.zeros(num_frames, bool)
    length = min(int(rng.integers(length_range[0], length_range[1] + 1)), max(1, num_frames // 3))
    if num_frames >= length + 2:
        start = int(rng.integers(1, num_frames - length))
        mask[start:start + length] = True
    return mask


def plan_videos(videos: int, frames: int, seed: int, test_videos: int = 0, expr_keep: float = 1.0) -> list[VideoPlan]:
    """Names, splits, task sets, labels and gaps of every video (`videos` over train and val, then `test_videos`
    more); deterministic for a seed. `expr_keep` < 1 keeps that share of the training videos in the EXPR set and
    takes the others out of it (a set whose EXPR labels are scarce: the pseudo-label experiments, paper §3.4);
    nothing else changes.

    Guarantees, where a split has at least two videos, one video outside some task set, one sentinel run, one
    image-less run and one image without a label line in it, and a two-person clip where it has four or more
    videos, so every Aff-Wild2 gap occurs even in tiny trees.
    """
    if videos < 2 or frames < 8 or test_videos < 0:
        raise SyntheticError(f"--videos must be >= 2, --frames >= 8 and --test-videos >= 0, got {videos}, {frames} "
                             f"and {test_videos}")
    rng = np.random.default_rng([seed, 0])
    num_val = max(1, round(videos * VAL_FRACTION))
    plans: list[VideoPlan] = []
    for split, count in (("train", videos - num_val), ("val", num_val), ("test", test_videos)):
        if not count:
            continue
        names = []
        while len(names) < count:
            base = f"{len(plans) + len(names) + 1}-30-{rng.choice(['640x360', '1280x720', '1920x1080'])}"
            left = count - len(names)
            no_pair_yet = not any(background_from for _, background_from in names)
            if left >= 2 and (rng.random() < TWO_PERSON_PROB or (count >= 4 and left == 2 and no_pair_yet)):
                names += [(base + "_left", None), (base + "_right", base + "_left")]
            else:
                names.append((base, None))
        split_plans = []
        for name, background_from in names:
            video_rng = np.random.default_rng([seed, 1, len(plans) + len(split_plans)])
            num_sets = int(rng.choice(3, p=TASK_SET_COUNT_PROBS)) + 1
            tasks = tuple(sorted(str(t) for t in rng.choice(list(labels.TASKS), num_sets, replace=False)))
            intensity, expr, va = _expressions(video_rng, frames)
            au = (intensity >= AU_LABEL_THRESHOLD).astype(np.int64)
            drawn = np.clip(intensity + video_rng.uniform(0, INACTIVE_JITTER, intensity.shape), 0, 1)
            va = np.round(np.clip(va + video_rng.normal(0, VA_NOISE, va.shape), -1, 1), 4)
            unannotated = {t: _run(rng, frames, SENTINEL_RUN_FRAMES) if rng.random() < SENTINEL_RUN_PROB
                           else np.zeros(frames, bool) for t in tasks}
            faceless = (_run(rng, frames, FACELESS_RUN_FRAMES) if rng.random() < FACELESS_RUN_PROB
                        else np.zeros(frames, bool))
            extra = int(rng.integers(1, 4)) if rng.random() < EXTRA_IMAGES_PROB else 0
            split_plans.append(VideoPlan(name, split, (seed, 1, len(plans) + len(split_plans)), tasks, frames, au, expr,
                                         va, drawn, unannotated, faceless, extra, background_from))
        _ensure_gaps(rng, split_plans, frames)
        plans += split_plans
    if expr_keep < 1:
        _hide_expr(np.random.default_rng([seed, 3]), [p for p in plans if p.split == "train"], expr_keep)
    return plans


def _hide_expr(rng: np.random.Generator, plans: list[VideoPlan], keep: float) -> None:
    """Takes all but `keep` of the videos in the EXPR set (at least one stays) out of it."""
    if not 0 < keep <= 1:
        raise SyntheticError(f"expr_keep must lie in (0, 1], got {keep}")
    holders = [p for p in plans if "expr" in p.tasks]
    kept = max(1, round(keep * len(holders)))
    for i in rng.permutation(len(holders))[kept:]:
        p = holders[int(i)]
        p.tasks = tuple(t for t in p.tasks if t != "expr")
        del p.unannotated["expr"]


def _ensure_gaps(rng: np.random.Generator, plans: list[VideoPlan], frames: int) -> None:
    """Makes every kind of label gap, and every task set, occur in a split (see plan_videos)."""
    for task in labels.TASKS:  # every task set holds at least one video of the split
        if not any(task in p.tasks for p in plans):
            p = plans[int(rng.integers(len(plans)))]
            p.tasks = tuple(sorted(p.tasks + (task,)))
            p.unannotated[task] = np.zeros(frames, bool)
    if len(plans) < 2:
        return
    if all(len(p.tasks) == len(labels.TASKS) for p in plans):  # the others keep every task set covered
        p = plans[-1]
        dropped = p.tasks[int(rng.integers(len(p.tasks)))]
        p.tasks = tuple(t for t in p.tasks if t != dropped)
        del p.unannotated[dropped]
    if not any(m.any() for p in plans for m in p.unannotated.values()):
        p = plans[0]
        p.unannotated[p.tasks[0]] = _run(rng, frames, SENTINEL_RUN_FRAMES)
    if not any(p.faceless.any() for p in plans):
        plans[0].faceless = _run(rng, frames, FACELESS_RUN_FRAMES)
    if not any(p.extra_images for p in plans):
        plans[-1].extra_images = 1


