"""Choosing the training task: `config.task` names a module of pasn_jax/tasks; a config or workdir without the key
is a PASN one; a workdir made for one task refuses another."""

import json

import ml_collections
import pytest

from configs import abaw
from pasn_jax import tasks, workdir_config
from pasn_jax.tasks import pasn as pasn_task


def test_config_task_picks_the_module_and_a_missing_key_means_pasn():
    assert tasks.load(abaw.get_config("smoke")) is pasn_task
    without = ml_collections.ConfigDict({k: v for k, v in abaw.get_config("smoke").items() if k != "task"})
    assert tasks.load(without) is pasn_task


def test_an_unknown_task_is_named():
    config = abaw.get_config("smoke")
    config.task = "segmentation"
    with pytest.raises(ValueError, match=r"config.task: expected one of .*pasn.*, got 'segmentation'"):
        tasks.load(config)


def test_a_workdir_saved_before_the_task_key_existed_still_resumes(tmp_path):
    config = abaw.get_config("smoke")
    saved = json.loads(config.to_json())
    del saved["task"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    workdir_config.check(str(tmp_path), config)  # no error: the old workdir trained PASN
    config.task = "other"
    with pytest.raises(workdir_config.IncompatibleWorkdirError, match=r"task: 'pasn' -> 'other'"):
        workdir_config.check(str(tmp_path), config)
