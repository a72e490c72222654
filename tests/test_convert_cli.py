"""`python -m pasn_jax.data.convert bp4d|dfew|affectnet` on the synthetic sets written in each dataset's layout: one
line of counts per split, or one error line naming what is missing."""

import pytest

from pasn_jax.data import convert, shards
from pasn_jax.data.synthetic import affectnet, bp4d, dfew

GENERATORS = {"bp4d": (bp4d.generate, dict(subjects=1, tasks=1, frames=6)),
              "dfew": (dfew.generate, dict(clips=5, frames=3, size=32)),
              "affectnet": (affectnet.generate, dict(images=8, val_images=6, size=32))}
SPLITS = {"bp4d": ["train"], "dfew": ["train", "test"], "affectnet": ["train", "val"]}
# The options the README's commands pass (BP4D's --workers with 2 processes: this machine's cores)
OPTIONS = {"bp4d": ["--workers", "2"], "dfew": ["--fold", "1", "--frames-per-clip", "16"],
           "affectnet": ["--va-range=-1,-0.25"]}  # "=": the value starts with a minus


@pytest.mark.parametrize("dataset", sorted(GENERATORS))
def test_cli_converts_the_synthetic_layout(dataset, tmp_path, capsys):
    generate, sizes = GENERATORS[dataset]
    root, out = str(tmp_path / "root"), str(tmp_path / "shards")
    generate(root, seed=1, **sizes)
    assert convert.main([dataset, "--root", root, "--out", out, "--num-shards", "2", *OPTIONS[dataset]]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed[:-1]] == SPLITS[dataset] and printed[-1].startswith("wrote")
    for split in SPLITS[dataset]:
        metadata = shards.read_metadata(out, split)
        assert metadata["source"] == f"synthetic-{dataset}" and len(shards.ShardSource(out, split)) > 0
    if dataset == "affectnet":
        assert shards.read_metadata(out, "train")["va_range"] == [-1.0, -0.25]


@pytest.mark.parametrize("dataset", sorted(GENERATORS))
def test_cli_names_a_missing_layout_in_one_line(dataset, tmp_path, capsys):
    assert convert.main([dataset, "--root", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "absent" in err[0]
