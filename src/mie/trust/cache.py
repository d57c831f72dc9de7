"""A CRL cache on disk that survives restarts, and downloads over HTTP(S) with deadlines.

Files are written atomically (:func:`mie.core.files.atomic_write`, re-exported here: temporary
file in the same directory, ``fsync``, ``os.replace``, ``fsync`` of the directory),
so a reader sees either the old CRL or the new one, never half of one. A file damaged anyway
(disk fault, a writer killed by an unsafe tool) fails strict parsing when it is read: it is moved
aside as ``*.corrupt`` and refetched, never read as "not revoked"; one whose signature fails is
refused by the revocation check. Temporary files left by a killed writer are ignored and
cleaned up.

Every download has a size limit and a deadline for the whole exchange, body included (a server
trickling one byte at a time cannot hold a login), and the downloads of one verification can
share one deadline (:attr:`CrlCache.budget`, :meth:`CrlCache.for_one_check`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from mie.core.files import TEMPORARY_PREFIX, atomic_write
from mie.trust.crl import CrlIndex
from mie.trust.errors import ErrorCode, VerificationError, describe
from mie.trust.parse import max_crl_bytes

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
"""Longest wait for one network operation (connect, or one read)."""
MAX_DOWNLOAD_S = 300.0
"""Longest whole download when the caller gives no deadline."""
_CHUNK = 64 * 1024
_TMP_PREFIX = TEMPORARY_PREFIX
_QUARANTINE_LOCK = threading.Lock()


def _unknown(message: str) -> VerificationError:
    return VerificationError(ErrorCode.REVOCATION_UNKNOWN, message)


def fetch_url(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    limit: int | None = None,
    deadline: float | None = None,
    data: bytes | None = None,
    content_type: str | None = None,
) -> bytes:
    """GET (or, with ``data``, POST) ``url`` over HTTP or HTTPS, bounded in time and size.

    :param timeout: longest wait for one network operation, seconds.
    :param limit: largest body accepted (default :func:`mie.trust.parse.max_crl_bytes`).
    :param deadline: :func:`time.monotonic` time by which the whole exchange, body included,
        must be over (default: :data:`MAX_DOWNLOAD_S` from now).
    :param data: request body, for a POST.
    :param content_type: the request's Content-Type, with ``data``.
    :return: the response body.
    :raises VerificationError: ``revocation_unknown`` on any network, HTTP, size or time failure.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise _unknown(f"Unsupported URL {url}")
    end = time.monotonic() + MAX_DOWNLOAD_S if deadline is None else deadline
    left = end - time.monotonic()
    if left <= 0:
        raise _unknown(f"Cannot fetch {url}: no time left for revocation checks")
    headers = {"User-Agent": "mie"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    download = _Download(request, min(timeout, left), max_crl_bytes() if limit is None else limit)
    # urllib has no deadline for a whole exchange (its timeout is per socket operation), so the
    # exchange runs in a worker the caller stops waiting for; the worker then gives up at its
    # next read, within ``timeout``.
    worker = threading.Thread(target=download.run, name=f"mie-fetch {url}", daemon=True)
    worker.start()
    worker.join(left)
    if worker.is_alive():
        download.abandon()
        raise _unknown(f"Cannot fetch {url}: no complete answer within {left:.1f} s")
    return download.result(url)


class _Download:
    def __init__(self, request: urllib.request.Request, timeout: float, limit: int) -> None:
        self.request = request
        self.timeout = timeout
        self.limit = limit
        self.body: bytes | None = None
        self.error: str | None = None
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        self._abandoned.set()

    def run(self) -> None:
        try:
            self.body = self._exchange()
        except _TooLarge:
            self.error = f"larger than {self.limit} bytes"
        except Exception as e:  # OSError, http.client.HTTPException, ValueError...
            self.error = describe(e)

    def _exchange(self) -> bytes:
        with urllib.request.urlopen(self.request, timeout=self.timeout) as response:  # noqa: S310
            announced = response.headers.get("Content-Length", "")
            if announced.strip().isdigit() and int(announced) > self.limit:
                raise _TooLarge
            buffer = bytearray()
            while not self._abandoned.is_set():
                chunk = response.read1(_CHUNK)
                if not chunk:
                    return bytes(buffer)
                buffer += chunk
                if len(buffer) > self.limit:
                    raise _TooLarge
        raise TimeoutError("abandoned")

    def result(self, url: str) -> bytes:
        if self.body is None:
            raise _unknown(f"Cannot fetch {url}: {self.error}")
        return self.body


class _TooLarge(Exception):  # noqa: N818 (internal signal)
    pass


@dataclass(frozen=True)
class _Stamp:
    """Which file was read: a writer's ``os.replace`` makes a new inode."""

    device: int
    inode: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, status: os.stat_result) -> _Stamp:
        return cls(status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)


@dataclass
class CrlCache:
    """CRLs downloaded from distribution points, kept in ``directory``.

    :param directory: cache directory (created when needed), a path or a ``str``.
    :param timeout: longest wait for one network operation, seconds.
    :param max_bytes: CRL size limit, on the network and on disk (default
        :func:`mie.trust.parse.max_crl_bytes`: ``$MIE_CRL_MAX_BYTES`` or 64 MiB).
    :param budget: seconds that all the downloads of one verification may take together; a
        verifier applies it with :meth:`for_one_check` (``None``: each download is bounded on its
        own, by :data:`MAX_DOWNLOAD_S`).
    :param deadline: :func:`time.monotonic` time by which every download must be over (set by
        :meth:`for_one_check`).
    """

    directory: Path
    timeout: float = DEFAULT_TIMEOUT_S
    max_bytes: int | None = None
    budget: float | None = None
    deadline: float | None = None

    def __init__(
        self,
        directory: str | os.PathLike[str],
        timeout: float = DEFAULT_TIMEOUT_S,
        max_bytes: int | None = None,
        budget: float | None = None,
        deadline: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.budget = budget
        self.deadline = deadline

    def for_one_check(self) -> CrlCache:
        """:return: this cache with its deadline set ``budget`` seconds from now (itself when it
        has no budget); the same directory, so what one check downloads the next one reads."""
        if self.budget is None:
            return self
        return replace(self, deadline=time.monotonic() + self.budget)

    @property
    def limit(self) -> int:
        """:return: the CRL size limit in bytes."""
        return max_crl_bytes() if self.max_bytes is None else self.max_bytes

    def path_for(self, url: str) -> Path:
        """:return: the cache file of the CRL published at ``url``."""
        return self.directory / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".crl")

    def load(self, url: str) -> CrlIndex | None:
        """The cached CRL for ``url``, or ``None`` when absent.

        :raises VerificationError: ``revocation_unknown`` when the file is present but damaged
            or too large (it is then moved aside as ``*.corrupt`` so the next refresh replaces
            it, unless another writer has replaced it since), or cannot be read.
        """
        path = self.path_for(url)
        try:
            data, stamp = self._read(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _unknown(f"Cached CRL for {url} cannot be read ({e.strerror})") from e
        try:
            return CrlIndex.from_bytes(data, f"{url} (cache {path.name})", max_bytes=self.limit)
        except VerificationError as e:
            _quarantine(path, stamp)
            raise _unknown(f"Cached CRL for {url} is damaged: {e.message}") from e

    def _read(self, path: Path) -> tuple[bytes, _Stamp]:
        with path.open("rb") as handle:
            stamp = _Stamp.of(os.fstat(handle.fileno()))
            # One byte past the limit is enough for the parser to refuse the file.
            return handle.read(self.limit + 1), stamp

    def refresh(self, url: str) -> CrlIndex:
        """Download the CRL at ``url``, check that it parses, and store it atomically.

        :raises VerificationError: ``revocation_unknown`` when the download fails or the body
            is not a CRL (the previous cached copy is kept).
        """
        data = fetch_url(url, timeout=self.timeout, limit=self.limit, deadline=self.deadline)
        try:
            index = CrlIndex.from_bytes(data, url, max_bytes=self.limit)
        except VerificationError as e:
            raise _unknown(f"{url} did not return a CRL: {e.message}") from e
        try:
            atomic_write(self.path_for(url), data)
        except OSError as e:
            # The CRL itself is good: use it, and say that it could not be kept.
            logger.warning("Cannot write the CRL cache %s: %s", self.directory, e.strerror)
        logger.info("CRL refreshed from %s (%d entries)", url, len(index))
        return index

    def get(self, url: str, at: dt.datetime | None = None) -> CrlIndex:
        """The cached CRL for ``url``, downloaded when absent, damaged or past nextUpdate.

        :param at: the check time; a cached CRL whose nextUpdate is before it is refreshed
            (and kept, to be reported stale, if the refresh fails).
        :raises VerificationError: ``revocation_unknown`` when no copy at all can be had.
        """
        try:
            cached = self.load(url)
        except VerificationError:
            logger.warning("Damaged cached CRL for %s, refetching", url)
            cached = None
        if cached is None:
            return self.refresh(url)
        stale = cached.next_update is None or (at is not None and at > cached.next_update)
        if not stale:
            return cached
        try:
            return self.refresh(url)
        except VerificationError:
            logger.warning("Cannot refresh stale CRL for %s", url)
            return cached

    def clean_temporary(self) -> int:
        """Remove temporary files left by killed writers. :return: how many."""
        count = 0
        for leftover in self.directory.glob(_TMP_PREFIX + "*"):
            leftover.unlink(missing_ok=True)
            count += 1
        return count


def _quarantine(path: Path, damaged: _Stamp) -> None:
    """Move ``path`` aside as ``*.corrupt`` if it still is the file found damaged.

    The file is first renamed to a private name (atomic), then its identity is checked: if a
    writer replaced it in between, the good file is put back (unless a newer one is already
    there). Another reader may have moved it aside first: then there is nothing to do.
    """
    with _QUARANTINE_LOCK:
        aside = path.with_name(f"{_TMP_PREFIX}quarantine-{os.getpid()}-{path.name}")
        try:
            os.replace(path, aside)
            moved = _Stamp.of(os.stat(aside))
        except FileNotFoundError:
            return
        try:
            if moved == damaged:
                os.replace(aside, path.with_suffix(".corrupt"))
                return
            try:
                os.link(aside, path)  # fails if a newer file is there already: keep that one
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                if not path.exists():
                    os.replace(aside, path)
            aside.unlink(missing_ok=True)
        except FileNotFoundError:
            pass  # a concurrent clean_temporary() took it


class OfflineCrlCache(CrlCache):
    """A CRL cache that never downloads (``mie verify-cert``: a check offline, from what
    ``mie crl fetch`` or ``mie auth`` cached).

    A CRL not in the cache, or damaged, is ``revocation_unknown``; a damaged file is moved aside
    as ``*.corrupt``, as :class:`CrlCache` does, so the next download replaces it; a stale one is
    returned as it is, for the verifier to judge.
    """

    def refresh(self, url: str) -> CrlIndex:
        """Never downloads.

        :raises VerificationError: always, ``revocation_unknown``.
        """
        raise _unknown(f"Not downloading {url}: this check uses the CRL cache only")

    def get(self, url: str, at: dt.datetime | None = None) -> CrlIndex:
        """The cached CRL for ``url``, whatever its nextUpdate.

        :raises VerificationError: ``revocation_unknown`` when it is not cached or damaged.
        """
        cached = self.load(url)
        if cached is None:
            raise _unknown(
                f"No cached CRL for {url} (this check never downloads; run: mie crl fetch {url})"
            )
        return cached


class ReadOnlyCrlCache(OfflineCrlCache):
    """A CRL cache that only reads: it never downloads, and never writes, moves or removes a
    file (``mie replay`` uses it, so a shared vector cannot change the machine).

    A CRL not in the cache, or damaged, is ``revocation_unknown``; a stale one is returned
    as it is, for the verifier to judge.
    """

    def load(self, url: str) -> CrlIndex | None:
        """The cached CRL for ``url``, or ``None`` when absent (a damaged file stays put).

        :raises VerificationError: ``revocation_unknown`` when the file cannot be read or parsed.
        """
        path = self.path_for(url)
        try:
            data, _ = self._read(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _unknown(f"Cached CRL for {url}: cannot read ({e.strerror})") from e
        try:
            return CrlIndex.from_bytes(data, f"{url} (cache {path.name})", max_bytes=self.limit)
        except VerificationError as e:
            raise _unknown(f"Cached CRL for {url} is damaged: {e.message}") from e

    def clean_temporary(self) -> int:
        """Removes nothing. :return: 0."""
        return 0


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_DOWNLOAD_S",
    "CrlCache",
    "OfflineCrlCache",
    "ReadOnlyCrlCache",
    "atomic_write",
    "fetch_url",
]
