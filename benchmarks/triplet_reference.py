"""Reference for stage 2 of the prior: FEC triplet prediction accuracy (prior_metrics.triplet_accuracy) on held-out
triplets (converted FEC shards, or the synthetic triplets of configs/dln.py:demo) of embeddings that are not DLN's:
a trained PASN's AU probabilities (12-d), expression probabilities (7-d) and both, i.e. how well a model supervised
with AU and expression labels orders expression similarity, by triplet type. With --dln, that DLN workdir's own
score on the same triplets beside them. With the synthetic triplets, the renderer's own labels scored as embeddings
too (AU intensities, AU occurrence, expression one-hot): the ceiling of what each kind of label can order.

    python -m benchmarks.triplet_reference --pasn RUN [--dln DLN_RUN] [--data-dir FEC_SHARDS] [--labels FEC_FOLDER]
"""

import argparse
import os

import jax
import numpy as np

from benchmarks import common
from configs import dln as dln_configs
from pasn_jax import checkpointing, evaluation, labels, parallel, prior_metrics
from pasn_jax.data import triplet_pipeline
from pasn_jax.data.synthetic import plan, prepare, triplets
from pasn_jax.tasks import dln as dln_task
from pasn_jax.tasks import pasn as pasn_task


def _row(name: str, embeddings: np.ndarray, kinds: np.ndarray) -> str:
    """One printed line: accuracy over all triplets [N, 3, D] and per triplet type (1, 2, 3 classes)."""
    scores = {"all": prior_metrics.triplet_accuracy(embeddings)}
    for kind in (1, 2, 3):
        if (kinds == kind).any():
            scores[f"{kind}-class"] = prior_metrics.triplet_accuracy(embeddings[kinds == kind])
    return f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pasn", required=True, help="a trained PASN workdir")
    parser.add_argument("--dln", default="", help="a DLN workdir scored on the same triplets")
    parser.add_argument("--data-dir", default="", help="converted FEC triplet shards (split 'test'); default: the "
                        "synthetic triplets of configs/dln.py:demo, rendered on first use")
    parser.add_argument("--labels", default="", help="a synthetic FEC folder (pasn_jax/data/synthetic/triplets.py) "
                        "whose renderer labels are scored too; default: the demo's, without --data-dir")
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    data_dir = args.data_dir or dln_task.prepare_data(dln_configs.get_config("demo"))
    labels_root = args.labels or ("" if args.data_dir else os.path.join(os.path.dirname(data_dir),
                                                                        prepare.TRIPLETS_ROOT))
    mesh = parallel.make_mesh()
    config, model, variables, step = checkpointing.read_trained(args.pasn, pasn_task.build_model)

    def embed(v, images):
        out = pasn_task._predict(model, v, dln_task._faces(images))
        return {k: out[k].reshape(images.shape[:2] + (-1,)) for k in ("au_prob", "expr_prob")}

    batches = triplet_pipeline.eval_triplets(data_dir, batch_size=parallel.per_process_batch_size(64, mesh),
                                             image_size=config.data.image_size, split="test")
    p = evaluation.predict_split(jax.jit(embed), variables, batches, mesh, ("triplet_type",))
    kinds = p["triplet_type"]
    rows = {f"PASN AU probabilities ({args.pasn}, step {step})": p["au_prob"],
            "PASN expression probabilities": p["expr_prob"],
            "PASN AU + expression probabilities": np.concatenate([p["au_prob"], p["expr_prob"]], axis=-1)}
    print(f"triplet prediction accuracy on {len(kinds)} test triplets ({data_dir}); chance 1/3")
    for name, embeddings in rows.items():
        print(_row(name, embeddings, kinds))
    if labels_root:  # the renderer's labels of the same split (ties of the closest pair count as wrong)
        truth = triplets.face_labels(labels_root, "test")
        rows = {"renderer AU intensities": truth["intensity"],
                "renderer AU occurrence (0/1, the AU task's labels)": truth["intensity"] >= plan.AU_LABEL_THRESHOLD,
                "renderer expression one-hot": np.eye(labels.NUM_EXPRS)[truth["expr"]]}
        for name, embeddings in rows.items():
            print(_row(name, embeddings, truth["triplet_type"]))
    if args.dln:  # the DLN stage's own evaluation (tasks/dln.py), on these triplets
        dln_config, dln_model, dln_variables, dln_step = checkpointing.read_trained(args.dln, dln_task.build_model)
        dln_config.eval.split = "test"
        s = dln_task.Evaluator(dln_model, dln_config, data_dir, mesh).run(dln_variables, dln_step).scores
        by_type = [f"{k}-class {s[f'dln_triplet_accuracy_{k}class']:.3f}" for k in (1, 2, 3)
                   if f"dln_triplet_accuracy_{k}class" in s]
        print(f"  DLN embedding ({args.dln}, step {dln_step}): "
              + ", ".join([f"all {s['dln_triplet_accuracy']:.3f}", *by_type]))


if __name__ == "__main__":
    main()
