"""The cached synthetic datasets the demo and the tests train on, each rendered in its real dataset's layout and
converted to shards once per argument set, under a cache folder: the Aff-Wild2 tree (PASN), an insightface
identity set with a verification `.bin` (stage 1 of the prior), FEC triplets (stage 2), and the external sets of the
paper's data augmentation (§3.4: BP4D, DFEW, AffectNet), which `config.data.sources` names as synthetic:<name>."""

import os
import shutil
import tempfile
import time
from collections.abc import Callable

from pasn_jax import paths
from pasn_jax.data import affectnet, affwild2, bp4d, dfew, fec, insightface
from pasn_jax.data.synthetic import affectnet as synthetic_affectnet
from pasn_jax.data.synthetic import bp4d as synthetic_bp4d
from pasn_jax.data.synthetic import dfew as synthetic_dfew
from pasn_jax.data.synthetic import identities, tree, triplets

SHARDS_DIR = "shards"
TREE_DIR = "tree"


def _cached(cache_dir: str, name: str, splits: tuple[str, ...], build: Callable[[str], list[str]], what: str) -> str:
    """The folder `cache_dir/name`, built once by `build(tmp)` (which returns lines to print) in a temporary folder
    renamed into place at the end, so an interrupted run leaves nothing that looks finished and concurrent callers
    agree on one result. Done when every split's `<split>.json` is in its shards folder. A cache on an object store
    (gs://) is built in a local temporary folder and uploaded, those `<split>.json` last."""
    final = paths.join(cache_dir, name)
    if all(paths.path(final, SHARDS_DIR, f"{s}.json").is_file() for s in splits):
        print(f"synthetic {what}: using {paths.join(final, SHARDS_DIR)}")
        return final
    start = time.perf_counter()
    if paths.is_remote(cache_dir):
        local = tempfile.mkdtemp(prefix=f".{name}.tmp-")
        try:
            lines = build(os.path.join(local, name))
            paths.copy_tree(os.path.join(local, name), final, last=[f"{SHARDS_DIR}/{s}.json" for s in splits])
        finally:
            shutil.rmtree(local, ignore_errors=True)
    else:
        lines = _build_in_place(cache_dir, name, build)
    print(f"synthetic {what}: {lines[0]}, wrote {paths.join(final, SHARDS_DIR)} in "
          f"{time.perf_counter() - start:.1f} s")
    for line in lines[1:]:
        print("  " + line)
    return final


def _build_in_place(cache_dir: str, name: str, build: Callable[[str], list[str]]) -> list[str]:
    """build(tmp) in a temporary folder of the local `cache_dir`, renamed to `cache_dir/name` at the end."""
    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, name)
    tmp = os.path.join(cache_dir, f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        lines = build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):
                raise
            shutil.rmtree(tmp)  # another process finished the same dataset first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return lines


def prepare_synthetic(cache_dir: str, *, videos: int, frames: int, size: int, seed: int, num_shards: int,
                      test_videos: int = 0, expr_keep: float = 1.0) -> str:
    """The synthetic Aff-Wild2 (rendered, converted; its tree kept beside the shards as `tree/`, for commands that
    read frames from a tree): returns its shards folder. Test videos add a `test` split; `expr_keep` < 1 leaves
    EXPR labels on that share of the training videos only."""
    name = (f"synthetic-v{tree.GENERATOR_VERSION}-{videos}videos{f'+{test_videos}test' if test_videos else ''}-"
            f"{frames}frames-{size}px-seed{seed}-{num_shards}shards{f'-expr{expr_keep:g}' if expr_keep < 1 else ''}")
    splits = affwild2.REQUIRED_SPLITS + (("test",) if test_videos else ())

    def build(tmp):
        marker = tree.generate(os.path.join(tmp, TREE_DIR), videos=videos, frames=frames, size=size, seed=seed,
                               test_videos=test_videos, expr_keep=expr_keep)
        metadata = affwild2.convert(os.path.join(tmp, TREE_DIR), os.path.join(tmp, SHARDS_DIR),
                                    num_shards=num_shards)
        return ([f"rendered {marker['images']} images ({videos} + {test_videos} test videos x {frames} frames, "
                 f"{size} px, seed {seed})"] + [affwild2.describe(metadata[split]) for split in splits])

    return paths.join(_cached(cache_dir, name, splits, build, "Aff-Wild2"), SHARDS_DIR)


def prepare_identities(cache_dir: str, *, people: int, images: int, held_out: int, pairs: int, size: int,
                       seed: int, num_shards: int) -> tuple[str, str]:
    """The synthetic identity set (insightface layout, converted; the verification pairs of held-out people,
    verify.bin, copied beside the shards as the converter copies lfw.bin & co.): returns (shards folder, verify.bin
    path)."""
    name = (f"synthetic-identities-v{tree.GENERATOR_VERSION}-{people}x{images}-{held_out}heldout-{pairs}pairs-"
            f"{size}px-seed{seed}-{num_shards}shards")

    def build(tmp):
        marker = identities.generate(os.path.join(tmp, "insightface"), identities=people, images=images,
                                     held_out=held_out, pairs=pairs, size=size, seed=seed)
        metadata = insightface.convert_identities(os.path.join(tmp, "insightface"), os.path.join(tmp, SHARDS_DIR),
                                                  num_shards=num_shards, source="synthetic")
        shutil.copy(os.path.join(tmp, "insightface", identities.VERIFY_FILE), os.path.join(tmp, SHARDS_DIR))
        return [f"rendered {marker['num_images']} images of {people} people and {pairs} verification pairs of "
                f"{held_out} others ({size} px, seed {seed})",
                f"train: {metadata['num_records']} images of {metadata['num_identities']} identities"]

    final = _cached(cache_dir, name, ("train",), build, "identities")
    return paths.join(final, SHARDS_DIR), paths.join(final, SHARDS_DIR, identities.VERIFY_FILE)


TRIPLETS_ROOT = "fec"  # beside SHARDS_DIR in the cache folder: the rendered FEC layout (CSV, images, labels)


def prepare_triplets(cache_dir: str, *, people: int, images: int, test_people: int, train_triplets: int,
                     test_triplets: int, size: int, seed: int, num_shards: int) -> str:
    """The synthetic FEC triplets (FEC layout, converted: splits train and test): returns the shards folder."""
    name = (f"synthetic-fec-v{tree.GENERATOR_VERSION}.{triplets.TRIPLETS_VERSION}-{people}+{test_people}x{images}-"
            f"{train_triplets}+{test_triplets}triplets-{size}px-seed{seed}-{num_shards}shards")

    def build(tmp):
        root = os.path.join(tmp, TRIPLETS_ROOT)
        marker = triplets.generate(root, people=people, images=images, test_people=test_people,
                                   train_triplets=train_triplets, test_triplets=test_triplets, size=size, seed=seed)
        lines = [f"rendered {marker['train']['faces'] + marker['test']['faces']} faces of {people} + {test_people} "
                 f"people ({size} px, seed {seed})"]
        for split, csv_name in triplets.CSV_FILES.items():
            metadata = fec.convert(os.path.join(root, csv_name), os.path.join(root, triplets.IMAGES_DIR),
                                   os.path.join(tmp, SHARDS_DIR), split, size=size, num_shards=num_shards,
                                   source="synthetic")
            lines.append(fec.describe(metadata))
        return lines

    return paths.join(_cached(cache_dir, name, tuple(triplets.CSV_FILES), build, "FEC triplets"), SHARDS_DIR)


def _external(cache_dir: str, name: str, what: str, generate: Callable[[str], dict], module, convert_options: dict,
              num_shards: int) -> str:
    """An external set rendered by `generate(root)` in its dataset's layout and converted by `module.convert`:
    returns its shards folder."""

    def build(tmp):
        generate(os.path.join(tmp, "tree"))
        metadata = module.convert(os.path.join(tmp, "tree"), os.path.join(tmp, SHARDS_DIR), num_shards=num_shards,
                                  **convert_options)
        return [f"rendered and converted {what}"] + [module.describe(m) for m in metadata.values()]

    return paths.join(_cached(cache_dir, name, ("train",), build, what), SHARDS_DIR)


def prepare_affectnet(cache_dir: str, *, images: int = 2000, val_images: int = 200, size: int = 112, seed: int = 0,
                      num_shards: int = 4, va_range=None) -> str:
    """The synthetic AffectNet (EXPR and VA of new people, one image each), converted: returns its shards folder."""
    name = (f"synthetic-affectnet-v{tree.GENERATOR_VERSION}-{images}+{val_images}images-{size}px-seed{seed}-"
            f"{num_shards}shards{f'-va{va_range[0]:g},{va_range[1]:g}' if va_range else ''}")
    return _external(cache_dir, name, "AffectNet",
                     lambda root: synthetic_affectnet.generate(root, images=images, val_images=val_images, size=size,
                                                               seed=seed),
                     affectnet, dict(size=size, va_range=tuple(va_range) if va_range else None), num_shards)


def prepare_bp4d(cache_dir: str, *, subjects: int = 8, tasks: int = 4, frames: int = 30, size: int = 160,
                 crop: int = 112, seed: int = 0, num_shards: int = 4) -> str:
    """The synthetic BP4D (AU occurrence, whole frames; faces found and cropped at `crop` px), converted."""
    name = (f"synthetic-bp4d-v{tree.GENERATOR_VERSION}-{subjects}x{tasks}x{frames}-{size}px-crop{crop}-seed{seed}-"
            f"{num_shards}shards")
    return _external(cache_dir, name, "BP4D",
                     lambda root: synthetic_bp4d.generate(root, subjects=subjects, tasks=tasks, frames=frames,
                                                          size=size, seed=seed),
                     bp4d, dict(size=crop), num_shards)


def prepare_dfew(cache_dir: str, *, clips: int = 100, frames: int = 16, size: int = 112, seed: int = 0,
                 fold: int = 1, num_shards: int = 4) -> str:
    """The synthetic DFEW (one expression per clip, rising from neutral), fold `fold` converted."""
    name = (f"synthetic-dfew-v{tree.GENERATOR_VERSION}-{clips}x{frames}-{size}px-seed{seed}-fold{fold}-"
            f"{num_shards}shards")
    return _external(cache_dir, name, "DFEW",
                     lambda root: synthetic_dfew.generate(root, clips=clips, frames=frames, size=size, seed=seed),
                     dfew, dict(fold=fold), num_shards)


# The synthetic external sets `config.data.sources` can name as synthetic:<name> (pasn_jax/data/mixture.py):
# name -> prepare function (cache_dir, **config.data.external.<name>) -> shards folder with a train split.
EXTERNAL_SETS: dict[str, Callable[..., str]] = {"affectnet": prepare_affectnet, "bp4d": prepare_bp4d,
                                                "dfew": prepare_dfew}
