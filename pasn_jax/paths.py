"""Paths of workdirs and data: a local folder or an object store (`gs://BUCKET/...`), one type for both
(`etils.epath.Path`, the one Orbax uses). Local paths need nothing more; `gs://` needs the `gcs` extra
(requirements-gcs.txt: gcsfs, and google-cloud-storage for the TensorBoard events). `check` answers a path the
installed file systems cannot serve, a bucket that cannot be reached and one that refuses access in one line, before
any work starts.

Writes never leave half a file where a reader looks: a local file is written under a temporary name and renamed; an
object store's object appears whole when its upload completes (readers see the old object or the new one).
"""

import logging
import os
import shutil
import socket
import urllib.parse
from collections.abc import Callable, Iterable

from etils import epath

SCHEMES = ("gs",)  # the object stores the project serves (and tests, against a GCS emulator)
EXTRA = "pip install -r requirements-gcs.txt"
GCS_ENDPOINT = "https://storage.googleapis.com"  # or $STORAGE_EMULATOR_HOST, as the GCS client libraries read it


class PathError(ValueError):
    """A path the project cannot read or write; the message names it and what was expected."""


def path(p, *parts) -> epath.Path:
    """`p` (joined with `parts`) as a path, a local one with `~` expanded."""
    text = os.fspath(p)
    return epath.Path(text if is_remote(text) else os.path.expanduser(text)).joinpath(*map(str, parts))


def is_remote(p) -> bool:
    """True for an object-store URI (`gs://...`)."""
    return "://" in os.fspath(p)


def scheme(p) -> str:
    """'gs' of `gs://B/x`, '' for a local path."""
    text = os.fspath(p)
    return text.split("://", 1)[0] if is_remote(text) else ""


def join(p, *parts) -> str:
    """`p/part/...` as a string, for local paths and URIs alike."""
    return os.fspath(path(p, *parts))


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def check(p, what: str) -> epath.Path:
    """`p` as a path, once its file system is known to serve it: a scheme other than gs://, gs:// without the `gcs`
    extra, a bucket that does not answer, does not exist or refuses access is a PathError naming `what` (a flag or
    config key) and the path. Local paths are not touched (a missing folder is made when it is written)."""
    text = os.fspath(p)
    if not is_remote(text):
        return path(text)
    where = scheme(text)
    if where not in SCHEMES:
        raise PathError(f"{what}: {text}: the scheme {where}:// is not served (local paths and "
                        f"{', '.join(s + '://' for s in SCHEMES)} are)")
    try:
        import gcsfs  # noqa: F401  (epath's gs:// backend)
    except ImportError:
        raise PathError(f"{what}: {text}: gs:// paths need the gcs extra, not installed here: {EXTRA}") from None
    bucket = text.split("://", 1)[1].split("/", 1)[0]
    if not bucket:
        raise PathError(f"{what}: {text}: expected gs://BUCKET/PATH")
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or GCS_ENDPOINT
    address = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:  # one connection first: the client retries a refused one for about a minute before it says so
        socket.create_connection((address.hostname, address.port or (443 if address.scheme == "https" else 80)),
                                 timeout=10).close()
    except OSError as e:
        raise PathError(f"{what}: {text}: the object store at {endpoint} cannot be reached "
                        f"({_first_line(e)})") from None
    quiet = logging.getLogger("gcsfs")
    level, quiet.level = quiet.level, logging.ERROR  # its retries log tracebacks
    try:
        found = path(f"gs://{bucket}").exists()
    except OSError as e:
        refused = isinstance(e, PermissionError) or str(e).startswith("Forbidden")
        raise PathError(f"{what}: {text}: the bucket gs://{bucket} "
                        f"{'refuses access' if refused else 'cannot be read'} ({_first_line(e)})") from None
    finally:
        quiet.level = level
    if not found:
        raise PathError(f"{what}: {text}: the bucket gs://{bucket} does not exist (make it first)")
    return path(text)


def _replaced(target, write: Callable[[str], object]) -> None:
    """write(tmp) for a temporary name beside local file `target`, then the rename that puts it in place."""
    tmp = f"{target}.tmp-{os.getpid()}"
    write(tmp)
    os.replace(tmp, target)


def write_bytes(p, data: bytes) -> None:
    """Writes `data` to `p` whole (a local file under a temporary name, then renamed; an object in one upload)."""
    if is_remote(p):
        fs, where = _fs(p)
        fs.pipe_file(where, data)
        return
    _replaced(path(p), lambda tmp: epath.Path(tmp).write_bytes(data))


def write_text(p, text: str) -> None:
    """Writes `text` to `p` whole (see write_bytes)."""
    write_bytes(p, text.encode())


def makedirs(p) -> epath.Path:
    """Makes folder `p` and its parents (nothing to make on an object store, where folders are name prefixes)."""
    folder = path(p)
    if not is_remote(folder):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def size(p) -> int:
    """The size of file `p` in bytes."""
    if not is_remote(p):
        return os.path.getsize(p)
    fs, where = _fs(p)
    return int(fs.size(where))


def _fs(p):
    """(fsspec file system, path within it) of a URI: the instance is cached per process by fsspec, so that forked
    input workers open their own connections."""
    import fsspec
    return fsspec.core.url_to_fs(os.fspath(p))


def read_range(p, start: int, stop: int) -> bytes:
    """Bytes [start, stop) of an object-store file: one ranged read, safe from several threads."""
    fs, where = _fs(p)
    return fs.cat_file(where, start=start, end=stop)


def copy_tree(source: str, target, last: Iterable[str] = ()) -> None:
    """Copies local folder `source` into `target` (a local folder or a URI) file by file, the files named in `last`
    (paths relative to `source`) after all others: a reader who waits for those finds the rest whole."""
    last = set(last)
    files = sorted(os.path.relpath(os.path.join(d, f), source) for d, _, fs in os.walk(source) for f in fs)
    for name in sorted(files, key=lambda n: n in last):
        destination = path(target) / name
        makedirs(destination.parent)
        copy_file(os.path.join(source, name), destination)


def copy_file(source: str, target) -> None:
    """Copies local file `source` to `target` whole (a local file under a temporary name, then renamed; an object
    in one upload that appears when it completes)."""
    if is_remote(target):
        fs, where = _fs(target)
        fs.put_file(source, where)
        return
    _replaced(path(target), lambda tmp: shutil.copyfile(source, tmp))
