"""Atomic folder writes: build into a temp folder next to the target, flush, then ``os.replace``.

A crash or SIGKILL at any moment leaves either the old folder or the complete new one, never a
half-written folder under the target name (leftover ``.tmp-*`` folders are ignored by readers).

``atomic_file`` does the same for one file written by a library (a Parquet writer, ``to_parquet``), and
``exclusive_folder`` creates a folder with its first files in one rename, failing when the folder exists (several
processes starting the same job at once: exactly one creates it)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_file", "atomic_folder", "atomic_write_bytes", "atomic_write_text", "exclusive_folder",
           "fsync_path", "fsync_tree"]


def fsync_path(path: os.PathLike | str) -> None:
    """Flush a file or a directory entry to disk (best effort: some filesystems refuse it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: os.PathLike | str) -> None:
    """Flush every file and folder under ``root``, so a rename publishes complete files even after
    a power loss."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_file(path: os.PathLike | str):
    """Context manager: yields a hidden temporary path (``.tmp-NAME-*``) in the folder of ``path``; when the block
    ends without an exception the file written there is flushed, given the usual umask permissions and renamed to
    ``path`` (``os.replace``: readers see the old file or the complete new one). On an exception the temporary file
    is removed and ``path`` is left as it was. For files written by a library: ``with atomic_file(p) as tmp:
    table.to_parquet(tmp)``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fsync_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: os.PathLike | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temp file in the same folder and ``os.replace``: readers
    see the old file or the complete new one (usual umask permissions)."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: os.PathLike | str, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


class atomic_folder:
    """Context manager: yields a temporary folder next to ``path``; on success it replaces ``path``.

    ``os.replace`` of a directory is atomic on POSIX: readers see the old folder or the complete new
    one, never a partial one. An existing ``path`` is first renamed aside and deleted after the swap.
    On an exception the temporary folder is removed and ``path`` is left as it was.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = True):
        self.path = Path(path).absolute()
        self.overwrite = overwrite
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(f"{self.path} already exists")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{self.path.name}-", dir=self.path.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        _publishable(self.tmp)
        fsync_tree(self.tmp)
        old = None
        if self.path.exists():
            old = self.path.parent / f".old-{self.path.name}-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        fsync_path(self.path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def exclusive_folder(path: os.PathLike | str):
    """Context manager: yields a temporary folder next to ``path``; when the block ends without an exception it is
    renamed to ``path`` — only if ``path`` does not exist: then ``FileExistsError`` (the temporary folder is
    removed). So when several processes try to create the same folder with its first files, exactly one succeeds
    and the others find it complete. An empty folder at ``path`` counts as existing too."""
    path = Path(path).absolute()
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "already exists", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    try:
        yield tmp
        _publishable(tmp)
        fsync_tree(tmp)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "already exists", str(path))
        try:
            os.rename(tmp, path)      # fails on a non-empty folder; an empty one would be replaced: checked above
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(errno.EEXIST, "already exists", str(path)) from e
            raise
        fsync_path(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _publishable(root: Path) -> None:
    """mkdtemp / safetensors create owner-only entries: give the folder the usual umask permissions."""
    umask = _umask()
    for dirpath, dirs, files in os.walk(root):
        os.chmod(dirpath, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o666 & ~umask)
