"""PyTorch weight import (pasn_jax/models/torch_import.py): random-weight PyTorch IResNet / ResNet-50-layout towers
in eval mode and our converted towers compute the same embeddings; a torch.save'd file goes through
tower_weights.load_tower into a PASN tower; the 112 -> 224 px fc adaptation keeps the fc output; bad files and keys
give one clear error.
Tiny networks (width 8, one block per stage, 32 px)."""

import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # requirements-dev.txt: a test dependency, never a runtime one

from benchmarks import torch_reference
from pasn_jax import tower_weights
from pasn_jax.models import pasn, torch_import, towers
from pasn_jax.models.iresnet import IResNet
from pasn_jax.models.resnet import ResNet

LAYERS, WIDTH, EMBEDDING, SIZE = (1, 1, 1, 1), 8, 32, 32
TOLERANCE = 1e-4  # max abs difference, float32 on both sides


def randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """module in eval mode with every parameter and BN statistic random (a fresh init has BN scale 1, mean 0,
    var 1 and PReLU 0.25, which would leave parts of the mapping untested)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked") or name == "features.weight":
                continue
            if name.endswith("running_var") or (name.endswith(".weight") and tensor.ndim == 1 and "prelu" not in name):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif tensor.ndim == 1:  # biases, running means, PReLU slopes
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=gen))
            else:  # conv / linear weights: unit-variance outputs
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / np.sqrt(tensor[0].numel()))
    return module.eval()


def numpy_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def flax_tower(backbone: str, size: int = SIZE, embedding: int = EMBEDDING):
    """(module, abstract variables): every leaf is read from the state_dict, so shapes and dtypes suffice."""
    cls = IResNet if backbone.startswith("iresnet") else ResNet
    module = cls(LAYERS, width=WIDTH, embedding_dim=embedding)
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    return module, variables


def images(seed: int, size: int = SIZE, batch: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)  # NHWC


def torch_forward(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


@pytest.mark.parametrize("backbone", ["iresnet50", "resnet50"])
def test_converted_random_torch_tower_computes_the_same_embeddings(backbone):
    reference = randomised(torch_reference.build_tower(backbone, WIDTH, LAYERS, EMBEDDING, SIZE), seed=1)
    module, variables = flax_tower(backbone)
    converted = torch_import.tower_from_torch(numpy_state(reference), variables, backbone)
    x = images(2)
    ours = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(converted, x))
    theirs = torch_forward(reference, x)
    assert np.std(theirs) > 0.1  # a non-degenerate embedding
    assert np.max(np.abs(ours - theirs)) <= TOLERANCE


def tiny_pasn(backbone: str, prior: bool, size: int = SIZE, abstract: bool = False):
    config = dict(backbone=backbone, width=WIDTH, layers=LAYERS, embedding_dim=EMBEDDING, image_size=size,
                  prior=prior, streaming=True, dropout=0.0, dtype="float32")
    model = pasn.build_model(type("Config", (), config))
    init = lambda key: model.init(key, jnp.zeros((1, size, size, 3)), train=False)
    return model, (jax.eval_shape(init, jax.random.key(3)) if abstract else jax.jit(init)(jax.random.key(3)))


def load_into(path: str, variables, tower: str, backbone: str):
    """The PASN variables with `tower` read from the PyTorch file, as training starts them."""
    current = towers.get_tower(variables, tower)
    return towers.set_tower(variables, tower, tower_weights.load_tower(path, tower, current, {"backbone": backbone}))


def test_saved_state_dict_loads_into_a_pasn_tower(tmp_path, capsys):
    reference = randomised(torch_reference.build_tower("iresnet18", WIDTH, LAYERS, EMBEDDING, SIZE), seed=4)
    path = tmp_path / "ir.pth"
    # a DataParallel checkpoint inside {'state_dict': ...}, as training scripts often save them
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model, variables = tiny_pasn("iresnet18", prior=True)
    loaded = load_into(str(path), variables, "f_id", "iresnet18")
    assert f"{path}: loaded" in capsys.readouterr().out
    module = IResNet(LAYERS, width=WIDTH, embedding_dim=EMBEDDING)
    x = images(5)
    f_id = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(towers.get_tower(loaded, "f_id"), x))
    assert np.max(np.abs(f_id - torch_forward(reference, x))) <= TOLERANCE
    # the rest of the tree is untouched
    for name in ("f_expr",):
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(
            np.array_equal, towers.get_tower(loaded, name), towers.get_tower(variables, name)))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, loaded["params"]["heads"],
                                                         variables["params"]["heads"]))


def test_torchvision_classifier_fc_is_kept_and_announced(tmp_path, capsys):
    reference = randomised(torch_reference.build_tower("resnet50", WIDTH, LAYERS, 10, SIZE), seed=6)  # 10 classes
    path = tmp_path / "rn.pt"
    torch.save(reference.state_dict(), path)
    _, variables = tiny_pasn("resnet50", prior=False)
    loaded = load_into(str(path), variables, "backbone", "resnet50")
    assert re.search(r"fc\.weight \[10, 256\] is a classifier.*fc keeps its initialisation", capsys.readouterr().out)
    tower, before = towers.get_tower(loaded, "backbone"), towers.get_tower(variables, "backbone")
    np.testing.assert_array_equal(tower["params"]["fc"]["kernel"], before["params"]["fc"]["kernel"])
    np.testing.assert_array_equal(tower["params"]["fc"]["bias"], before["params"]["fc"]["bias"])
    np.testing.assert_array_equal(tower["params"]["conv1"]["kernel"],
                                  reference.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(tower["batch_stats"]["layer4_0"]["bn3"]["var"],
                                  reference.layer4[0].bn3.running_var.numpy())


def test_fc_of_a_smaller_image_size_is_resized_keeping_the_output(capsys):
    reference = randomised(torch_reference.build_tower("iresnet18", WIDTH, LAYERS, EMBEDDING, SIZE), seed=7)
    state = numpy_state(reference)
    _, small = flax_tower("iresnet18", SIZE)
    _, large = flax_tower("iresnet18", 2 * SIZE)
    at_small = torch_import.tower_from_torch(state, small, "iresnet18")
    at_large = torch_import.tower_from_torch(state, large, "iresnet18", source="ir.pth")
    assert "ir.pth: fc.weight resized from 64x2x2 to 64x4x4 inputs (nearest, divided by 4)" in capsys.readouterr().out
    # fc on a feature map [B, 64, 2, 2] equals the resized fc on its 2x nearest upsampling [B, 64, 4, 4]
    features = np.random.default_rng(8).normal(size=(3, 8 * WIDTH, 2, 2)).astype(np.float32)
    upsampled = features.repeat(2, axis=2).repeat(2, axis=3)
    fc_small, fc_large = at_small["params"]["fc"], at_large["params"]["fc"]
    assert fc_large["kernel"].shape == (8 * WIDTH * 16, EMBEDDING)
    np.testing.assert_allclose(upsampled.reshape(3, -1) @ fc_large["kernel"] + fc_large["bias"],
                               features.reshape(3, -1) @ fc_small["kernel"] + fc_small["bias"], atol=1e-5)
    np.testing.assert_allclose(features.reshape(3, -1) @ fc_small["kernel"],
                               features.reshape(3, -1) @ state["fc.weight"].T, atol=1e-5)
    others = lambda tree: {k: v for k, v in tree.items() if k != "fc"}
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, others(at_small["params"]),
                                                         others(at_large["params"])))
    _, odd = flax_tower("iresnet18", 48)  # a 3x3 grid is no multiple of the checkpoint's 2x2
    with pytest.raises(torch_import.TorchImportError, match=r"x\.pth: fc\.weight has 256 inputs.*model\.image_size"):
        torch_import.tower_from_torch(state, odd, "iresnet18", source="x.pth")


@pytest.fixture(scope="module")
def iresnet_state():
    return numpy_state(randomised(torch_reference.build_tower("iresnet18", WIDTH, LAYERS, EMBEDDING, SIZE), 9))


def edited(state, drop=(), **replace):
    out = {k: v for k, v in state.items() if k not in drop}
    out.update({k.replace("__", "."): v for k, v in replace.items()})
    return out


@pytest.mark.parametrize("change,message", [
    (dict(drop=("layer2.0.bn1.running_var",)), "f.pth: missing key 'layer2.0.bn1.running_var'"),
    (dict(extra__weight=np.zeros(3)), "f.pth: unexpected key 'extra.weight'"),
    (dict(conv1__weight=np.zeros((8, 3, 5, 5), np.float32)), "f.pth: conv1.weight has shape [5, 5, 3, 8]"),
    (dict(features__weight=np.full(EMBEDDING, 2.0, np.float32)), "f.pth: features.weight is not all ones"),
])
def test_bad_keys_are_named_with_the_file(iresnet_state, change, message):
    _, variables = flax_tower("iresnet18")
    with pytest.raises(torch_import.TorchImportError, match=re.escape(message)):
        torch_import.tower_from_torch(edited(iresnet_state, **change), variables, "iresnet18", source="f.pth")


def test_iresnet_file_into_a_resnet_tower_is_an_error(iresnet_state):
    _, variables = flax_tower("resnet50")
    with pytest.raises(torch_import.TorchImportError, match=re.escape("f.pth: conv1.weight has shape [3, 3, 3, 8]")):
        torch_import.tower_from_torch(iresnet_state, variables, "resnet50", source="f.pth")
    with pytest.raises(torch_import.TorchImportError, match="backbone: expected one of"):
        torch_import.tower_from_torch(iresnet_state, variables, "vgg16")


def test_bad_files_give_one_clear_error(tmp_path):
    missing = tmp_path / "none.pth"
    with pytest.raises(torch_import.TorchImportError, match=f"{re.escape(str(missing))}: no such file"):
        torch_import.load_state_dict(str(missing))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(torch_import.TorchImportError, match=f"{re.escape(str(text))}: not a PyTorch weights file"):
        torch_import.load_state_dict(str(text))
    wrong = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], wrong)
    with pytest.raises(torch_import.TorchImportError, match=f"{re.escape(str(wrong))}: expected a state_dict"):
        torch_import.load_state_dict(str(wrong))
    _, variables = tiny_pasn("iresnet18", prior=False, abstract=True)
    with pytest.raises(towers.ModelConfigError, match="no 'f_id' tower"):
        load_into(str(wrong), variables, "f_id", "iresnet18")


def test_missing_torch_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(torch_import.TorchImportError, match=re.escape("pip install torch==2.13.0")):
        torch_import.load_state_dict("any.pth")
