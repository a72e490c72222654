"""Synthetic Aff-Wild2: deterministic layout, label statistics as designed, and AU motions that move
the face parts FACS names."""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from pasn_jax import labels
from pasn_jax.data import affwild2
from pasn_jax.data.synthetic import face, plan, tree


def _digest(root: str) -> dict:
    result = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name != tree.MARKER_FILE:  # the marker records the seconds it took
                with open(os.path.join(folder, name), "rb") as f:
                    result[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha1(f.read()).hexdigest()
    return result


def test_deterministic_for_a_seed(tmp_path):
    kwargs = dict(videos=4, frames=8, size=32)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        tree.generate(str(tmp_path / name), seed=seed, **kwargs)
    a, b, c = (_digest(str(tmp_path / n)) for n in "abc")
    assert a == b
    assert a != c
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_layout_headers_and_images(synthetic_tree):
    with open(os.path.join(synthetic_tree, tree.MARKER_FILE)) as f:
        marker = json.load(f)
    assert set(marker["splits"]) == {"train", "val", "test"}
    names = [set(videos) for videos in marker["splits"].values()]
    assert sum(len(n) for n in names) == len(set().union(*names)), "a video in two splits"
    with open(os.path.join(synthetic_tree, tree.TEST_LIST_FILE)) as f:
        assert f.read().split() == marker["splits"]["test"]
    for split, videos in marker["splits"].items():
        split_set = affwild2.SPLIT_SETS[split]
        for video in videos:
            for task in marker["task_sets"][video]:
                path = os.path.join(synthetic_tree, "annotations", affwild2.TASK_SETS[task], split_set, video + ".txt")
                with open(path) as f:
                    lines = f.read().splitlines()
                assert lines[0] == labels.HEADERS[task]
                assert len(lines) == 1 + marker["frames"]
            for task in set(affwild2.TASK_SETS) - set(marker["task_sets"][video]):
                assert not os.path.exists(
                    os.path.join(synthetic_tree, "annotations", affwild2.TASK_SETS[task], split_set, video + ".txt"))
    video = marker["splits"]["val"][0]
    with open(os.path.join(synthetic_tree, "cropped_aligned", video, sorted(
        os.listdir(os.path.join(synthetic_tree, "cropped_aligned", video)))[0]), "rb") as f:
        assert simplejpeg.decode_jpeg(f.read()).shape == (marker["size"], marker["size"], 3)


@pytest.fixture(scope="module")
def demo_plans():
    """Labels at the demo's scale (no rendering)."""
    return plan.plan_videos(videos=64, frames=150, seed=0, test_videos=16)


def test_label_statistics_at_demo_scale(demo_plans):
    au = np.concatenate([p.au for p in demo_plans])  # [F, 12]
    expr = np.concatenate([p.expr for p in demo_plans])
    rates = au.mean(0)
    assert (0.08 <= rates).all() and (rates <= 0.55).all(), dict(zip(labels.AU_NAMES, rates.round(3)))
    share = np.bincount(expr, minlength=7) / len(expr)
    assert share.min() >= 0.05 and share.argmax() == 0, share.round(3)
    for e, name in enumerate(labels.EXPR_NAMES):  # prototype AUs mostly on, the others mostly off
        rows = au[expr == e]
        proto = [labels.AU_NAMES.index(a) for a in plan.PROTOTYPES[name]]
        other = [i for i in range(12) if i not in proto]
        if proto:
            assert rows[:, proto].mean() >= 0.75, name
        assert rows[:, other].mean() <= 0.1, name


def test_valence_arousal_follow_the_circumplex_and_intensity(demo_plans):
    va = np.concatenate([p.va for p in demo_plans])
    expr = np.concatenate([p.expr for p in demo_plans])
    intensity = np.concatenate([p.intensity for p in demo_plans])
    assert np.abs(va).max() <= 1
    for e, name in enumerate(labels.EXPR_NAMES):
        mean = va[expr == e].mean(0)
        target = np.array(plan.CIRCUMPLEX[name]) * np.mean(plan.SEGMENT_INTENSITY)
        np.testing.assert_allclose(mean, target, atol=0.12, err_msg=name)
    # arousal varies within a class with the drawn intensity (diluted by the AUs' own spread and by transitions)
    happy = expr == labels.EXPR_NAMES.index("Happiness")
    strength = intensity[happy][:, [labels.AU_NAMES.index("AU6"), labels.AU_NAMES.index("AU12")]].mean(1)
    assert np.corrcoef(strength, va[happy, 1])[0, 1] > 0.3
    neutral = va[expr == 0]
    assert 0.6 * plan.VA_NOISE < neutral.std(0).min() and neutral.std(0).max() < 2 * plan.VA_NOISE


def test_identities_are_disjoint_and_every_gap_occurs(demo_plans):
    identities = [tree.video_identity(p) for p in demo_plans]
    assert len({dataclasses.astuple(i) for i in identities}) == len(identities)
    for split in affwild2.SPLIT_SETS:
        plans = [p for p in demo_plans if p.split == split]
        assert any(len(p.tasks) < 3 for p in plans)
        assert any(m.any() for p in plans for m in p.unannotated.values())
        assert any(p.faceless.any() for p in plans) and any(p.extra_images for p in plans)
        assert any(p.name.endswith("_left") for p in plans)
        for task in affwild2.TASK_SETS:
            assert any(task in p.tasks for p in plans)
    names = [p.name for p in demo_plans]
    for name in names:
        if name.endswith("_left"):
            assert name.replace("_left", "_right") in names


def _render(identity, intensity, size=112):
    image = Image.new("RGB", (size * face.SUPERSAMPLE,) * 2, (128, 128, 128))
    canvas = face.Canvas(image, identity, face.Pose(0.0, 1.0, (0.0, 0.0)), size)
    face.draw_face(canvas, identity, intensity)
    return np.asarray(image.reduce(face.SUPERSAMPLE), np.int16), canvas


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_au_moves_its_face_part_visibly(seed):
    identity = dataclasses.replace(face.sample_identity(np.random.default_rng(seed)), tilt=0.0, glasses=False)
    neutral, canvas = _render(identity, np.zeros(12))
    region = {"AU1": "brows", "AU2": "brows", "AU4": "brows", "AU6": "eyes", "AU7": "eyes", "AU10": "mouth",
              "AU12": "mouth", "AU15": "mouth", "AU23": "mouth", "AU24": "mouth", "AU25": "mouth", "AU26": "jaw"}
    bounds = {"brows": (-0.8, identity.eye_y), "eyes": (identity.eye_y - 0.15, identity.nose_y),
              "mouth": (identity.nose_y, 0.85), "jaw": (identity.mouth_y, 1.3)}
    for i, name in enumerate(labels.AU_NAMES):
        counts = []
        for level in (plan.INACTIVE_JITTER, plan.AU_INTENSITY[0], 1.0):
            intensity = np.zeros(12)
            intensity[i] = level
            changed = np.abs(_render(identity, intensity)[0] - neutral).max(-1) > 12  # [112, 112]
            counts.append(int(changed.sum()))
        rows = np.nonzero(changed)[0]  # at full intensity
        face_y = ((rows + 0.5) * face.SUPERSAMPLE - canvas.origin[1]) / canvas.unit
        lo, hi = bounds[region[name]]
        assert lo < np.median(face_y) < hi, (name, np.median(face_y), (lo, hi))
        assert counts[1] >= 10 and counts[2] >= 25 and counts[0] < counts[2], (name, counts)


def test_cli_writes_and_refuses_an_existing_folder(tmp_path, capsys):
    out = str(tmp_path / "tree")
    assert tree.main(["--out", out, "--videos", "2", "--frames", "8", "--size", "32"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: 2 videos (1 train, 1 val)") and "frames/s" in printed
    assert tree.main(["--out", out, "--videos", "2", "--frames", "8", "--size", "32"]) == 1
    assert capsys.readouterr().err == f"error: {out}: already exists; remove it or choose another --out\n"
    assert tree.main(["--out", str(tmp_path / "x"), "--videos", "1"]) == 1
    assert "--videos must be >= 2" in capsys.readouterr().err
