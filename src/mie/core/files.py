"""Writing files atomically: a reader sees the old content or the new, never a part."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMPORARY_PREFIX = ".tmp-"
"""Name prefix of the temporary file :func:`atomic_write` renames into place (a directory
that finds ``.tmp-*`` leftovers after a crash may delete them)."""


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, parents: bool = True
) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    The bytes go to a temporary file in the same directory, which is
    flushed to disk, given ``mode``, and renamed over ``path``; the directory is then flushed
    too, so the rename survives a crash.

    :param path: the destination file.
    :param data: the whole new content.
    :param mode: the file's permission bits (``0o600`` keeps it private to the user).
    :param parents: create the directory (and its parents) when missing.
    :raises OSError: the file cannot be written (the temporary file is removed).
    """
    target = Path(path)
    directory = target.parent
    if parents:
        directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
