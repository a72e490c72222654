"""The paper's ensemble (§4.3.1): models trained on the five folds and on the original split vote on every frame.

    python -m pasn_jax.ensemble --workdirs RUN... --out DIR [--mode=eval|predict] [--vote] [--split test]

Per frame, AU and EXPR by mean probability (`--vote`: each member's decision counted, ties broken by the mean
probability), VA by the mean. `eval` scores each member on its own validation videos (the paper's Tab. 1) and
every member and the ensemble on `--split` (by default the held-out test split, which no fold member trained on,
where the shards have one), and writes DIR/members/<name>/, DIR/ensemble/ (metrics.json, predictions.csv),
DIR/report.md and DIR/report.csv.
`predict` writes the ensemble's DIR/predictions.csv on frames without labels (the members' config.predict, or
--root and --videos), ready for `python -m pasn_jax.submission write`.
"""

import argparse
import csv
import io
import sys

import jax
import ml_collections
import numpy as np

from pasn_jax import evaluate, evaluation, metrics, paths, predictions, workdir_config
from pasn_jax.data.folds import ORIGINAL_SPLIT

SCORE_KEYS = ("au_f1", "au_tacc", "s_au", "expr_f1", "expr_tacc", "s_expr", "ccc_v", "ccc_a", "s_va")
_PREDICTED = ("au_prob", "expr_prob", "va_pred")


def combine(members: list[dict], vote: bool = False) -> dict:
    """The ensemble's au_prob [N, 12], expr_prob [N, 7] and va_pred [N, 2] from its members' (same frames, same
    order). Mean: the members' mean. Vote: AU the share of members at probability >= 0.5 (a tie: the mean
    probability); EXPR each class's share of the members' argmax votes, ties broken by the mean probability."""
    au, expr, va = (np.stack([m[k] for m in members]).astype(np.float64) for k in _PREDICTED)  # [M, N, ...]
    mean_au, mean_expr = au.mean(0), expr.mean(0)
    if not vote:
        return {"au_prob": mean_au, "expr_prob": mean_expr, "va_pred": va.mean(0)}
    share = (au >= 0.5).mean(0)
    votes = np.eye(expr.shape[-1])[expr.argmax(-1)].sum(0)  # [N, 7]
    # Integer counts + half the mean probability: the count decides, the mean only among equal counts.
    return {"au_prob": np.where(share == 0.5, mean_au, share),
            "expr_prob": (votes + mean_expr / 2) / (len(members) + 0.5), "va_pred": va.mean(0)}


def member_name(workdir: str, config) -> str:
    fold = int(config.data.get("fold", ORIGINAL_SPLIT))
    return "original" if fold == ORIGINAL_SPLIT else f"fold-{fold + 1}"


class Member:
    """A trained PASN workdir restored on this host's devices (its config.json, its latest checkpoint)."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.config = ml_collections.ConfigDict(workdir_config.read(workdir))
        self.task, self.model, self.variables, self.data_dir, self.mesh, self.step = evaluate.restore(
            self.config, workdir)
        self.name = member_name(workdir, self.config)

    def evaluator(self, split: str):
        config = ml_collections.ConfigDict(self.config.to_dict())
        config.eval.split = split
        return self.task.Evaluator(self.model, config, self.data_dir, self.mesh)

    def predict(self, split: str, source=None) -> dict:
        return self.evaluator(split).predict(self.variables, source)


def _scores(p: dict) -> dict:
    return {k: float(v) for k, v in metrics.abaw_metrics(p["au_prob"], p["au"], p["expr_prob"], p["expr"],
                                                         p["va_pred"], p["va"]).items()}


def _write(folder: str, p: dict, record: dict | None) -> None:
    if jax.process_index() != 0:
        return
    paths.makedirs(folder)
    predictions.write_predictions(paths.join(folder, "predictions.csv"), p)
    if record is not None:
        evaluation.write_json(paths.join(folder, "metrics.json"), record)


def _same_frames(a: dict, b: dict, what: str) -> None:
    if not (np.array_equal(a["video"], b["video"]) and np.array_equal(a["frame"], b["frame"])):
        raise ValueError(f"{what}: its members predicted different frames; give members of one dataset")


def evaluate_ensemble(members: list[Member], out: str, split: str = "test", vote: bool = False) -> dict:
    """Scores each member on its validation videos and, with the ensemble, on `split`; writes the files; returns
    {'validation': {name: scores}, 'split': {name: scores, ..., 'members mean', 'ensemble'}}."""
    if split != "test" and len({int(m.config.data.get("fold", ORIGINAL_SPLIT)) for m in members}) > 1:
        raise ValueError(f"--split {split}: members trained on different folds hold different {split} frames; "
                         "score the ensemble on the test split")
    validation = {m.name: m.evaluator("val").run(m.variables, m.step).scores for m in members}
    if not paths.path(members[0].data_dir, f"{split}.json").is_file():  # Aff-Wild2's test labels are private
        _write_report(out, {"validation": validation, "split": {}}, split, 0, vote)
        return {"validation": validation, "split": {}}
    parts, scored = [], {}
    for m in members:
        p = m.predict(split)
        if parts:
            _same_frames(parts[0], p, m.workdir)
        parts.append(p)
        scored[m.name] = _scores(p)
        _write(paths.join(out, "members", m.name), p, dict(workdir=m.workdir, step=m.step, split=split,
                                                           frames=len(p["frame"]), **scored[m.name]))
    ensemble = {k: parts[0][k] for k in ("video", "frame", "au", "expr", "va")} | combine(parts, vote)
    scored["members mean"] = {k: float(np.mean([scored[m.name][k] for m in members])) for k in SCORE_KEYS}
    scored["ensemble"] = _scores(ensemble)
    _write(paths.join(out, "ensemble"), ensemble, dict(members=[m.workdir for m in members], vote=vote, split=split,
                                                       frames=len(ensemble["frame"]), **scored["ensemble"]))
    result = {"validation": validation, "split": scored}
    _write_report(out, result, split, len(ensemble["frame"]), vote)
    return result


def predict_ensemble(members: list[Member], out: str, vote: bool = False, root: str = "", videos: str = "") -> str:
    """The ensemble's predictions on frames without labels: returns the predictions.csv written."""
    parts = []
    for m in members:
        config = ml_collections.ConfigDict(m.config.to_dict())
        if root:
            config.predict.update(root=root, videos=videos)
        p = m.predict("test", m.task.predict_source(config, m.data_dir))
        if parts:
            _same_frames(parts[0], p, m.workdir)
        parts.append(p)
    path = paths.join(out, "predictions.csv")
    if jax.process_index() == 0:
        paths.makedirs(out)
        predictions.write_predictions(path, {k: parts[0][k] for k in ("video", "frame")} | combine(parts, vote))
    return path


def _table(rows: dict, mark: bool) -> list[str]:
    """Markdown rows of scores; with `mark`, each column's highest in bold and lowest in italics (Tab. 1)."""
    lines = ["| model | " + " | ".join(SCORE_KEYS) + " |", "|---" * (len(SCORE_KEYS) + 1) + "|"]
    for name, s in rows.items():
        cells = []
        for k in SCORE_KEYS:
            column = [r[k] for r in rows.values()]
            cell = f"{s[k]:.4f}"
            if mark and len(rows) > 1 and s[k] == max(column):
                cell = f"**{cell}**"
            elif mark and len(rows) > 1 and s[k] == min(column):
                cell = f"_{cell}_"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _write_report(out: str, result: dict, split: str, frames: int, vote: bool) -> None:
    if jax.process_index() != 0:
        return
    validation, scored = result["validation"], result["split"]
    spread = {k: (min(s[k] for s in validation.values()), max(s[k] for s in validation.values())) for k in SCORE_KEYS}
    md = ["# Ensemble report", "",
          "## Each member on its own validation videos (the paper's Tab. 1; highest in bold, lowest in italics)", "",
          *_table(validation, mark=True), "",
          "Spread across members: " + ", ".join(f"{k} {lo:.4f}-{hi:.4f}" for k, (lo, hi) in spread.items()), "",
          f"## Members and their ensemble ({'vote' if vote else 'mean'}) on the {split} split ({frames} frames)", "",
          *(_table(scored, mark=False) if scored else [f"The shards hold no labelled {split} split: the ensemble "
                                                       "is not scored here (predict it: --mode=predict)."]), ""]
    paths.makedirs(out)
    paths.write_text(paths.join(out, "report.md"), "\n".join(md))
    with io.StringIO(newline="") as f:
        w = csv.writer(f)
        w.writerow(["table", "model", *SCORE_KEYS])
        w.writerows(["validation", name, *(f"{s[k]:.6f}" for k in SCORE_KEYS)] for name, s in validation.items())
        for which, pick in (("validation min", 0), ("validation max", 1)):
            w.writerow([which, "", *(f"{spread[k][pick]:.6f}" for k in SCORE_KEYS)])
        w.writerows([split, name, *(f"{s[k]:.6f}" for k in SCORE_KEYS)] for name, s in scored.items())
        paths.write_text(paths.join(out, "report.csv"), f.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pasn_jax.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--workdirs", nargs="+", required=True, help="trained PASN workdirs (the members)")
    parser.add_argument("--out", required=True, help="folder for the outputs")
    parser.add_argument("--mode", choices=("eval", "predict"), default="eval")
    parser.add_argument("--vote", action="store_true", help="majority vote instead of mean probabilities")
    parser.add_argument("--split", default="test", help="eval: the split every member and the ensemble are scored on")
    parser.add_argument("--root", default="", help="predict: a cropped_aligned tree (default: the members' "
                        "config.predict)")
    parser.add_argument("--videos", default="", help="predict: the tree's videos, one per line")
    args = parser.parse_args(argv)
    try:
        members = [Member(w) for w in args.workdirs]
        names = [m.name for m in members]
        for i, m in enumerate(members):  # members of one fold: told apart by their place in --workdirs
            if names.count(m.name) > 1:
                m.name = f"{m.name} #{i + 1}"
        if args.mode == "predict":
            path = predict_ensemble(members, args.out, args.vote, args.root, args.videos)
            print(f"wrote {path} ({len(members)} members)")
            return 0
        evaluate_ensemble(members, args.out, args.split, args.vote)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if jax.process_index() == 0:
        print(paths.path(args.out, "report.md").read_text())
        print(f"wrote {args.out}/report.md, report.csv, members/, ensemble/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
