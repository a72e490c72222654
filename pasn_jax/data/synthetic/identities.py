"""Synthetic face-identity data for stage 1 of the prior (paper §3.2: f_id is a face-recognition network): many
people, each photographed many times under a random expression, pose, light and background, written as an
insightface training set (`train.rec`, `train.idx`, `property`) and, for people never seen in training, a
verification set in LFW's pair format (`verify.bin`), so the real readers (pasn_jax/data/insightface.py,
verification_bin.py) are the path always exercised.

    (rendered and converted on first use by configs/face_id.py:demo; see prepare.py)
"""

import json
import os
import time

import numpy as np

from pasn_jax.data import insightface, verification_bin
from pasn_jax.data.synthetic import workers
from pasn_jax.data.synthetic.face import sample_identity
from pasn_jax.data.synthetic.frames import photograph
from pasn_jax.data.synthetic.plan import SyntheticError, sample_expression
from pasn_jax.data.synthetic.tree import new_folder

MARKER_FILE = "synthetic_identities.json"
VERIFY_FILE = "verify.bin"
_STREAM = 7  # SeedSequence stream of this dataset (the Aff-Wild2 tree uses 0 and 1, the triplets 8)


def person_photographs(seed: int, person: int, count: int, size: int) -> list[bytes]:
    """`count` photographs of synthetic person `person` (their own identity stream), each with a random expression."""
    rng = np.random.default_rng([seed, _STREAM, person])
    identity = sample_identity(rng)
    return [photograph(identity, sample_expression(rng)[1], size, rng) for _ in range(count)]


def verification_pairs(rng: np.random.Generator, people: int, images: int, pairs: int) -> tuple[list, list]:
    """Pairs of (person, image) for a verification set: alternately the same person (two different images) and two
    different people, as LFW's protocol holds both kinds equally. Returns (pairs [(a, b)], issame [bool])."""
    result, issame = [], []
    for k in range(pairs):
        if k % 2 == 0:
            person = int(rng.integers(people))
            i, j = rng.choice(images, 2, replace=False)
            result.append(((person, int(i)), (person, int(j))))
        else:
            a, b = rng.choice(people, 2, replace=False)
            result.append(((int(a), int(rng.integers(images))), (int(b), int(rng.integers(images)))))
        issame.append(k % 2 == 0)
    return result, issame


def generate(out: str, *, identities: int, images: int, held_out: int, pairs: int, size: int, seed: int,
             processes: int | None = None) -> dict:
    """Renders `identities` people x `images` photographs as an insightface training set in `out`, and `pairs`
    verification pairs over `held_out` other people as `out/verify.bin`; written in a temporary folder renamed to
    `out` at the end. Returns the marker (also written as `out/synthetic_identities.json`)."""
    if identities < 2 or images < 2 or held_out < 2 or pairs < 2:
        raise SyntheticError(f"identities, images, held-out people and pairs must each be >= 2, got {identities}, "
                             f"{images}, {held_out}, {pairs}")
    start = time.perf_counter()
    with new_folder(out) as tmp:
        every = [(seed, p, images, size) for p in range(identities + held_out)]  # held-out people last
        people = workers.map_ordered(person_photographs, every, len(every) * images, processes)
        counts = insightface.write_identity_set(tmp, people[:identities], image_size=size)
        pair_list, issame = verification_pairs(np.random.default_rng([seed, _STREAM + 100]), held_out, images, pairs)
        unseen = people[identities:]
        verification_bin.write_bin(os.path.join(tmp, VERIFY_FILE),
                                   [unseen[p][i] for pair in pair_list for p, i in pair], issame)
        marker = {"generator": "pasn_jax.data.synthetic.identities", "seed": seed, "identities": identities,
                  "images_per_identity": images, "held_out": held_out, "pairs": pairs, "size": size, **counts,
                  "seconds": round(time.perf_counter() - start, 3)}
        with open(os.path.join(tmp, MARKER_FILE), "w") as f:
            json.dump(marker, f, indent=1)
    return marker
