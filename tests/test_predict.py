"""`python -m pasn_jax.predict` and `Predictor` on real face photographs (scikit-image's astronaut, as in
test_faces.py) with a smoke-trained PASN: the CSV's rows, boxes and values, which equal `tasks/pasn._predict` on
the same aligned face prepared independently; faceless and unreadable inputs; a video's frames and tracks."""

import csv
import os

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from configs import abaw
from pasn_jax import predict
from pasn_jax.faces import align, boxes
from pasn_jax.faces.detector import Detector
from pasn_jax.faces.video import write_video
from pasn_jax.labels import AU_NAMES, EXPR_NAMES
from pasn_jax.predictions import read_predictions
from pasn_jax.tasks import pasn as pasn_task
from runs import SMOKE_STEPS, load_state

ASTRONAUT_FACE = np.array([176.0, 60.0, 272.0, 178.0])  # as test_faces.py: forehead to chin, cheek to cheek
HEAD = (slice(0, 200), slice(96, 352))  # the astronaut's head, without the suit's ring (a second "face")
HEAD_FACE = ASTRONAUT_FACE - [96.0, 0.0, 96.0, 0.0]
AU_COLUMNS = [f"prob_{a}" for a in AU_NAMES]
EXPR_COLUMNS = [f"prob_{e}" for e in EXPR_NAMES]


@pytest.fixture(scope="module")
def workdir(smoke_run) -> str:
    """The suite's smoke-trained PASN workdir (read only here)."""
    return smoke_run[0]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("inputs")
    head = skimage.data.astronaut()[HEAD]
    paths = {name: str(folder / name) for name in ("astronaut.png", "grey.png", "broken.jpg", "clip.mp4")}
    Image.fromarray(head).save(paths["astronaut.png"])
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(paths["grey.png"])
    with open(paths["broken.jpg"], "wb") as f:
        f.write(b"not an image")
    write_video(paths["clip.mp4"], [np.roll(head, 3 * i, axis=1) for i in range(3)])
    return paths


def _expected(workdir: str, image: np.ndarray, landmarks=None) -> dict:
    """PASN's outputs on the best face of `image` (or the face at `landmarks`), prepared as the eval pipeline
    prepares a cropped_aligned frame (the smoke set's 48 px crop, bilinear resize to 32 px, (x / 255 - 0.5) / 0.5),
    written here independently."""
    config = abaw.get_config("smoke")
    face = Detector().detect(image)[0]
    crop, _ = align.align(image, face.landmarks if landmarks is None else landmarks, config.data.synthetic.size)
    resized = Image.fromarray(crop).resize((config.data.image_size,) * 2, Image.BILINEAR)
    x = (np.asarray(resized, np.float32) / 255.0 - 0.5) / 0.5
    state = load_state(workdir)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    out = jax.device_get(pasn_task._predict(pasn_task.build_model(config), variables, x[None]))
    return {"box": face.box, **{k: v[0] for k, v in out.items()}}


def _rows(out) -> list[dict]:
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _floats(row: dict, columns) -> np.ndarray:
    return np.array([float(row[c]) for c in columns])


def test_cli_rows_values_and_bad_inputs(workdir, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predict, "PROGRESS_SECONDS", 0.0)  # a progress line after every batch
    out = str(tmp_path / "out")
    order = ["astronaut.png", "grey.png", "broken.jpg", "clip.mp4"]
    code = predict.main(["--workdir", workdir, "--out", out, "--overlay", "--batch", "1"]
                        + [inputs[n] for n in order])
    assert code == 1  # broken.jpg could not be read; the others are still written
    printed = capsys.readouterr()
    assert "trained on the synthetic Aff-Wild2" in printed.out and "mean nothing" in printed.out
    assert printed.err.splitlines() == [f"{inputs['grey.png']}: no face in 1 frame(s)",
                                        f"error: {inputs['broken.jpg']}: not a readable image (UnidentifiedImageError)"]
    assert "clip: 1/3 frames" in printed.out and "ETA" in printed.out
    assert sorted(os.listdir(out)) == ["overlays", "predictions.csv"]  # the temporary file renamed
    assert sorted(os.listdir(os.path.join(out, "overlays", "clip"))) == ["00001.jpg", "00002.jpg", "00003.jpg"]

    rows = _rows(out)
    assert list(rows[0]) == predict.COLUMNS
    assert [(r["input"], r["frame"], r["track"], r["status"]) for r in rows] == [
        (inputs["astronaut.png"], "1", "0", "face"), (inputs["grey.png"], "1", "", "no face"),
        (inputs["broken.jpg"], "", "", "unreadable"), (inputs["clip.mp4"], "1", "0", "face"),
        (inputs["clip.mp4"], "2", "0", "face"), (inputs["clip.mp4"], "3", "0", "face")]
    read = read_predictions(os.path.join(out, "predictions.csv"))  # the layout every tool reads: faces only
    assert list(zip(read["video"], read["frame"])) == [("astronaut", 1), ("clip", 1), ("clip", 2), ("clip", 3)]
    face = rows[0]
    np.testing.assert_allclose(read["au_prob"][0], _floats(face, AU_COLUMNS), atol=1e-6)
    box = _floats(face, ["x1", "y1", "x2", "y2"])
    assert boxes.iou(box, HEAD_FACE)[0, 0] > 0.6
    au, expr = _floats(face, AU_COLUMNS), _floats(face, EXPR_COLUMNS)
    assert np.all((au >= 0) & (au <= 1)) and abs(expr.sum() - 1) < 1e-5
    assert face["expression"] == EXPR_NAMES[int(np.argmax(expr))]

    expected = _expected(workdir, skimage.data.astronaut()[HEAD])
    np.testing.assert_allclose(box, expected["box"], atol=1e-6)
    np.testing.assert_allclose(au, expected["au_prob"], atol=1e-5)
    np.testing.assert_allclose(expr, expected["expr_prob"], atol=1e-5)
    np.testing.assert_allclose(_floats(face, ["pred_valence", "pred_arousal"]), expected["va_pred"], atol=1e-5)
    shifted = [_floats(r, ["x1", "x2"]) - 3 * (int(r["frame"]) - 1) for r in rows[3:]]  # the video's head moves
    np.testing.assert_allclose(shifted, [box[[0, 2]]] * 3, atol=3.0)


def test_predictor_api(workdir, inputs):
    predictor = predict.Predictor.from_workdir(workdir)
    assert (predictor.step, predictor.crop_size, predictor.image_size) == (SMOKE_STEPS, 48, 32)
    head = skimage.data.astronaut()[HEAD]
    grey = np.full((96, 128, 3), 128, np.uint8)
    records = predictor.predict_images([grey, head, head[:, ::-1]], name="photos")
    assert [(r["input"], r["frame"], r["track"]) for r in records] == [("photos", 2, 0), ("photos", 3, 0)]
    expected = _expected(workdir, head, np.array(records[0]["landmarks"]))  # batched detection: other landmarks
    np.testing.assert_allclose(records[0]["expr_prob"], expected["expr_prob"], atol=1e-5)
    np.testing.assert_allclose([records[0]["valence"], records[0]["arousal"]], expected["va_pred"], atol=1e-5)
    assert len(records[0]["au_prob"]) == 12 and len(records[0]["landmarks"]) == 5
    mirrored = records[1]["box"]
    assert boxes.iou(np.array(mirrored), [head.shape[1] - HEAD_FACE[2], HEAD_FACE[1], head.shape[1] - HEAD_FACE[0],
                                          HEAD_FACE[3]])[0, 0] > 0.6
    video = predictor.predict_video(inputs["clip.mp4"])
    assert [(r["input"], r["frame"], r["track"]) for r in video] == [(inputs["clip.mp4"], f, 0) for f in (1, 2, 3)]
