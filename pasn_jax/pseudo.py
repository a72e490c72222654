"""Pseudo labels and the external-EXPR filter (paper §3.4, data augmentation), each written as shards that
`config.data.sources` mixes into training (pasn_jax/data/mixture.py).

    python -m pasn_jax.pseudo rules --data_dir D|--workdir W --out O [--min-support 20] [--min-purity 0.85]
    python -m pasn_jax.pseudo teacher --workdir W --out O [--data_dir D] [--expr-share 0.1] [--expr-threshold 0]
        [--au-margin 0.4]
    python -m pasn_jax.pseudo filter --workdir W --data_dir D --out O [--min-prob 0.8]

rules: AU pattern -> EXPR rules mined from the training frames that carry both labels (a pattern is the 12 AUs'
0/1 values; a rule needs `min_support` frames and its class's share `min_purity` of them), written as `rules.md` and
`rules.json`; frames whose AUs are all labelled but whose EXPR is not get the class of their pattern's rule.
teacher: a trained workdir predicts the frames of a split (by default its own training data). Frames without an EXPR
label get their predicted class where they are among the `expr_share` most confident of the frames predicted that
class (class-balanced, as in class-balanced self-training: a teacher is confident on few classes, and one global
threshold would hand the student those alone; measured on the synthetic set, threshold 0.9 gave 98% Surprise) and
their probability reaches `expr_threshold`. A frame without any AU label gets the 12 predicted AUs where every
probability lies `au_margin` or more from 0.5. VA is never pseudo-labelled: one network's regression output carries
no confidence to threshold.
filter: the paper's filter of external EXPR data: an Aff-Wild2-trained workdir keeps an external frame's EXPR label
only where it gives that label a probability of at least `min_prob` (frames without EXPR label pass); written with
the count kept and dropped per class.

Pseudo shards hold only the frames that gained a label, with only their pseudo labels (the frames' own labels stay
in the source shards), under source `pseudo`; filtered shards hold the kept frames as they were.
"""

import argparse
import dataclasses
import functools
import os
import sys
import time
from collections import Counter

import numpy as np
import simplejpeg

from pasn_jax import evaluation, labels, paths
from pasn_jax.data import conversion, shards

PSEUDO_SOURCE = "pseudo"


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: tuple[int, ...]  # 12 AU values, labels.AU_NAMES order
    expr: int
    support: int  # labelled frames showing the pattern
    purity: float  # share of them labelled `expr`

    def aus(self) -> str:
        return "+".join(n for n, v in zip(labels.AU_NAMES, self.pattern) if v) or "none"


def read_labels(data_dir: str, split: str) -> dict:
    """au [N,12], expr [N], video [N], frame [N] of a split's records, in stored order (images are not kept: a real
    split holds millions)."""
    source = shards.ShardSource(data_dir, split)
    au, expr, video, frame = [], [], [], []
    for i in range(len(source)):
        record = source[i]
        au.append(record["au"])
        expr.append(record["expr"])
        video.append(record["video"])
        frame.append(record["frame"])
    return {"au": np.array(au, np.int64).reshape(-1, labels.NUM_AUS), "expr": np.array(expr, np.int64),
            "video": np.array(video, str), "frame": np.array(frame)}


def mine_rules(au: np.ndarray, expr: np.ndarray, *, min_support: int, min_purity: float) -> list[Rule]:
    """Rules from the frames with every AU and the EXPR labelled: each pattern seen on `min_support` frames or more
    whose most frequent class holds `min_purity` of them, most supported first."""
    both = np.all(au != labels.AU_MISSING, axis=1) & (expr != labels.EXPR_MISSING)
    counts: dict[tuple, Counter] = {}
    for pattern, e in zip(map(tuple, au[both].tolist()), expr[both].tolist()):
        counts.setdefault(pattern, Counter())[e] += 1
    rules = []
    for pattern, classes in counts.items():
        support = sum(classes.values())
        e, n = max(classes.items(), key=lambda item: (item[1], -item[0]))
        if support >= min_support and n / support >= min_purity:
            rules.append(Rule(pattern, e, support, round(n / support, 4)))
    return sorted(rules, key=lambda r: (-r.support, r.pattern))


def apply_rules(rules: list[Rule], au: np.ndarray, expr: np.ndarray) -> np.ndarray:
    """The pseudo EXPR class of each frame (EXPR_MISSING where none): frames without EXPR label whose 12 AUs are
    labelled and show a rule's pattern."""
    table = {r.pattern: r.expr for r in rules}
    out = np.full(len(expr), labels.EXPR_MISSING, np.int64)
    candidates = np.flatnonzero(np.all(au != labels.AU_MISSING, axis=1) & (expr == labels.EXPR_MISSING))
    for i in candidates:
        out[i] = table.get(tuple(au[i].tolist()), labels.EXPR_MISSING)
    return out


def rules_report(rules: list[Rule], *, frames: int, labelled: Counter, min_support: int, min_purity: float) -> str:
    """rules.md: the mined rules (pattern, class, support, purity), then the frames each class labelled."""
    lines = [f"# AU -> EXPR rules (min support {min_support}, min purity {min_purity:g})", "",
             f"{len(rules)} rules mined from {frames} frames with every AU and the EXPR labelled.", "",
             "| AUs | class | support | purity |", "|---|---|---:|---:|"]
    lines += [f"| {r.aus()} | {labels.EXPR_NAMES[r.expr]} | {r.support} | {r.purity:.3f} |" for r in rules]
    lines += ["", "Frames pseudo-labelled per class: "
              + ", ".join(f"{labels.EXPR_NAMES[e]} {labelled.get(e, 0)}" for e in range(labels.NUM_EXPRS))]
    return "\n".join(lines) + "\n"


def _pseudo_example(source: shards.ShardSource, item: tuple[int, dict]) -> tuple[dict, tuple[int, int]]:
    """A pseudo record: the source record's image, video and frame with only the pseudo labels."""
    index, pseudo = item
    record = source[index]
    fields = {"image": record["image"], "video": record["video"], "frame": record["frame"],
              "au": pseudo.get("au", [labels.AU_MISSING] * labels.NUM_AUS),
              "expr": pseudo.get("expr", labels.EXPR_MISSING),
              "va": [labels.VA_MISSING] * labels.NUM_VA, "identity": record["identity"]}
    return fields, _shape(record["image"])


def _kept_example(source: shards.ShardSource, index: int) -> tuple[dict, tuple[int, int]]:
    record = source[index]
    return {k: record[k] for k in ("image", "video", "frame", "au", "expr", "va", "identity")}, _shape(record["image"])


def _shape(image: bytes) -> tuple[int, int]:
    height, width, _, _ = simplejpeg.decode_jpeg_header(image)
    return height, width


def write_pseudo(data_dir: str, split: str, out: str, pseudo: dict[int, dict], counts: dict) -> dict:
    """Shards (split `train`, source `pseudo`) of the records `pseudo` gives labels: {record index: {'expr': e,
    'au': [12]}}."""
    source = shards.ShardSource(data_dir, split)
    return conversion.write_split(out, "train", sorted(pseudo.items()), functools.partial(_pseudo_example, source),
                                  num_shards=max(1, min(4, len(pseudo) // 500)), source=PSEUDO_SOURCE,
                                  counts={"from": os.path.abspath(data_dir), "from_split": split, **counts})


def rules(data_dir: str, out: str, *, split: str = "train", min_support: int = 20, min_purity: float = 0.85) -> dict:
    """Mines the rules, writes rules.md/rules.json and the pseudo-labelled frames' shards into `out`."""
    conversion.forget_split(out, "train")
    y = read_labels(data_dir, split)
    mined = mine_rules(y["au"], y["expr"], min_support=min_support, min_purity=min_purity)
    pseudo = apply_rules(mined, y["au"], y["expr"])
    labelled = Counter(pseudo[pseudo != labels.EXPR_MISSING].tolist())
    frames = int(np.sum(np.all(y["au"] != labels.AU_MISSING, axis=1) & (y["expr"] != labels.EXPR_MISSING)))
    os.makedirs(out, exist_ok=True)
    paths.write_text(os.path.join(out, "rules.md"), rules_report(
        mined, frames=frames, labelled=labelled, min_support=min_support, min_purity=min_purity))
    evaluation.write_json(os.path.join(out, "rules.json"), [
        {"aus": r.aus(), "pattern": list(r.pattern), "expr": labels.EXPR_NAMES[r.expr], "support": r.support,
         "purity": r.purity} for r in mined])
    chosen = {int(i): {"expr": int(pseudo[i])} for i in np.flatnonzero(pseudo != labels.EXPR_MISSING)}
    if not chosen:
        raise ValueError(f"{data_dir} ({split}): no frame without EXPR label shows a mined pattern "
                         f"({len(mined)} rules); lower --min-support or --min-purity")
    return write_pseudo(data_dir, split, out, chosen, {"rules": len(mined), "mined_from_frames": frames,
                                                       "min_support": min_support, "min_purity": min_purity})


def teacher_labels(p: dict, *, expr_share: float, expr_threshold: float, au_margin: float) -> dict[int, dict]:
    """Pseudo labels from predictions `p` (au_prob, expr_prob and the labels au, expr of the same frames): {frame
    position: {'expr': class} and/or {'au': [12]}} (see the module docstring)."""
    chosen: dict[int, dict] = {}
    unlabelled = p["expr"] == labels.EXPR_MISSING
    predicted, confidence = p["expr_prob"].argmax(axis=1), p["expr_prob"].max(axis=1)
    for e in range(labels.NUM_EXPRS):
        frames = np.flatnonzero(unlabelled & (predicted == e))
        best = frames[np.argsort(-confidence[frames], kind="stable")[:int(expr_share * len(frames))]]
        for i in best[confidence[best] >= expr_threshold]:
            chosen.setdefault(int(i), {})["expr"] = e
    no_au = np.all(p["au"] == labels.AU_MISSING, axis=1)
    certain = no_au & np.all(np.abs(p["au_prob"] - 0.5) >= au_margin, axis=1)
    for i in np.flatnonzero(certain):
        chosen.setdefault(int(i), {})["au"] = (p["au_prob"][i] > 0.5).astype(int).tolist()
    return dict(sorted(chosen.items()))


def _predict_records(workdir: str, data_dir: str | None, split: str):
    """(predictions in stored record order, the shards folder): a trained workdir's outputs for every record of a
    split (default: the workdir's own data)."""
    from pasn_jax import ensemble  # the model side: imported only by the commands that run one

    member = ensemble.Member(workdir)
    data_dir = data_dir or member.data_dir
    source = shards.ShardSource(data_dir, split)
    p = member.predict(split, source)
    position = {(v, int(f)): i for i, (v, f) in enumerate(zip(p["video"].tolist(), p["frame"].tolist()))}
    if len(position) != len(source):
        raise ValueError(f"{data_dir} ({split}): (video, frame) pairs are not unique; cannot match predictions")
    order = np.array([position[(r["video"], int(r["frame"]))] for r in (source[i] for i in range(len(source)))])
    return {k: v[order] for k, v in p.items()}, data_dir


def teacher(workdir: str, out: str, *, data_dir: str | None = None, split: str = "train", expr_share: float = 0.1,
            expr_threshold: float = 0.0, au_margin: float = 0.4) -> dict:
    """Teacher-student pseudo labels: the workdir's confident predictions on frames lacking labels, as shards."""
    conversion.forget_split(out, "train")
    p, data_dir = _predict_records(workdir, data_dir, split)
    chosen = teacher_labels(p, expr_share=expr_share, expr_threshold=expr_threshold, au_margin=au_margin)
    if not chosen:
        raise ValueError(f"{data_dir} ({split}): no prediction passes --expr-share {expr_share} with "
                         f"--expr-threshold {expr_threshold}, nor --au-margin {au_margin}")
    classes = Counter(v["expr"] for v in chosen.values() if "expr" in v)
    return write_pseudo(data_dir, split, out, chosen, {
        "teacher": os.path.abspath(workdir), "expr_share": expr_share, "expr_threshold": expr_threshold,
        "au_margin": au_margin,
        "pseudo_expr": {labels.EXPR_NAMES[e]: classes.get(e, 0) for e in range(labels.NUM_EXPRS)},
        "pseudo_au_frames": sum("au" in v for v in chosen.values())})


def filter_expr(workdir: str, data_dir: str, out: str, *, split: str = "train", min_prob: float = 0.8) -> dict:
    """The external frames whose EXPR label the workdir gives a probability >= min_prob (and those without EXPR
    label), copied as they are; the counts kept and dropped per class go into the metadata."""
    conversion.forget_split(out, split)
    p, _ = _predict_records(workdir, data_dir, split)
    has = p["expr"] != labels.EXPR_MISSING
    own = np.where(has, p["expr_prob"][np.arange(len(has)), np.maximum(p["expr"], 0)], 1.0)
    keep = ~has | (own >= min_prob)
    per_class = {labels.EXPR_NAMES[e]: {"kept": int(np.sum(keep & (p["expr"] == e))),
                                        "dropped": int(np.sum(~keep & (p["expr"] == e)))}
                 for e in range(labels.NUM_EXPRS)}
    source = shards.ShardSource(data_dir, split)
    metadata = shards.read_metadata(data_dir, split)
    return conversion.write_split(out, split, np.flatnonzero(keep).tolist(), functools.partial(_kept_example, source),
                                  num_shards=len(metadata["shards"]), source=metadata.get("source", "filtered"),
                                  counts={"from": os.path.abspath(data_dir), "filter": os.path.abspath(workdir),
                                          "min_prob": min_prob, "per_class": per_class})


def _workdir_data(workdir: str) -> str:
    """The shards a workdir's config trains on (rendered first if synthetic and not cached)."""
    import ml_collections

    from pasn_jax import workdir_config
    from pasn_jax.data.source import resolve_data_dir
    return resolve_data_dir(ml_collections.ConfigDict(workdir_config.read(workdir)).data)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("rules", help="mine AU pattern -> EXPR rules; label frames with AU but no EXPR")
    where = command.add_mutually_exclusive_group(required=True)
    where.add_argument("--data_dir", help="converted Aff-Wild2 shards")
    where.add_argument("--workdir", help="a PASN workdir: the shards its config trains on")
    command.add_argument("--min-support", type=int, default=20, help="labelled frames a pattern needs")
    command.add_argument("--min-purity", type=float, default=0.85, help="share of them its class needs")
    command = commands.add_parser("teacher", help="a trained workdir's confident predictions as labels")
    command.add_argument("--workdir", required=True, help="a trained PASN workdir (the teacher)")
    command.add_argument("--data_dir", default=None, help="shards to label (default: the workdir's own data)")
    command.add_argument("--expr-share", type=float, default=0.1,
                         help="per predicted class, the share of its most confident frames that get its label")
    command.add_argument("--expr-threshold", type=float, default=0.0, help="and the least probability they need")
    command.add_argument("--au-margin", type=float, default=0.4, help="least |p - 0.5| of every AU for AU labels")
    command = commands.add_parser("filter", help="keep external EXPR labels an Aff-Wild2 model agrees with")
    command.add_argument("--workdir", required=True, help="an Aff-Wild2-trained PASN workdir")
    command.add_argument("--data_dir", required=True, help="converted external shards (e.g. AffectNet's)")
    command.add_argument("--min-prob", type=float, default=0.8, help="least probability of the frame's own label")
    for command in commands.choices.values():
        command.add_argument("--out", required=True, help="shard folder to write")
        command.add_argument("--split", default="train", help="split to read (written as train; filter keeps it)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.command == "rules":
            metadata = rules(args.data_dir or _workdir_data(args.workdir), args.out, split=args.split,
                             min_support=args.min_support, min_purity=args.min_purity)
            print(f"{metadata['rules']} rules from {metadata['mined_from_frames']} frames "
                  f"({os.path.join(args.out, 'rules.md')}); {metadata['num_records']} frames pseudo-labelled")
        elif args.command == "teacher":
            metadata = teacher(args.workdir, args.out, data_dir=args.data_dir, split=args.split,
                               expr_share=args.expr_share, expr_threshold=args.expr_threshold,
                               au_margin=args.au_margin)
            print(f"{metadata['num_records']} frames pseudo-labelled: EXPR "
                  + ", ".join(f"{k} {v}" for k, v in metadata["pseudo_expr"].items())
                  + f"; AU {metadata['pseudo_au_frames']}")
        else:
            metadata = filter_expr(args.workdir, args.data_dir, args.out, split=args.split, min_prob=args.min_prob)
            print(f"kept {metadata['num_records']} frames: "
                  + ", ".join(f"{k} {v['kept']}/{v['kept'] + v['dropped']}" for k, v in metadata["per_class"].items()))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
