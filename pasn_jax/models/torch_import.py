"""PyTorch weights -> PASN towers: insightface IResNet and torchvision ResNet-50 `state_dict`s (paper §4.1: the
towers start from face-recognition networks that exist only as PyTorch checkpoints).

The mapping is the one documented in `pasn_jax/models/README.md` ("PyTorch weights: the one-to-one mapping"):
flax path joined with '.', `layerK_J` -> `layerK.J`, `downsample_N` -> `downsample.N`; conv kernels
[out, in, kh, kw] -> [kh, kw, in, out], dense kernels [out, in] -> [in, out]; BN scale/bias/mean/var from
weight/bias/running_mean/running_var. `num_batches_tracked` is dropped; insightface's `features.weight` (fixed at 1,
no flax counterpart) must be all ones.

Two shape differences are handled explicitly, each announced with one printed line:
- torchvision's 1000-way `fc` (resnet50) is not our embedding layer: our initialised `fc` is kept.
- insightface checkpoints are trained at 112 px, so their `fc` reads 512 x 7 x 7 features; at image_size 224 ours
  reads 512 x 14 x 14. The kernel is resized spatially by nearest-neighbour repetition (7 x 7 -> 14 x 14) and divided
  by the area ratio (4): on a feature map that is the 2x nearest upsampling of a 112-px one the fc output is then
  exactly the checkpoint's. Grids that are not integer multiples of the checkpoint's are an error.

torch is imported lazily: it is needed only to read the files, never to train or evaluate.
"""

import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from pasn_jax.models import towers
from pasn_jax.models.iresnet import IRESNET_LAYERS

# (collection, flax leaf name) -> PyTorch tensor name
LEAF_TO_TORCH = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
                 ("params", "negative_slope"): "weight", ("batch_stats", "mean"): "running_mean",
                 ("batch_stats", "var"): "running_var"}
DROPPED_SUFFIX = ".num_batches_tracked"
FIXED_FEATURES_SCALE = "features.weight"  # insightface's BatchNorm1d weight, frozen at 1


class TorchImportError(ValueError):
    """A PyTorch weight file that cannot be read into a tower; the message names the file and the key."""


def _torch():
    try:
        import torch
    except ImportError:
        raise TorchImportError("reading PyTorch weight files needs PyTorch: pip install torch==2.13.0") from None
    return torch


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state_dict file as float32 numpy arrays (integer buffers keep their dtype).

    Reads with torch.load(map_location='cpu', weights_only=True); accepts a bare state_dict or {'state_dict': ...}
    and strips DataParallel's 'module.' prefixes. Raises TorchImportError naming the file if it is not one.
    """
    torch = _torch()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TorchImportError(f"{path}: no such file") from None
    except Exception as e:  # torch raises pickle, zip and RuntimeError variants for non-checkpoints
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise TorchImportError(f"{path}: not a PyTorch weights file readable with weights_only=True ({reason})") \
            from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise TorchImportError(f"{path}: expected a state_dict (a mapping of names to tensors) or "
                               f"{{'state_dict': ...}}, got {type(obj).__name__}")
    state = {}
    for key, tensor in obj.items():
        tensor = tensor.detach()
        state[key.removeprefix("module.")] = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
    return state


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    """The PyTorch state_dict key of the flax leaf at `path` of `collection` ('params' / 'batch_stats')."""
    module = re.sub(r"(layer\d+|downsample)_(\d+)", r"\1.\2", ".".join(path[:-1]))
    return f"{module}.{LEAF_TO_TORCH[collection, path[-1]]}"


def _from_torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    """A PyTorch tensor in the flax layout: conv [out, in, kh, kw] -> [kh, kw, in, out], dense [out, in] ->
    [in, out]."""
    if name == "kernel":
        return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    return value


def _resize_fc(weight: np.ndarray, channels: int, in_features: int, source: str) -> np.ndarray:
    """insightface fc.weight [out, C * g * g] -> [out, C * G * G] for our grid G = r * g: nearest repetition of the
    spatial (g, g) kernel, divided by r^2 so that the output on an r-times nearest-upsampled map is unchanged."""
    out_features, ckpt_features = weight.shape
    g, grid = (round(np.sqrt(n / channels)) for n in (ckpt_features, in_features))
    if channels * g * g != ckpt_features or channels * grid * grid != in_features or grid % g:
        raise TorchImportError(
            f"{source}: fc.weight has {ckpt_features} inputs, this model's fc has {in_features} "
            f"({channels}x{grid}x{grid}); the checkpoint's image size does not divide model.image_size: set "
            f"model.image_size to the checkpoint's (112 for insightface) or an integer multiple of it")
    ratio = grid // g
    print(f"{source}: fc.weight resized from {channels}x{g}x{g} to {channels}x{grid}x{grid} inputs (nearest, "
          f"divided by {ratio * ratio}): the checkpoint was trained at {16 * g} px, this model runs at {16 * grid} px",
          flush=True)
    kernel = weight.reshape(out_features, channels, g, g).repeat(ratio, axis=2).repeat(ratio, axis=3)
    return kernel.reshape(out_features, in_features) / (ratio * ratio)


def _adapt_fc(state: dict, fc: Mapping, channels: int, insightface: bool, source: str) -> None:
    """Makes state's fc fit ours (in place): resnet50 keeps our fc in place of a classifier of another width,
    insightface's fc of a smaller image size is resized."""
    weight = state.get("fc.weight")
    in_features, out_features = fc["kernel"].shape
    if weight is None or weight.shape == (out_features, in_features):
        return
    if not insightface:
        print(f"{source}: fc.weight {list(weight.shape)} is a classifier, not this model's {out_features}-d "
              f"embedding layer: fc keeps its initialisation", flush=True)
        state["fc.weight"], state["fc.bias"] = np.asarray(fc["kernel"]).T, np.asarray(fc["bias"])
    elif weight.ndim == 2 and weight.shape[0] == out_features:
        state["fc.weight"] = _resize_fc(weight, channels, in_features, source)


def tower_from_torch(state_dict: Mapping[str, np.ndarray], tower_variables: Mapping, backbone: str,
                     source: str = "state_dict") -> dict:
    """New tower variables ({'params', 'batch_stats'} as towers.get_tower returns them) with every leaf read from a
    PyTorch state_dict of `backbone`'s layout ('iresnet*': insightface keys, 'resnet50': torchvision keys).

    Every leaf is shape-checked; a missing or unmatched key raises TorchImportError naming the key and `source`
    (the file). resnet50: a torchvision fc of another width (its 1000 classes) keeps our initialised fc (announced).
    iresnet: an fc trained at a smaller image size is resized (see the module docstring; announced).
    """
    if backbone not in towers.BACKBONES:
        raise TorchImportError(f"backbone: expected one of {sorted(towers.BACKBONES)}, got {backbone!r}")
    insightface = backbone in IRESNET_LAYERS
    remaining = {k: np.asarray(v) for k, v in state_dict.items()}
    params = tower_variables["params"]
    channels = params["bn2"]["scale"].shape[0] if insightface else 0  # insightface: the fc input's C of C x g x g
    _adapt_fc(remaining, params["fc"], channels, insightface, source)
    result = {}
    for collection in ("params", "batch_stats"):
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tower_variables[collection])
        new_leaves = []
        for path, leaf in leaves:
            names = tuple(p.key for p in path)
            key = torch_key(collection, names)
            if key not in remaining:
                raise TorchImportError(f"{source}: missing key {key!r} (needed for {collection}/{'/'.join(names)} of "
                                       f"a {backbone} tower)")
            value = _from_torch_layout(names[-1], remaining.pop(key))
            if value.shape != tuple(leaf.shape):
                raise TorchImportError(f"{source}: {key} has shape {list(value.shape)} in the flax layout, the "
                                       f"{backbone} tower expects {list(leaf.shape)} for "
                                       f"{collection}/{'/'.join(names)}")
            new_leaves.append(jnp.asarray(value, dtype=leaf.dtype))
        result[collection] = jax.tree_util.tree_unflatten(treedef, new_leaves)
    if insightface and FIXED_FEATURES_SCALE in remaining:
        if not np.all(remaining.pop(FIXED_FEATURES_SCALE) == 1):
            raise TorchImportError(f"{source}: {FIXED_FEATURES_SCALE} is not all ones (insightface fixes it at 1; "
                                   f"this model has no such scale)")
    unmatched = sorted(k for k in remaining if not k.endswith(DROPPED_SUFFIX))
    if unmatched:
        more = f" (and {len(unmatched) - 1} more)" if len(unmatched) > 1 else ""
        raise TorchImportError(f"{source}: unexpected key {unmatched[0]!r}{more} for a {backbone} tower of this "
                               f"config (wrong backbone, width or layers?)")
    return result
