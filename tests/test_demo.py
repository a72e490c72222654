"""The README's demo (`make demo`): trained on synthetic people, it must score on unseen ones, far above chance.
(That train and val people differ is tested with the generator, tests/test_synthetic.py.)

Slow (minutes): run with `make test-slow` (CI runs it after `make test`).
"""

import json
import os
import time

import pytest
from runs import run_main

# The acceptance thresholds for the demo on validation identities never seen in training.
MIN_AU_F1, MIN_EXPR_F1, MIN_MEAN_CCC = 0.60, 0.60, 0.50


@pytest.mark.slow
def test_demo_reaches_the_thresholds_on_unseen_identities(tmp_path):
    workdir = str(tmp_path / "demo")
    start = time.perf_counter()
    proc = run_main(["--config=configs/abaw.py:demo", f"--workdir={workdir}",
                     f"--config.data.synthetic.cache_dir={tmp_path / 'cache'}"], timeout=3600)
    print(f"demo: {time.perf_counter() - start:.0f} s\n{proc.stdout[-3000:]}")
    eval_dir = os.path.join(workdir, "eval")
    last = max(os.listdir(eval_dir), key=int)
    with open(os.path.join(eval_dir, last, "metrics.json")) as f:
        m = json.load(f)
    chance = m["chance"]
    assert m["au_f1"] >= MIN_AU_F1 and m["au_f1"] > chance["au_all_ones"]["au_f1"] + 0.2
    assert m["expr_f1"] >= MIN_EXPR_F1 and m["expr_f1"] > chance["expr_majority"]["expr_f1"] + 0.2
    assert (m["ccc_v"] + m["ccc_a"]) / 2 >= MIN_MEAN_CCC
