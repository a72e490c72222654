"""Synthetic expression-similarity triplets for stage 2 of the prior (paper §3.2: DLN is trained on FEC triplets),
written in the FEC dataset's layout so that its reader (pasn_jax/data/fec.py) is the path always exercised: CSV
files without header (per face: URL and the face box normalised by the image size; the triplet type; six
annotators' answers, 1-based, naming the face most different from the other two) and the images in a folder, each
named as its URL's last path component.

The three faces of a triplet are different people (so that identity cannot solve it) whose expressions are known:
the odd one out is the face whose AU intensities lie furthest from the two others' (the pair with the smallest
Euclidean distance between their 12 intensities is the similar pair), kept only where that pair is clearly the
closest (CLEAR_RATIO, strictly: three equal faces, e.g. three neutral ones, are drawn again). Each triplet type
(one, two or three expression classes) is a third of the triplets, as in FEC; simulated annotators answer correctly
with ANNOTATOR_ACCURACY (a tie of answers drops the triplet in the reader, as in FEC). LABELS_FILE keeps each face's
expression class and AU intensities beside them, for references that score the renderer's own labels as embeddings
(benchmarks/triplet_reference.py).
"""

import csv
import json
import os
import time

import numpy as np

from pasn_jax import labels
from pasn_jax.data import fec
from pasn_jax.data.synthetic import workers
from pasn_jax.data.synthetic.face import sample_identity
from pasn_jax.data.synthetic.frames import photograph
from pasn_jax.data.synthetic.plan import SyntheticError, sample_expression
from pasn_jax.data.synthetic.tree import new_folder

TRIPLETS_VERSION = 2  # in the cache's name; 2: a tie for the closest pair is redrawn (1 kept it, odd face arbitrary)
MARKER_FILE = "synthetic_fec.json"
LABELS_FILE = "synthetic_labels.npz"  # per face (its image's name): expression class and AU intensities [12]
IMAGES_DIR = "images"
CSV_FILES = {"train": "faceexp-comparison-data-train-public.csv", "test": "faceexp-comparison-data-test-public.csv"}
URL_PREFIX = "https://synthetic.invalid/fec/"
TYPE_NAMES = {1: "ONE_CLASS_TRIPLET", 2: "TWO_CLASS_TRIPLET", 3: "THREE_CLASS_TRIPLET"}
ANNOTATORS = 6
ANNOTATOR_ACCURACY = 0.9
CLEAR_RATIO = 0.7  # the similar pair's AU distance is at most this times the next closest pair's
BOX_MARGIN = (0.03, 0.06)  # the face box leaves this much (fraction of the image) at each side
_STREAM = 8  # SeedSequence stream of this dataset (the Aff-Wild2 tree uses 0 and 1, identities 7)


def person_faces(seed: int, person: int, count: int, size: int) -> list[tuple[bytes, int, np.ndarray]]:
    """`count` photographs of synthetic person `person` with their expression class and AU intensities [12]."""
    rng = np.random.default_rng([seed, _STREAM, person])
    identity = sample_identity(rng)
    faces = []
    for _ in range(count):
        expr, intensity, _ = sample_expression(rng)
        faces.append((photograph(identity, intensity, size, rng), expr, intensity))
    return faces


def odd_one_out(intensity: np.ndarray) -> int | None:
    """Index of the face whose AU intensities [3, 12] are furthest from the two others' (the one outside the
    closest pair), or None when that pair is not clearly the closest."""
    distance = {2: np.linalg.norm(intensity[0] - intensity[1]), 1: np.linalg.norm(intensity[0] - intensity[2]),
                0: np.linalg.norm(intensity[1] - intensity[2])}  # odd face -> distance of the other two
    ranked = sorted(distance, key=distance.get)
    return ranked[0] if distance[ranked[0]] < CLEAR_RATIO * distance[ranked[1]] else None


def sample_triplets(rng: np.random.Generator, faces: list[tuple[int, int, np.ndarray]], count: int) -> list:
    """`count` triplets [(face indices [3], triplet type, odd index)] from faces [(person, expr, intensity)], the
    types in turn (a third each): the type's classes drawn, then one face of a different person per class slot,
    redrawn until the odd one out is clear."""
    by_class = {e: [i for i, f in enumerate(faces) if f[1] == e] for e in range(labels.NUM_EXPRS)}
    usable = [e for e, members in by_class.items() if len(members) >= 3]
    if len(usable) < 3:
        raise SyntheticError(f"too few faces per expression class to draw triplets ({len(faces)} faces)")
    triplets = []
    while len(triplets) < count:
        kind = len(triplets) % 3 + 1
        classes = rng.choice(usable, kind, replace=False)
        slots = [classes[0]] * (4 - kind) + list(classes[1:])
        chosen = [int(rng.choice(by_class[e])) for e in rng.permutation(slots)]
        if len({faces[i][0] for i in chosen}) < 3:
            continue  # three different people
        odd = odd_one_out(np.stack([faces[i][2] for i in chosen]))
        if odd is not None:
            triplets.append((chosen, kind, odd))
    return triplets


def _rows(rng: np.random.Generator, triplets: list, names: list[str]) -> list[list]:
    rows = []
    for chosen, kind, odd in triplets:
        row = []
        for i in chosen:
            left, top = rng.uniform(*BOX_MARGIN, 2)
            right, bottom = 1 - rng.uniform(*BOX_MARGIN, 2)
            row += [URL_PREFIX + names[i], f"{left:.4f}", f"{right:.4f}", f"{top:.4f}", f"{bottom:.4f}"]
        row.append(TYPE_NAMES[kind])
        for _ in range(ANNOTATORS):
            wrong = [k for k in range(3) if k != odd]
            answer = odd if rng.random() < ANNOTATOR_ACCURACY else wrong[int(rng.integers(2))]
            row += [str(int(rng.integers(10**8, 10**9))), str(answer + 1)]
        rows.append(row)
    return rows


def generate(out: str, *, people: int, images: int, test_people: int, train_triplets: int, test_triplets: int,
             size: int, seed: int, processes: int | None = None) -> dict:
    """Renders `people` (train) and `test_people` (test: other people) x `images` faces and writes FEC's layout into
    `out` (a temporary folder renamed at the end): the two CSV files and `images/`. Returns the marker."""
    if min(people, test_people) < 3 or images < 1 or min(train_triplets, test_triplets) < 1:
        raise SyntheticError(f"need >= 3 people per split, >= 1 image each and >= 1 triplet per split, got {people}, "
                             f"{test_people}, {images}, {train_triplets}, {test_triplets}")
    start = time.perf_counter()
    with new_folder(out) as tmp:
        os.makedirs(os.path.join(tmp, IMAGES_DIR))
        splits = {"train": (range(people), train_triplets), "test": (range(people, people + test_people),
                                                                      test_triplets)}
        counts, per_face = {}, {"name": [], "expr": [], "intensity": []}
        for split, (persons, count) in splits.items():
            rendered = workers.map_ordered(person_faces, [(seed, p, images, size) for p in persons],
                                           len(persons) * images, processes)
            faces, names = [], []
            for person, photos in zip(persons, rendered):
                for k, (jpeg, expr, intensity) in enumerate(photos):
                    names.append(f"{person:05d}_{k:02d}.jpg")
                    faces.append((person, expr, intensity))
                    for key, value in zip(per_face, (names[-1], expr, intensity)):
                        per_face[key].append(value)
                    with open(os.path.join(tmp, IMAGES_DIR, names[-1]), "wb") as f:
                        f.write(jpeg)
            rng = np.random.default_rng([seed, _STREAM + 100, len(counts)])
            triplets = sample_triplets(rng, faces, count)
            with open(os.path.join(tmp, CSV_FILES[split]), "w", newline="") as f:
                csv.writer(f).writerows(_rows(rng, triplets, names))
            counts[split] = {"people": len(persons), "faces": len(faces), "triplets": len(triplets),
                             "types": {TYPE_NAMES[k]: sum(t[1] == k for t in triplets) for k in TYPE_NAMES}}
        np.savez(os.path.join(tmp, LABELS_FILE), **{k: np.asarray(v) for k, v in per_face.items()})
        marker = {"generator": "pasn_jax.data.synthetic.triplets", "seed": seed, "size": size, **counts,
                  "seconds": round(time.perf_counter() - start, 3)}
        with open(os.path.join(tmp, MARKER_FILE), "w") as f:
            json.dump(marker, f, indent=1)
    return marker


def face_labels(root: str, split: str) -> dict[str, np.ndarray]:
    """The renderer's labels of a generated split's triplets, kept and ordered as fec.convert writes them (the
    annotators' majority decides the odd one out, a tie drops the triplet): per triplet, the similar pair first and
    the odd face last, AU intensities 'intensity' [N, 3, 12], expression classes 'expr' [N, 3] and 'triplet_type'
    [N]."""
    path = os.path.join(root, LABELS_FILE)
    if not os.path.isfile(path):
        raise SyntheticError(f"{path}: missing; expected the face labels of a synthetic FEC folder ({MARKER_FILE})")
    with np.load(path) as f:
        index = {str(name): i for i, name in enumerate(f["name"])}
        expr, intensity = f["expr"], f["intensity"]
    rows, kinds = [], []
    for t in fec.parse_csv(os.path.join(root, CSV_FILES[split])):
        odd = t.odd_one_out()
        if odd is not None:
            faces = [index[fec.file_name(t.faces[k].url)] for k in range(3) if k != odd]
            rows.append(faces + [index[fec.file_name(t.faces[odd].url)]])
            kinds.append(t.triplet_type)
    rows = np.asarray(rows, np.int64).reshape(-1, 3)
    return {"intensity": intensity[rows], "expr": expr[rows], "triplet_type": np.asarray(kinds, np.int64)}
