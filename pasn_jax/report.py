"""One HTML page about trained PASN runs, with its PNGs beside it (open it from disk: no server, no network).

    python -m pasn_jax.report --workdirs RUN... --out DIR [--names A,B,...] [--frames 8]

Each run's latest evaluation (`RUN/eval/<step>/`: run `--mode=eval` first where there is none): the ABAW tables side
by side (the paper's Tab. 3 layout, with the trivial predictors' scores), per-class F1 bars for AU and EXPR across
runs (Fig. 3), each run's EXPR confusion matrix and predicted vs true valence/arousal, the loss and score curves of
its TensorBoard events, and a Grad-CAM grid of `--frames` frames of its evaluation split (Fig. 4). On the
synthetic Aff-Wild2, the renderer knows where it drew the brows, eyes, nose, mouth and cheeks: the page gives the
share of Grad-CAM mass on them divided by their share of the image (1: the map ignores them).
"""

import argparse
import html
import json
import os
import struct
import sys
import time

import ml_collections
import numpy as np
from PIL import Image
from tensorboardX.proto import event_pb2

from pasn_jax import checkpointing, paths, visualize, workdir_config
from pasn_jax.data import folds, pipeline
from pasn_jax.data.source import resolve_data_dir
from pasn_jax.data.synthetic import frames as synthetic_frames, plan as synthetic_plan, tree as synthetic_tree
from pasn_jax.labels import AU_NAMES, EXPR_NAMES
from pasn_jax.predictions import read_predictions
from pasn_jax.tasks import pasn as pasn_task

SCORE_COLUMNS = (("au_f1", "AU F1"), ("au_tacc", "AU TAcc"), ("s_au", "S_AU"), ("expr_f1", "EXPR F1"),
                 ("expr_tacc", "EXPR TAcc"), ("s_expr", "S_EXPR"), ("ccc_v", "CCC_V"), ("ccc_a", "CCC_A"),
                 ("s_va", "S_VA"))
CURVES = ("train/loss", "eval/s_au", "eval/s_expr", "eval/s_va")
PARTS_FRAMES = 256  # frames whose Grad-CAM mass on the expressive parts is measured


def read_scalars(tb_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} of the scalar summaries in a TensorBoard folder's event files (TFRecord framing,
    tensorboardX's Event protos), the last value of a step kept."""
    series: dict[str, dict[int, float]] = {}
    for path in sorted(paths.path(tb_dir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            if pos + 16 + length > len(data):
                break  # a record still being written
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            for value in event.summary.value:
                series.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return {tag: (np.array(sorted(s)), np.array([s[k] for k in sorted(s)])) for tag, s in series.items()}


class Run:
    """A workdir with its config, its latest evaluation (metrics and predictions) and its TensorBoard scalars."""

    def __init__(self, workdir: str, name: str):
        self.workdir, self.name = workdir, name
        self.config = ml_collections.ConfigDict(workdir_config.read(workdir))
        evals = paths.path(workdir, "eval")
        steps = sorted(int(p.name) for p in evals.iterdir() if p.name.isdigit()) if evals.is_dir() else []
        if not steps:
            raise FileNotFoundError(f"{workdir}/eval: no evaluation; run it with --mode=eval first")
        folder = evals / str(steps[-1])
        self.metrics = json.loads((folder / "metrics.json").read_text())
        self.predictions = read_predictions(os.fspath(folder / "predictions.csv"))
        self.scalars = read_scalars(paths.join(workdir, "tb"))

    def eval_examples(self, count: int) -> list[dict]:
        """`count` examples spread over the run's evaluation split (pipeline.spread_examples)."""
        data_dir = resolve_data_dir(self.config.data)
        source = folds.split_source(data_dir, self.metrics.get("split", self.config.eval.split), self.config.data)
        return pipeline.spread_examples(source, self.config.data.image_size, count)


def _parts_masks(config, keys: list[tuple[str, int]], image_size: int) -> np.ndarray | None:
    """The synthetic renderer's expressive-parts masks of frames (video, frame) at the model's input size, or None
    when the run's data is not the synthetic set."""
    if config.data.source != "synthetic":
        return None
    s = config.data.synthetic
    plans = {p.name: p for p in synthetic_plan.plan_videos(s.videos, s.frames, s.seed, s.get("test_videos", 0))}
    renderers, masks = {}, []
    for video, frame in keys:
        if video not in renderers:
            p = plans[video]
            renderers[video] = synthetic_frames.FrameRenderer(synthetic_tree.video_identity(p), p.seed, s.size, None)
        mask = Image.fromarray(renderers[video].parts_mask(frame - 1).astype(np.uint8) * 255)
        masks.append(np.asarray(mask.resize((image_size, image_size), Image.BILINEAR)) >= 128)
    return np.stack(masks)


def _chance_rows(metrics: dict) -> dict[str, dict]:
    c = metrics.get("chance", {})
    return {"all-ones AU / majority EXPR / mean VA (chance)": {**c.get("au_all_ones", {}), **c.get("expr_majority", {}),
                                                              **c.get("va_mean", {})}}


def _table(rows: dict[str, dict]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in SCORE_COLUMNS)
    body = []
    for name, scores in rows.items():
        cells = "".join(f"<td>{scores[k]:.4f}</td>" if isinstance(scores.get(k), float) else "<td>–</td>"
                        for k, _ in SCORE_COLUMNS)
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>run</th>{head}</tr>{''.join(body)}</table>"


def _class_chance(labels: np.ndarray, classes: int) -> np.ndarray:
    """Per class, the F1 of calling every labelled frame that class: 2p / (1 + p), p its share."""
    p = np.array([np.mean(labels == c) for c in range(classes)])
    return 2 * p / (1 + p)


def write_report(runs: list[Run], out: str, frames: int = 8, log=print) -> str:
    """Writes DIR/index.html and its PNGs; returns the page's path."""
    os.makedirs(out, exist_ok=True)
    figures, sections = {}, []

    def figure(name: str, fig, caption: str) -> str:
        visualize.to_png(fig, os.path.join(out, name))
        figures[name] = caption
        caption = html.escape(caption)
        return f'<figure><img src="{name}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'

    first = runs[0]
    split = first.metrics.get("split", "val")
    rows = {r.name: r.metrics for r in runs} | _chance_rows(first.metrics)
    sections.append(f"<h2>ABAW2 metrics (paper §4.2) on {html.escape(split)}</h2>"
                    + "".join(f"<p>{html.escape(r.name)}: {html.escape(r.workdir)}, step {r.metrics.get('step')}, "
                              f"{r.metrics.get('frames')} frames</p>" for r in runs) + _table(rows))

    au_labels, expr_labels = first.predictions["au"], first.predictions["expr"]
    au_chance = np.array([_class_chance(au_labels[au_labels[:, j] >= 0, j], 2)[1] for j in range(len(AU_NAMES))])
    expr_chance = _class_chance(expr_labels[expr_labels >= 0], len(EXPR_NAMES))
    bars = [figure("au_f1.png", visualize.per_class_f1_figure(
                "au", {r.name: [r.metrics.get(f"au_f1_{a}", np.nan) for a in AU_NAMES] for r in runs}, au_chance),
                "AU F1 per action unit (chance: every frame positive)"),
            figure("expr_f1.png", visualize.per_class_f1_figure(
                "expr", {r.name: [r.metrics.get(f"expr_f1_{e}", np.nan) for e in EXPR_NAMES] for r in runs},
                expr_chance), "EXPR F1 per class (chance: every frame that class)")]
    sections.append("<h2>Per-class F1 (paper Fig. 3)</h2>" + "".join(bars))

    confusion, va = [], []
    for k, r in enumerate(runs):
        p = r.predictions
        confusion.append(figure(f"confusion_{k}.png", visualize.confusion_figure(
            visualize.confusion_matrix(p["expr_prob"], p["expr"]), f"{r.name}: EXPR confusion"), r.name))
        va.append(figure(f"va_{k}.png", visualize.va_figure(p["va_pred"], p["va"], f"{r.name}: valence, arousal"),
                         r.name))
    sections.append("<h2>Expression confusion matrices</h2>" + "".join(confusion))
    sections.append("<h2>Valence and arousal, predicted vs true</h2>" + "".join(va))

    chance = {"eval/s_au": first.metrics["chance"]["au_all_ones"]["s_au"],
              "eval/s_expr": first.metrics["chance"]["expr_majority"]["s_expr"],
              "eval/s_va": first.metrics["chance"]["va_mean"]["s_va"]} if "chance" in first.metrics else None
    sections.append("<h2>Training curves</h2>" + figure(
        "curves.png", visualize.curves_figure({r.name: r.scalars for r in runs}, list(CURVES), chance),
        "loss and scores per step (dashed: chance on the first run's split)"))

    grids, ratios = [], {}
    for k, r in enumerate(runs):
        start = time.perf_counter()
        workdir_config.resolve_dtype(r.workdir, r.config)
        model = pasn_task.build_model(r.config)
        variables, _ = checkpointing.read_variables(r.workdir)
        examples = r.eval_examples(max(frames, PARTS_FRAMES if r.config.data.source == "synthetic" else 0))
        images = np.stack([e["image"] for e in examples])
        predicted, maps = visualize.explain_expressions(model, variables, images)
        pick = np.linspace(0, len(examples) - 1, min(frames, len(examples))).round().astype(int)
        grids.append(figure(f"gradcam_{k}.png", visualize.expression_grid([examples[i] for i in pick],
                                                                          predicted[pick], maps[pick]),
                            f"{r.name}: Grad-CAM of the predicted expression's logit"))
        count = len(examples)
        masks = _parts_masks(r.config, [(str(e["video"]), int(e["frame"])) for e in examples], images.shape[1])
        if masks is not None:
            ratios[r.name] = (visualize.mass_ratio(maps, masks), float(masks.mean()), count)
        log(f"  Grad-CAM of {r.name}: {count} frames in {time.perf_counter() - start:.1f} s")
    text = "".join(f"<tr><th>{html.escape(n)}</th><td>{ratio:.3f}</td><td>{area:.3f}</td><td>{c}</td></tr>"
                   for n, (ratio, area, c) in ratios.items())
    parts = (f"<p>Grad-CAM mass on the brows, eyes, nose, mouth and cheeks (where the renderer drew them) divided by "
             f"their share of the image: 1 means the map ignores them.</p><table><tr><th>run</th><th>mass share / "
             f"area share</th><th>area share</th><th>frames</th></tr>{text}</table>") if ratios else ""
    sections.append("<h2>Grad-CAM (paper Fig. 4)</h2>" + parts + "".join(grids))

    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>PASN report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:2px 6px;font-size:13px}} figure{{display:inline-block;margin:6px}}
img{{max-width:100%}}</style></head>
<body><h1>PASN report: {len(runs)} run(s)</h1>
{''.join(sections)}
<script>window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
}});</script>
</body></html>
"""
    path = os.path.join(out, "index.html")
    paths.write_text(path, page)
    with open(os.path.join(out, "figures.json"), "w") as f:
        json.dump({"figures": figures, "parts_mass_ratio": {n: v[0] for n, v in ratios.items()}}, f, indent=1)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pasn_jax.report", description=__doc__.splitlines()[0])
    parser.add_argument("--workdirs", nargs="+", required=True, help="trained and evaluated PASN workdirs")
    parser.add_argument("--out", required=True, help="folder for index.html and its PNGs")
    parser.add_argument("--names", default="", help="comma-separated run names (default: the folders' names)")
    parser.add_argument("--frames", type=int, default=8, help="frames in each Grad-CAM grid")
    args = parser.parse_args(argv)
    names = args.names.split(",") if args.names else [os.path.basename(os.path.normpath(w)) for w in args.workdirs]
    start = time.perf_counter()
    try:
        if len(names) != len(args.workdirs):
            raise ValueError(f"--names: expected {len(args.workdirs)} names, got {len(names)}")
        if args.frames < 1:
            raise ValueError(f"--frames: expected at least 1, got {args.frames}")
        runs = [Run(w, n) for w, n in zip(args.workdirs, names)]
        path = write_report(runs, args.out, args.frames)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
