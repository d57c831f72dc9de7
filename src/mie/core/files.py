"""Writing files atomically (a reader sees the old content or the new, never a part), and
reading small input files without ever blocking."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from mie.core.errors import ErrorCode, MieError

TEMPORARY_PREFIX = ".tmp-"
"""Name prefix of the temporary file :func:`atomic_write` renames into place (a directory
that finds ``.tmp-*`` leftovers after a crash may delete them)."""


class NotARegularFileError(MieError, OSError):
    """:func:`atomic_write` was given a destination that exists and is not a regular file (a
    device, a FIFO, a directory, a socket, a symbolic link); nothing was written.

    Also an :class:`OSError` (``EEXIST``, with ``filename``), what the writer raised before for
    a file it could not write, so callers that turn an :class:`OSError` into a usage error keep
    doing so. ``code`` is ``usage``: the caller named the wrong path.
    """

    code = ErrorCode.USAGE

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(errno.EEXIST, f"{kind}, not a regular file: not replaced", os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def check_destination(path: str | os.PathLike[str]) -> None:
    """Refuse a destination that exists and is not a regular file (see :func:`atomic_write`).

    :raises NotARegularFileError: it is a device, FIFO, directory, socket or symbolic link.
    :raises OSError: it cannot be examined (other than being absent).
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(path, _kind(mode))


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, parents: bool = True
) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    The bytes go to a temporary file in the same directory, which is
    flushed to disk, given ``mode``, and renamed over ``path``; the directory is then flushed
    too, so the rename survives a crash.

    A destination that exists and is not a regular file is refused before anything is written:
    the rename would replace a device (``/dev/null`` for root), a FIFO, a socket or an empty
    directory with a file. A symbolic link is refused too: the rename replaces the link itself,
    not the file it names, so the write would not go where the link points (the file there
    keeps its old content) and the link would be gone; and a link planted in a shared
    directory must not decide where the bytes go. (The check runs before the rename, not
    atomically with it: it stops a mistaken path, not a race by someone who can write to the
    directory.)

    :param path: the destination file.
    :param data: the whole new content.
    :param mode: the file's permission bits (``0o600`` keeps it private to the user).
    :param parents: create the directory (and its parents) when missing.
    :raises NotARegularFileError: ``path`` exists and is not a regular file (an
        :class:`OSError` too); nothing was written.
    :raises OSError: the file cannot be written (the temporary file is removed).
    """
    target = Path(path)
    check_destination(target)
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


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may take only part of it)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flush ``directory`` so a file just created in it keeps its name after a crash, as its
    contents do. A directory that cannot be opened is left as it is (the file's own writes
    are flushed by its caller)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NotARegularInputError(OSError):
    """:func:`read_regular_file` was given a path that is not a regular file (a FIFO, a device,
    a directory); nothing was read. An :class:`OSError` too, so a caller that turns every
    :class:`OSError` into its own error keeps doing so.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(errno.EINVAL, "not a regular file", os.fspath(path))


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read a small input file: opened non-blocking (a FIFO with no writer never stalls the
    caller), a regular file only (not ``/dev/zero``, which would be read to the bound), at most
    ``limit + 1`` bytes (so the caller sees a file over the limit by its length).

    :param path: the file.
    :param limit: the largest size the caller accepts.
    :return: the bytes read.
    :raises NotARegularInputError: ``path`` is not a regular file.
    :raises OSError: it cannot be opened or read (:class:`FileNotFoundError`: not there).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotARegularInputError(path)
        return handle.read(limit + 1)
