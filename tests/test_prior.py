"""The prior's pieces (paper §3.2): the synthetic identity and triplet sets say what they show, the DLN embedding stays
finite where f_expr = f_id, and towers move between workdirs (PASN from another run's towers; a tower that does
not fit is one error line naming both sides). The three stages end to end: tests/test_prior_stages.py (slow)."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from runs import load_state, max_abs_difference, run_main, smoke_args

from configs import abaw, common
from pasn_jax import tower_weights
from pasn_jax.data import fec, insightface, verification_bin
from pasn_jax.data.synthetic import identities, triplets
from pasn_jax.models import dln, face_id, pasn, towers


def test_synthetic_identities_hold_each_person_and_honest_pairs(tmp_path):
    root = str(tmp_path / "ids")
    marker = identities.generate(root, identities=5, images=3, held_out=4, pairs=12, size=32, seed=1, processes=1)
    assert marker["num_identities"] == 5 and marker["num_images"] == 15
    records = insightface.IdentityRecords(root)
    photos = [identities.person_photographs(1, p, 3, 32) for p in range(9)]  # 5 trained + 4 held-out people
    assert [(identity, image) for identity, image, _ in records] == [(p, img) for p in range(5) for img in photos[p]]
    images, issame = verification_bin.read_bin(os.path.join(root, identities.VERIFY_FILE))
    assert len(images) == 24 and issame.tolist() == [True, False] * 6
    owner = {img: p for p in range(5, 9) for img in photos[p]}  # held-out people only
    for k, same in enumerate(issame):
        a, b = owner[images[2 * k]], owner[images[2 * k + 1]]
        assert (a == b) == same and (not same or images[2 * k] != images[2 * k + 1])


def test_synthetic_triplets_name_the_face_whose_aus_differ_most(tmp_path):
    root = str(tmp_path / "fec")
    marker = triplets.generate(root, people=8, images=5, test_people=4, train_triplets=30, test_triplets=6,
                               size=32, seed=2, processes=1)
    assert marker["train"]["types"] == {name: 10 for name in triplets.TYPE_NAMES.values()}
    faces = {f"{p:05d}_{k:02d}.jpg": (p, face) for p in range(12)
             for k, face in enumerate(triplets.person_faces(2, p, 5, 32))}
    with open(os.path.join(root, triplets.CSV_FILES["train"])) as f:
        rows = list(csv.reader(f))
    parsed = fec.parse_csv(os.path.join(root, triplets.CSV_FILES["train"]))
    assert len(rows) == len(parsed) == 30
    for t in parsed:
        names = [face.url.rsplit("/", 1)[1] for face in t.faces]
        people = {faces[n][0] for n in names}
        intensity = np.stack([faces[n][1][2] for n in names])
        assert len(people) == 3  # three different people: identity cannot tell the odd one out
        assert t.triplet_type == len({faces[n][1][1] for n in names})  # classes in the triplet
        odd = triplets.odd_one_out(intensity)
        assert odd is not None and t.odd_one_out() in (odd, None)  # majority of 6 noisy raters, or a tie
    assert sum(t.odd_one_out() == triplets.odd_one_out(np.stack([faces[f.url.rsplit("/", 1)[1]][1][2]
                                                                   for f in t.faces])) for t in parsed) >= 27
    truth = triplets.face_labels(root, "train")  # as fec.convert keeps them: majority's odd face last, ties dropped
    kept = [t for t in parsed if t.odd_one_out() is not None]
    assert truth["intensity"].shape == (len(kept), 3, 12) and truth["expr"].shape == (len(kept), 3)
    for t, intensity, expr, kind in zip(kept, truth["intensity"], truth["expr"], truth["triplet_type"]):
        order = [k for k in range(3) if k != t.odd_one_out()] + [t.odd_one_out()]
        shown = [faces[t.faces[k].url.rsplit("/", 1)[1]][1] for k in order]
        np.testing.assert_array_equal(intensity, np.stack([face[2] for face in shown]))
        assert expr.tolist() == [face[1] for face in shown] and kind == t.triplet_type


def test_odd_one_out_needs_a_clearly_closest_pair():
    neutral = np.zeros((3, 12))
    assert triplets.odd_one_out(neutral) is None  # three equal faces: no pair is closer than another
    faces = np.zeros((3, 12))
    faces[2, 0] = 1.0  # faces 0 and 1 equal, face 2 apart
    assert triplets.odd_one_out(faces) == 2
    faces[1, 0] = 0.5  # distances 0.5 (0-1), 1 (0-2), 0.5 (1-2): a tie for the closest pair
    assert triplets.odd_one_out(faces) is None
    faces[1, 0], faces[2, :2] = 0.5 * triplets.CLEAR_RATIO, (0.5 * triplets.CLEAR_RATIO, 0.5)
    assert triplets.odd_one_out(faces) is None  # 0-1 exactly CLEAR_RATIO x 1-2 (0.5), the next closest: not clear
    faces[1, 0] -= 0.01
    assert triplets.odd_one_out(faces) == 2


def tiny(**overrides):
    config = abaw.get_config("smoke").model
    config.update(overrides)
    return config


def test_dln_embedding_is_finite_where_f_expr_equals_f_id():
    model = dln.build_model(tiny(), 16)
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    variables = towers.copy_tower(variables, src="f_id", dst="f_expr")

    def norm(v):
        out = model.apply(v, x, train=False)
        return jnp.sum(out["embedding"]), out

    (total, out), grads = jax.jit(jax.value_and_grad(norm, has_aux=True))(variables)
    assert np.all(out["deviation"] == 0)  # Emb = f_expr - f_id = 0 in inference mode
    assert np.all(np.isfinite(out["embedding"])) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert out["embedding"].shape == (2, 16)


def test_face_identity_network_scores_cosines_of_every_identity():
    model = face_id.build_model(tiny(), 7)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    out = model.apply(variables, jax.random.normal(jax.random.key(1), (3, 32, 32, 3)))
    assert out["cosine"].shape == (3, 7) and np.all(np.abs(out["cosine"]) <= 1 + 1e-5)
    assert set(variables["params"]) == {"backbone", "classifier"}


def test_pasn_starts_from_another_runs_towers(smoke_cache, smoke_run, tmp_path):
    """model.prior_from a workdir holding f_expr and f_id (here a finished PASN run): both towers start from it;
    f_id, frozen, ends as it came."""
    source = load_state(smoke_run[0])
    workdir = str(tmp_path / "w")
    proc = run_main(smoke_args(workdir, smoke_cache, f"--config.model.prior_from={smoke_run[0]}",
                               "--config.num_steps=3", "--config.eval_every=1000"))
    assert "loaded into tower 'f_id'" in proc.stdout and "loaded into tower 'f_expr'" in proc.stdout
    state = load_state(workdir)
    assert max_abs_difference(state.params["prior"]["f_id"], source.params["prior"]["f_id"]) == 0.0
    assert max_abs_difference(state.batch_stats["prior"]["f_id"], source.batch_stats["prior"]["f_id"]) == 0.0
    moved = max_abs_difference(state.params["prior"]["f_expr"], source.params["prior"]["f_expr"])
    assert 0 < moved < 0.5


def pasn_variables(model_config):
    """Shapes of the variables of a PASN of this model config."""
    size = model_config.image_size
    model = pasn.build_model(model_config)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


def test_a_tower_that_does_not_fit_names_both_sides(smoke_run):
    model_config = tiny(width=16)
    current = towers.get_tower(pasn_variables(model_config), "f_id")
    with pytest.raises(tower_weights.TowerSourceError, match=r"width 8.*this model's are .*width 16"):
        tower_weights.load_tower(smoke_run[0], "f_id", current, towers.tower_fields(model_config))
    with pytest.raises(tower_weights.TowerSourceError, match=r"model.prior_from \(x\) and model.weights.f_id"):
        tower_weights.tower_sources(True, "x", {"f_id": "y", "f_expr": ""})
    with pytest.raises(FileNotFoundError, match="no such weight file or workdir"):
        tower_weights.load_tower("/nonexistent/run", "f_id", current, towers.tower_fields(model_config))


def test_a_tower_of_another_image_size_is_adapted(smoke_run, capsys):
    """IResNet's fc reads a grid that grows with the image: a 32-px tower goes into a 64-px model resized (announced),
    as PyTorch checkpoints of 112 px go into 224-px towers."""
    model_config = tiny(image_size=64)
    current = towers.get_tower(pasn_variables(model_config), "f_id")
    loaded = tower_weights.load_tower(smoke_run[0], "f_id", current, towers.tower_fields(model_config))
    assert "fc resized from 64x2x2 to 64x4x4" in capsys.readouterr().out
    assert loaded["params"]["fc"]["kernel"].shape == current["params"]["fc"]["kernel"].shape
    source = load_state(smoke_run[0]).params["prior"]["f_id"]["fc"]["kernel"]  # [64 * 2 * 2, 32]
    resized = np.asarray(loaded["params"]["fc"]["kernel"]).reshape(64, 4, 4, 32)  # [C, G, G, E], NCHW order
    np.testing.assert_allclose(resized[:, ::2, ::2] * 4, source.reshape(64, 2, 2, 32), rtol=1e-6)
    np.testing.assert_allclose(resized[:, 1::2, 1::2], resized[:, ::2, ::2])  # each weight on its 2 x 2 block


def test_demo_configs_share_one_tower():
    from configs import dln as dln_config, face_id as face_id_config
    fields = lambda c: {k: tuple(c.model[k]) if k == "layers" else c.model[k] for k in common.DEMO_TOWER}
    configs = [abaw.get_config("demo"), dln_config.get_config("demo"), face_id_config.get_config("demo")]
    resnet = {k: tuple(v) if k == "layers" else v for k, v in common.DEMO_RESNET_TOWER.items()}
    assert all(fields(c) == resnet for c in configs) and fields(abaw.get_config("demo,no_prior")) == resnet
    long = dln_config.get_config("demo_long")  # the demo's DLN trained longer: a prior for the same PASN
    assert fields(long) == resnet and long.data.image_size == common.DEMO_IMAGE_SIZE
    assert long.num_steps == 2 * long.optim.t0_steps > configs[1].num_steps and long.model.weights.f_id
    assert fields(abaw.get_config("demo,random_prior"))["backbone"] == common.DEMO_TOWER["backbone"] == "iresnet18"
    # DLN and PASN at the demo's size, face identity at half of it (ResNet's global pooling takes either)
    assert [c.data.image_size for c in configs] == [common.DEMO_IMAGE_SIZE] * 2 + [common.DEMO_FACE_ID_IMAGE_SIZE]
    assert common.DEMO_IMAGE_SIZE == 2 * common.DEMO_FACE_ID_IMAGE_SIZE
    assert json.loads(configs[0].to_json())["model"]["prior_from"] == "runs/demo/dln"
