"""The ensemble (§4.3.1): its combination rules by hand, identical members giving the member, and its files."""

import csv
import json
import os

import ml_collections
import numpy as np

from pasn_jax import ensemble, evaluate, workdir_config
from pasn_jax.predictions import PREDICTED_COLUMNS, read_predictions


def test_combine_mean_and_vote_by_hand():
    def member(au, expr, va):
        return {"au_prob": np.repeat(np.array(au, np.float32)[:, None], 12, axis=1),
                "expr_prob": np.array(expr, np.float32), "va_pred": np.array(va, np.float32)}

    # two frames; AU probabilities the same for every AU of a frame
    a = member([0.9, 0.2], [[0.6, 0.4, 0, 0, 0, 0, 0], [0.1, 0.5, 0.4, 0, 0, 0, 0]], [[0.5, -0.5], [0.1, 0.2]])
    b = member([0.6, 0.6], [[0.6, 0.4, 0, 0, 0, 0, 0], [0.2, 0.3, 0.5, 0, 0, 0, 0]], [[0.3, -0.1], [0.3, 0.0]])
    c = member([0.1, 0.45], [[0.0, 0.9, 0.1, 0, 0, 0, 0], [0.0, 0.1, 0.9, 0, 0, 0, 0]], [[0.1, 0.0], [-0.4, 0.1]])
    mean = ensemble.combine([a, b, c])
    np.testing.assert_allclose(mean["au_prob"][:, 0], [1.6 / 3, 1.25 / 3])
    np.testing.assert_allclose(mean["expr_prob"][0, :3], [0.4, 1.7 / 3, 0.1 / 3])
    np.testing.assert_allclose(mean["va_pred"], [[0.3, -0.2], [0.0, 0.1]], atol=1e-7)
    vote = ensemble.combine([a, b, c], vote=True)
    np.testing.assert_allclose(vote["au_prob"][:, 0], [2 / 3, 1 / 3])  # 0.9, 0.6 vote yes; then only 0.6
    assert vote["expr_prob"].argmax(1).tolist() == [0, 2]  # votes 2:1 for Neutral (the mean says Anger); 2:1 Disgust
    np.testing.assert_allclose(vote["expr_prob"].sum(1), 1.0)
    tie = ensemble.combine([a, b], vote=True)  # AU frame 0: 2 yes; frame 1: 1 of 2 -> the mean 0.4
    np.testing.assert_allclose(tie["au_prob"][:, 0], [1.0, 0.4])
    assert tie["expr_prob"].argmax(1).tolist() == [0, 2]  # frame 1: Anger 1, Disgust 1 -> the mean prefers Disgust


def test_identical_members_give_the_member(smoke_run, tmp_path, capsys):
    workdir, _ = smoke_run
    out = str(tmp_path / "ensemble")
    assert ensemble.main(["--workdirs", workdir, workdir, workdir, "--out", out]) == 0
    assert "Each member on its own validation videos" in capsys.readouterr().out
    member = read_predictions(os.path.join(out, "members", "original #1", "predictions.csv"))
    combined = read_predictions(os.path.join(out, "ensemble", "predictions.csv"))
    assert len(member["frame"]) > 0 and set(member["video"]) == set(open(_test_list(workdir)).read().split())
    for key in ("au_prob", "expr_prob", "va_pred", "au", "expr", "va"):
        np.testing.assert_allclose(combined[key], member[key], atol=1e-6, err_msg=key)
    with open(os.path.join(out, "ensemble", "metrics.json")) as f:
        scores = json.load(f)
    with open(os.path.join(out, "members", "original #1", "metrics.json")) as f:
        member_scores = json.load(f)
    for key in ensemble.SCORE_KEYS:
        np.testing.assert_allclose(scores[key], member_scores[key], atol=1e-6, err_msg=key)
    with open(os.path.join(out, "report.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["table", "model", *ensemble.SCORE_KEYS]
    assert [r[:2] for r in rows[1:]] == [["validation", f"original #{i}"] for i in (1, 2, 3)] + [
        ["validation min", ""], ["validation max", ""]] + [["test", f"original #{i}"] for i in (1, 2, 3)] + [
        ["test", "members mean"], ["test", "ensemble"]]
    with open(os.path.join(workdir, "eval", str(max(int(s) for s in os.listdir(os.path.join(workdir, "eval")))),
                           "metrics.json")) as f:
        trained = json.load(f)  # the workdir's own evaluation on its validation split at the last step
    assert abs(float(rows[1][2]) - trained["au_f1"]) < 1e-5 and abs(float(rows[1][-1]) - trained["s_va"]) < 1e-5


def _test_list(workdir: str) -> str:
    config = ml_collections.ConfigDict(workdir_config.read(workdir))
    from pasn_jax.data.source import resolve_data_dir
    return os.path.join(os.path.dirname(resolve_data_dir(config.data)), "tree", "test_videos.txt")


def test_predict_of_identical_members_is_the_model_s(smoke_run, tmp_path):
    workdir, _ = smoke_run
    out = str(tmp_path / "ensemble")
    assert ensemble.main(["--workdirs", workdir, workdir, "--out", out, "--mode=predict", "--vote"]) == 0
    path = os.path.join(out, "predictions.csv")
    assert open(path).readline().strip().split(",") == PREDICTED_COLUMNS
    combined = read_predictions(path)
    config = ml_collections.ConfigDict(workdir_config.read(workdir))
    single = read_predictions(evaluate.predict(config, workdir))
    assert set(single["video"]) == set(open(_test_list(workdir)).read().split())
    np.testing.assert_array_equal(combined["frame"], single["frame"])
    np.testing.assert_allclose(combined["va_pred"], single["va_pred"], atol=1e-6)
    assert ((combined["au_prob"] >= 0.5) == (single["au_prob"] >= 0.5)).all()  # votes of equal members agree
    assert (combined["expr_prob"].argmax(1) == single["expr_prob"].argmax(1)).all()
