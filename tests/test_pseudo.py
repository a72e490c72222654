"""Pseudo labels (pasn_jax/pseudo.py): rules mined and applied as counted by hand, the renderer's prototypes
recovered from its own labels, teacher labels and the external-EXPR filter against the teacher's predictions."""

import json

import numpy as np
import pytest

from pasn_jax import labels, pseudo
from pasn_jax.data import shards
from pasn_jax.data.synthetic import plan

M = labels.AU_MISSING


def _au(*names):
    return [int(n in names) for n in labels.AU_NAMES]


def test_rules_are_mined_and_applied_as_counted_by_hand():
    a, b = _au("AU1"), _au("AU6", "AU12")
    au = np.array([a, a, a, a, b, b, [M] * 12, a, a, b, [M] + a[1:]])
    expr = np.array([2, 2, 2, 3, 4, 4, 4, -1, 5, -1, -1])  # the last 4: the frames to label (one labelled, one partial)
    mined = pseudo.mine_rules(au[:7], expr[:7], min_support=2, min_purity=0.7)
    assert [(r.aus(), r.expr, r.support, r.purity) for r in mined] == [("AU1", 2, 4, 0.75), ("AU6+AU12", 4, 2, 1.0)]
    assert [r.aus() for r in pseudo.mine_rules(au[:7], expr[:7], min_support=2, min_purity=0.8)] == ["AU6+AU12"]
    assert pseudo.mine_rules(au[:7], expr[:7], min_support=3, min_purity=0.8) == []
    assert pseudo.apply_rules(mined, au, expr).tolist() == [-1] * 7 + [2, -1, 4, -1]


def test_rules_recover_the_renderers_prototypes():
    """Mined from the labels the synthetic Aff-Wild2 would write for the demo's training videos (no rendering needed),
    each class's best-supported rule is its prototype (plan.PROTOTYPES; Neutral: no AU)."""
    plans = [p for p in plan.plan_videos(64, 150, seed=0) if p.split == "train"]
    au, expr = [], []
    for p in plans:
        if {"au", "expr"} <= set(p.tasks):
            keep = ~(p.unannotated["au"] | p.unannotated["expr"])
            au.append(p.au[keep])
            expr.append(p.expr[keep])
    mined = pseudo.mine_rules(np.concatenate(au), np.concatenate(expr), min_support=20, min_purity=0.85)
    best = {}
    for rule in mined:  # most supported first
        best.setdefault(labels.EXPR_NAMES[rule.expr], rule.pattern)
    assert best == {name: tuple(_au(*aus)) for name, aus in plan.PROTOTYPES.items()}


def test_rules_command_writes_pseudo_shards(synthetic_shards, tmp_path, capsys):
    out = str(tmp_path / "rules")
    assert pseudo.main(["rules", "--data_dir", synthetic_shards, "--out", out, "--min-support", "1",
                        "--min-purity", "0.5"]) == 0
    assert "frames pseudo-labelled" in capsys.readouterr().out
    with open(f"{out}/rules.json") as f:
        mined = {tuple(r["pattern"]): labels.EXPR_NAMES.index(r["expr"]) for r in json.load(f)}
    source, written = shards.ShardSource(synthetic_shards, "train"), shards.ShardSource(out, "train")
    original = {(r["video"], r["frame"]): r for r in (source[i] for i in range(len(source)))}
    expected = {k: mined[tuple(r["au"].tolist())] for k, r in original.items()
                if r["expr"] == -1 and np.all(r["au"] != M) and tuple(r["au"].tolist()) in mined}
    got = {}
    for i in range(len(written)):
        r = written[i]
        assert r["source"] == "pseudo" and np.all(r["au"] == M) and np.all(r["va"] == labels.VA_MISSING)
        assert r["image"] == original[(r["video"], r["frame"])]["image"]
        got[(r["video"], r["frame"])] = r["expr"]
    assert got == expected and len(got) > 0
    assert "| AUs | class | support | purity |" in open(f"{out}/rules.md").read()


def _probs(e, p):
    row = np.full(7, (1 - p) / 6)
    row[e] = p
    return row


def test_teacher_keeps_each_classs_most_confident_share_of_missing_labels_only():
    """Per predicted class the top half (share 0.5) of the frames lacking EXPR, if at least 0.45 sure; AU labels
    only for frames without any, when every AU is 0.4 or more from 0.5."""
    classes = [(0, 0.9), (0, 0.6), (0, 0.8), (0, 0.7), (6, 0.5), (6, 0.95), (3, 0.4), (3, 0.3), (6, 0.99)]
    expr = np.array([-1] * 8 + [6])  # the last is labelled: never pseudo-labelled
    au = np.full((9, 12), M)
    au[1] = 0
    au_prob = np.full((9, 12), 0.95)
    au_prob[2, 5] = 0.6  # one AU 0.1 from 0.5
    p = {"expr": expr, "au": au, "expr_prob": np.stack([_probs(e, q) for e, q in classes]), "au_prob": au_prob}
    chosen = pseudo.teacher_labels(p, expr_share=0.5, expr_threshold=0.45, au_margin=0.4)
    expected = {0: {"expr": 0}, 2: {"expr": 0}, 5: {"expr": 6}}
    for i in (0, 3, 4, 5, 6, 7, 8):  # AUs: all but frame 1 (labelled) and frame 2 (not certain)
        expected.setdefault(i, {})["au"] = [1] * 12
    assert chosen == expected


@pytest.mark.slow
def test_teacher_and_filter_follow_the_workdirs_predictions(smoke_run, synthetic_shards, tmp_path, capsys):
    """The smoke run as teacher on its own data, and as the filter of another shard folder: every written label is
    its prediction, every kept frame passes the threshold and no frame that passes is dropped."""
    from pasn_jax import ensemble
    workdir, _ = smoke_run
    member = ensemble.Member(workdir)
    out = str(tmp_path / "teacher")
    assert pseudo.main(["teacher", "--workdir", workdir, "--out", out, "--expr-share", "0.5",
                        "--au-margin", "0"]) == 0
    metadata = shards.read_metadata(out, "train")
    assert f"{metadata['num_records']} frames pseudo-labelled" in capsys.readouterr().out
    p = member.predict("train", shards.ShardSource(member.data_dir, "train"))
    index = {(v, int(f)): i for i, (v, f) in enumerate(zip(p["video"].tolist(), p["frame"].tolist()))}
    written = shards.ShardSource(out, "train")
    assert len(written) == metadata["num_records"] > 0
    predicted = p["expr_prob"].argmax(axis=1)
    assert metadata["pseudo_expr"] == {name: int(0.5 * np.sum((p["expr"] == -1) & (predicted == e)))
                                       for e, name in enumerate(labels.EXPR_NAMES)}
    for i in range(len(written)):
        r = written[i]
        j = index[(r["video"], int(r["frame"]))]
        if r["expr"] != -1:
            assert p["expr"][j] == -1 and r["expr"] == p["expr_prob"][j].argmax()
        if r["au"][0] != M:
            assert np.all(p["au"][j] == M) and r["au"].tolist() == (p["au_prob"][j] > 0.5).astype(int).tolist()

    out = str(tmp_path / "filtered")
    assert pseudo.main(["filter", "--workdir", workdir, "--data_dir", synthetic_shards, "--out", out,
                        "--min-prob", "0.2"]) == 0
    filtered = shards.read_metadata(out, "train")
    q = member.predict("train", shards.ShardSource(synthetic_shards, "train"))
    passes = (q["expr"] == -1) | (q["expr_prob"][np.arange(len(q["expr"])), np.maximum(q["expr"], 0)] >= 0.2)
    assert filtered["num_records"] == int(passes.sum()) < len(passes)
    for e, name in enumerate(labels.EXPR_NAMES):
        assert filtered["per_class"][name] == {"kept": int(np.sum(passes & (q["expr"] == e))),
                                               "dropped": int(np.sum(~passes & (q["expr"] == e)))}
