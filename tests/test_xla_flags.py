"""The XLA flags main.py adds before JAX starts: appended to the user's, never overriding a flag the user set."""

import os

from pasn_jax import xla_flags


def test_recommended_flags_are_appended_and_user_flags_win(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    xla_flags.add_xla_flags()
    assert xla_flags.RECOMMENDED[0] in os.environ["XLA_FLAGS"].split()
    assert "--xla_force_host_platform_device_count=8" in os.environ["XLA_FLAGS"].split()

    user = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_NONE"
    monkeypatch.setenv("XLA_FLAGS", user)
    xla_flags.add_xla_flags()
    assert os.environ["XLA_FLAGS"] == user
