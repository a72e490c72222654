"""pasn_jax.faces: MTCNN weights read without code, the flax networks against a plain numpy forward, detection and
alignment on real face photographs, tracks, video frames and the crop CLI.

Face photographs are ones that registry packages ship (no download): `skimage/data/astronaut.png` (Eileen Collins,
NASA, public domain; `skimage.data.astronaut()`), matplotlib's `mpl-data/sample_data/grace_hopper.jpg` (Grace
Hopper, US Navy, public domain; `matplotlib.cbook.get_sample_data`) and `skimage/data/lfw_subset.npy`
(`skimage.data.lfw_subset()`: its first 100 entries are 25x25 grey frontal faces from Labeled Faces in the Wild).
Backgrounds and faceless photos are skimage.data photos without people.
"""

import glob
import os
import pickle

import av
import lz4.frame
import numpy as np
import pytest
import skimage.data
from matplotlib import cbook
from PIL import Image, ImageDraw, ImageFilter

from pasn_jax.data import affwild2
from pasn_jax.faces import __main__ as faces_cli
from pasn_jax.faces import align, boxes, crop, networks, track, weights
from pasn_jax.faces.detector import Detector, FaceInputError
from pasn_jax.faces.video import Video, write_video

# Hand-annotated in astronaut.png (continuous pixels): iris centres, and the face (forehead to chin, cheek to cheek).
ASTRONAUT_EYES = np.array([[203.0, 102.0], [246.8, 103.4]])
ASTRONAUT_FACE = np.array([176.0, 60.0, 272.0, 178.0])
ASTRONAUT_HEAD = (222.0, 105.0, 80.0, 92.0)  # ellipse (cx, cy, rx, ry) around head and hair, not the suit
# The same in grace_hopper.jpg (glasses on: the iris centres behind them); the head ellipse includes her cap.
HOPPER_EYES = np.array([[222.0, 190.0], [305.6, 186.9]])
HOPPER_FACE = np.array([170.0, 130.0, 355.0, 335.0])
HOPPER_HEAD = (262.0, 185.0, 112.0, 160.0)
KINDS = ("astronaut", "hopper", "lfw")  # scene i shows KINDS[i % 3]
FACELESS = ["coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "brick", "grass", "gravel", "moon", "coins",
            "page", "text", "immunohistochemistry", "cell", "colorwheel"]
BACKGROUNDS = [n for n in FACELESS if n != "chelsea"]  # a cat's face is not a background
CANVAS = 576  # fits a 400 px face turned by 30 degrees
MATCH_IOU = 0.3


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


def _rgb(array) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(array[..., None], 3, -1) if array.ndim == 2 else np.ascontiguousarray(array[..., :3])


# The numpy reference: the layer definitions of the mtcnn package's Keras models (mtcnn/network/*.py), written
# directly on the Keras weight lists (the same arrays, in get_weights() order), not on pasn_jax.faces.networks.
def _conv(x, kernel, bias):
    k = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # [N, H', W', C, k, k]
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel, optimize=True) + bias


def _prelu(x, alpha):
    return np.where(x >= 0, x, alpha.reshape(-1) * x)


def _max_pool(x, k, stride, padding):
    """Keras/TF MaxPooling2D: 'same' pads -inf, the larger half after; 'valid' drops the remainder."""
    if padding == "same":
        pads = []
        for size in x.shape[1:3]:
            total = max((-(-size // stride) - 1) * stride + k - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    return windows.max(axis=(-2, -1))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _flatten(x):  # Permute((2, 1, 3)) then Flatten
    return x.transpose(0, 2, 1, 3).reshape(len(x), -1)


def _numpy_pnet(w, x):
    x = _max_pool(_prelu(_conv(x, w[0], w[1]), w[2]), 2, 2, "same")
    x = _prelu(_conv(x, w[3], w[4]), w[5])
    x = _prelu(_conv(x, w[6], w[7]), w[8])
    return _conv(x, w[9], w[10]), _softmax(_conv(x, w[11], w[12]))[..., 1]


def _numpy_rnet(w, x):
    x = _max_pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, "same")
    x = _max_pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, "valid")
    x = _flatten(_prelu(_conv(x, w[6], w[7]), w[8]))
    x = _prelu(x @ w[9] + w[10], w[11])
    return x @ w[12] + w[13], _softmax(x @ w[14] + w[15])[:, 1]


def _numpy_onet(w, x):
    x = _max_pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, "same")
    x = _max_pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, "valid")
    x = _max_pool(_prelu(_conv(x, w[6], w[7]), w[8]), 2, 2, "same")
    x = _flatten(_prelu(_conv(x, w[9], w[10]), w[11]))
    x = _prelu(x @ w[12] + w[13], w[14])
    return x @ w[15] + w[16], x @ w[17] + w[18], _softmax(x @ w[19] + w[20])[:, 1]


def test_weights_are_read_as_plain_arrays():
    arrays = weights.load_all()
    assert [a.shape for a in arrays["pnet"]][:3] == [(3, 3, 3, 10), (10,), (1, 1, 10)]
    assert [len(arrays[n]) for n in weights.NETWORKS] == [13, 16, 21]
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for n in weights.NETWORKS for a in arrays[n])
    joblib = pytest.importorskip("joblib")  # the reference reader (it may run code; the package's own file)
    for name in weights.NETWORKS:
        expected = joblib.load(os.path.join(weights.weights_dir(), f"{name}.lz4"))
        assert all(np.array_equal(a, b) for a, b in zip(arrays[name], expected, strict=True))


def test_weights_reader_refuses_other_globals(tmp_path):
    path = str(tmp_path / "evil.lz4")
    with open(path, "wb") as f:
        f.write(lz4.frame.compress(pickle.dumps([os.getcwd])))  # a callable: posix.getcwd
    with pytest.raises(weights.WeightsError, match=r"evil\.lz4: refusing the pickled global 'posix\.getcwd'"):
        weights.read_arrays(path)
    with open(path, "wb") as f:
        f.write(b"not lz4")
    with pytest.raises(weights.WeightsError, match="evil.lz4: not an lz4 frame"):
        weights.read_arrays(path)


def test_flax_networks_match_numpy_reference():
    arrays = weights.load_all()
    rng = np.random.default_rng(0)
    params = {n: networks.params_from_arrays(n, arrays[n]) for n in weights.NETWORKS}
    x = rng.uniform(-1, 1, (2, 31, 46, 3)).astype(np.float32)  # odd and even sizes: both 'same' pooling cases
    diffs = [np.abs(np.asarray(a) - b).max()
             for a, b in zip(networks.PNet().apply(params["pnet"], x), _numpy_pnet(arrays["pnet"], x))]
    x = rng.uniform(-1, 1, (5, 24, 24, 3)).astype(np.float32)
    diffs += [np.abs(np.asarray(a) - b).max()
              for a, b in zip(networks.RNet().apply(params["rnet"], x), _numpy_rnet(arrays["rnet"], x))]
    x = rng.uniform(-1, 1, (5, 48, 48, 3)).astype(np.float32)
    diffs += [np.abs(np.asarray(a) - b).max()
              for a, b in zip(networks.ONet().apply(params["onet"], x), _numpy_onet(arrays["onet"], x))]
    print(f"flax vs numpy max abs difference: {max(diffs):.2e}")
    assert max(diffs) <= 1e-4


def test_padded_pnet_equals_unpadded():
    params = networks.params_from_arrays("pnet", weights.load_all()["pnet"])
    rng = np.random.default_rng(1)
    padded = rng.uniform(-1, 1, (2, 48, 64, 3)).astype(np.float32)  # garbage outside the valid part
    valid = np.array([[31, 45], [48, 64]], np.int32)
    regression, probability = networks.PNet().apply(params, padded, valid)
    alone_regression, alone_probability = networks.PNet().apply(params, padded[:1, :31, :45])
    h, w = alone_probability.shape[1:]
    np.testing.assert_allclose(np.asarray(probability)[0, :h, :w], alone_probability[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(regression)[0, :h, :w], alone_regression[0], atol=1e-5)


def _backgrounds() -> list[np.ndarray]:
    return [_rgb(getattr(skimage.data, name)()) for name in BACKGROUNDS]


def _hopper() -> np.ndarray:
    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))


def _face_source(rng, kind: str):
    """(patch, mask, face box, eyes or None) in patch coordinates."""
    if kind in ("astronaut", "hopper"):
        photo, head, face, eyes = ((skimage.data.astronaut(), ASTRONAUT_HEAD, ASTRONAUT_FACE, ASTRONAUT_EYES)
                                   if kind == "astronaut" else (_hopper(), HOPPER_HEAD, HOPPER_FACE, HOPPER_EYES))
        cx, cy, rx, ry = head
        x0, y0, x1, y1 = int(cx - rx - 20), int(cy - ry - 10), int(cx + rx + 20), int(cy + ry + 10)
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask).ellipse([cx - rx - x0, cy - ry - y0, cx + rx - x0, cy + ry - y0], fill=255)
        mask = np.asarray(mask.filter(ImageFilter.GaussianBlur(4)))
        offset = np.array([x0, y0, x0, y0], np.float64)
        return photo[y0:y1, x0:x1], mask, face - offset, eyes - offset[:2]
    faces = skimage.data.lfw_subset()[:100]  # the first 100 are faces
    patch = _rgb(faces[rng.integers(len(faces))])
    return patch, np.full(patch.shape[:2], 255, np.uint8), np.array([0.0, 0.0, 25.0, 25.0]), None


def _warp(array, matrix, size):
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    return np.asarray(Image.fromarray(array).transform((size, size), Image.Transform.AFFINE,
                                                       tuple(inverse.reshape(-1)), Image.Resampling.BILINEAR))


def make_scene(rng, kind: str, backgrounds):
    """A face (turned by +-30 degrees, 40-400 px tall, anywhere) pasted on a random part of a faceless photo:
    (image, face box (axis-aligned around the turned box), eyes or None)."""
    background = backgrounds[rng.integers(len(backgrounds))]
    h, w = background.shape[:2]
    side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    canvas = Image.fromarray(background[top:top + side, left:left + side]).resize((CANVAS, CANVAS))
    patch, mask, box, eyes = _face_source(rng, kind)
    scale = np.exp(rng.uniform(np.log(40), np.log(400))) / (box[3] - box[1])
    angle = np.deg2rad(rng.uniform(-30, 30))
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = (box[:2] + box[2:]) / 2
    corners = (np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]) - centre) @ rotation.T
    low, high = corners.min(0), corners.max(0)
    shift = np.array([rng.uniform(-low[0], CANVAS - high[0]), rng.uniform(-low[1], CANVAS - high[1])])
    matrix = np.concatenate([rotation, (shift - rotation @ centre)[:, None]], axis=1)
    alpha = _warp(mask, matrix, CANVAS).astype(np.float32)[..., None] / 255
    image = np.asarray(canvas, np.float32) * (1 - alpha) + _warp(patch, matrix, CANVAS) * alpha
    truth = np.concatenate([low + shift, high + shift])
    return image.round().astype(np.uint8), truth, None if eyes is None else align.apply(matrix, eyes)


def _evaluate(detector, count: int, seed: int) -> dict:
    """Scene i shows KINDS[i % 3]; recall per source and over the two photographs, false positives per image over all
    (any detection not matching the face, duplicates included), the worst and median eye error after alignment."""
    rng, backgrounds = np.random.default_rng(seed), _backgrounds()
    found, shown, false_positives, eye_errors = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0), 0, []
    for i in range(count):
        kind = KINDS[i % 3]
        shown[kind] += 1
        image, truth, eyes = make_scene(rng, kind, backgrounds)
        faces = detector.detect(image)
        overlap = boxes.iou(np.array([f.box for f in faces]).reshape(-1, 4), truth)[:, 0]
        matched = bool(faces) and overlap.max() >= MATCH_IOU
        found[kind] += matched
        false_positives += len(faces) - matched
        if matched and eyes is not None:
            _, matrix = align.align(image, faces[int(overlap.argmax())].landmarks, 224)
            error = np.linalg.norm(align.apply(matrix, eyes) - align.template(224)[:2], axis=1).max() / 224
            eye_errors.append(error)
    result = {**{f"recall_{k}": found[k] / shown[k] for k in KINDS},
              "recall_photographs": (found["astronaut"] + found["hopper"]) / (shown["astronaut"] + shown["hopper"]),
              "recall": sum(found.values()) / count, "false_positives_per_image": false_positives / count,
              "eye_error_max": max(eye_errors), "eye_error_median": float(np.median(eye_errors))}
    print(f"{count} scenes: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return result


def _check(result):
    assert result["recall_photographs"] >= 0.98
    # LFW's 25x25 crops are tight (brows to chin, no head outline), grey, and upscaled up to 16x here: P-Net
    # proposes no box near some of them, R-Net rejects others (600 scenes: 0.950; 0.925 with MTCNN's pyramid scale
    # factor 0.709, and R-Net at 0.6 instead of 0.7 gave no more). Over all scenes recall is 0.983.
    assert result["recall_lfw"] >= 0.85
    assert result["false_positives_per_image"] <= 0.02
    assert result["eye_error_max"] <= 0.05  # eye centres within 5% of the crop size of the template's


def test_detects_and_aligns_transformed_faces(detector):
    _check(_evaluate(detector, 60, seed=0))


@pytest.mark.scale
def test_detects_and_aligns_transformed_faces_at_scale(detector):
    _check(_evaluate(detector, 600, seed=1))


def test_faceless_photos_give_no_face(detector):
    for name in FACELESS:
        assert detector.detect(_rgb(getattr(skimage.data, name)())) == [], name


@pytest.mark.parametrize("kind", ["astronaut", "hopper"])
def test_untouched_photographs(detector, kind):
    photo, face, eyes = ((skimage.data.astronaut(), ASTRONAUT_FACE, ASTRONAUT_EYES) if kind == "astronaut" else
                         (_hopper(), HOPPER_FACE, HOPPER_EYES))
    faces = detector.detect(photo)
    best = faces[0]
    assert boxes.iou(np.array(best.box), face)[0, 0] > 0.6 and best.score > 0.99
    assert np.abs(best.landmarks[:2] - eyes).max() < 4  # left eye (smaller x) first
    assert best.landmarks[2, 1] > best.landmarks[:2, 1].max() and best.landmarks[3, 0] < best.landmarks[4, 0]


def test_detect_batch_equals_detect(detector):
    astronaut = skimage.data.astronaut()
    images = [astronaut, astronaut[:300, 60:420], _rgb(skimage.data.coffee()), astronaut[::2, ::2]]
    batched = detector.detect_batch(images)
    for image, faces in zip(images, batched):
        alone = detector.detect(image)
        assert len(alone) == len(faces)
        for a, b in zip(alone, faces):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
    assert batched[2] == [] and len(batched[0]) >= 1


def test_detector_rejects_bad_input(detector):
    with pytest.raises(FaceInputError, match=r"image 1: expected a uint8 RGB array \[H, W, 3\], got float32"):
        detector.detect_batch([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than the smallest window


def test_similarity_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(23.0), 1.7, np.array([12.0, -5.0])
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), shift[0]],
                       [scale * np.sin(angle), scale * np.cos(angle), shift[1]]])
    points = align.TEMPLATE_112 * 0.8 + 40
    np.testing.assert_allclose(align.similarity(points, align.apply(matrix, points)), matrix, atol=1e-9)
    mirrored = points * [-1, 1]  # the best similarity without reflection cannot map these exactly
    assert np.linalg.det(align.similarity(mirrored, points)[:, :2]) > 0
    np.testing.assert_allclose(align.template(224), align.TEMPLATE_112 * 2)
    landmarks = align.apply(np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2], align.template(112))
    crop, found = align.align(skimage.data.astronaut(), landmarks, 112)
    np.testing.assert_allclose(found, matrix, atol=1e-9)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8


def test_tracker_links_boxes_and_ends_tracks():
    tracker = track.Tracker(iou_threshold=0.3, max_missed=2)
    a, b = np.array([0, 0, 10, 10.0]), np.array([50, 50, 70, 70.0])
    assert tracker.update([a, b]) == [0, 1]
    assert tracker.update([b + 2, a + 1]) == [1, 0]  # order of the boxes does not matter
    assert tracker.update([a + 30]) == [2]  # no overlap: a new track; 0 and 1 missed once
    assert tracker.update([]) == [] and tracker.update([]) == []
    assert tracker.update([a, b]) == [3, 4]  # 0 and 1 missed 3 > 2 frames: ended
    assert tracker.update([np.array([0, 0, 10, 16.0])]) == [3]  # IoU 0.625


def test_video_frames_are_numbered_from_one(tmp_path):
    path = str(tmp_path / "clip.mp4")
    frames = [np.full((32, 48, 3), 20 * i, np.uint8) for i in range(6)]
    write_video(path, frames)
    with Video(path) as video:
        assert video.frame_count == 6
        read = list(video)
    assert [n for n, _ in read] == [1, 2, 3, 4, 5, 6]
    assert all(abs(float(image.mean()) - 20 * (n - 1)) < 4 for n, image in read)


def _empty_video(path):
    """An AVI file with a video stream and no frame (the header only)."""
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        container.start_encoding()


def test_crop_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(crop, "PROGRESS_SECONDS", 0.0)  # a progress line after every batch
    astronaut = skimage.data.astronaut()
    head = astronaut[10:200, 120:330]  # 190 x 210, without the suit's ring (a second "face", 0.8-0.9, in the photo)
    inputs = tmp_path / "in"
    (inputs / "frames").mkdir(parents=True)
    Image.fromarray(head).save(inputs / "person.png")
    Image.fromarray(_rgb(skimage.data.coffee())[:200, :200]).save(inputs / "coffee.jpg")
    for i, shift in enumerate([0, 6, 12]):
        Image.fromarray(np.roll(head, shift, axis=1)).save(inputs / "frames" / f"img{i}.jpg")
    pair = np.concatenate([head, head], axis=1)  # two people side by side: two tracks
    write_video(str(inputs / "pair.mp4"), [np.roll(pair, 2 * i, axis=1) for i in range(4)])
    (inputs / "broken.png").write_bytes(b"not an image")
    _empty_video(str(inputs / "empty.avi"))
    out = tmp_path / "out"
    argv = ["crop", "--out", str(out), "--size", "112", "--batch", "1"] + [str(inputs / n) for n in
                                                           ["person.png", "coffee.jpg", "frames", "pair.mp4",
                                                            "broken.png", "empty.avi"]]
    assert faces_cli.main(argv) == 1  # two inputs could not be read
    printed = capsys.readouterr().out
    root = out / affwild2.IMAGES_DIR
    assert sorted(os.listdir(root)) == ["frames", "pair_1", "pair_2", "person"]
    assert sorted(os.listdir(root / "frames")) == ["00001.jpg", "00002.jpg", "00003.jpg"]
    assert sorted(os.listdir(root / "pair_1")) == sorted(os.listdir(root / "pair_2")) == \
        ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"]
    assert os.listdir(root / "person") == ["00001.jpg"]
    assert Image.open(root / "person" / "00001.jpg").size == (112, 112)
    assert "coffee.jpg: no face in 1 frame(s)" in printed
    assert "broken.png: not a readable image" in printed
    assert "empty.avi: a video without frames" in printed
    assert "pair: 2/4 frames" in printed and "ETA" in printed
    assert f"no face in 1 input(s): {inputs / 'coffee.jpg'}" in printed
    assert faces_cli.main(["crop", "--out", str(out), str(inputs / "person.png")]) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().out


@pytest.mark.scale
def test_synthetic_renderer_detection_rate(detector, tmp_path):
    """Does MTCNN see the project's synthetic faces (pasn_jax.data.synthetic)? 40 videos of 8 frames at 112 px
    (README's figure: 281 of 317 frames; 34 videos in every frame, one in none)."""
    from pasn_jax.data.synthetic import tree
    root = str(tmp_path / "synthetic")
    tree.generate(root, videos=40, frames=8, size=112, seed=0)
    paths = sorted(glob.glob(os.path.join(root, "cropped_aligned", "*", "*.jpg")))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    hits = [bool(faces) for faces in detector.detect_batch(images)]
    by_video: dict[str, list[bool]] = {}
    for path, hit in zip(paths, hits):
        by_video.setdefault(os.path.basename(os.path.dirname(path)), []).append(hit)
    print(f"synthetic renderer: faces found in {sum(hits)}/{len(images)} frames at 112 px; in every frame of "
          f"{sum(all(v) for v in by_video.values())} of {len(by_video)} videos, in none of "
          f"{sum(not any(v) for v in by_video.values())}")
    assert sum(hits) >= 0.85 * len(images) and sum(all(v) for v in by_video.values()) >= 30
