"""A CRL cache on disk that survives restarts, and CRL download over HTTP(S).

Files are written atomically (temporary file in the same directory, ``fsync``, ``os.replace``),
so a reader sees either the old CRL or the new one, never half of one. A file damaged anyway
(disk fault, a writer killed by an unsafe tool) fails strict parsing or the CRL signature check
when it is used: it is reported as ``revocation_unknown`` or refetched, never read as "not
revoked". Temporary files left by a killed writer are ignored and cleaned up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mie.trust.crl import CrlIndex
from mie.trust.errors import ErrorCode, VerificationError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
MAX_CRL_BYTES = 512 * 1024 * 1024
_TMP_PREFIX = ".tmp-"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def fetch_url(url: str, *, timeout: float = DEFAULT_TIMEOUT_S, limit: int = MAX_CRL_BYTES) -> bytes:
    """GET ``url`` over HTTP or HTTPS with a timeout and a size limit.

    :raises VerificationError: ``revocation_unknown`` on any network or HTTP failure.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise VerificationError(ErrorCode.REVOCATION_UNKNOWN, f"unsupported CRL URL {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "mie"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            data = bytes(response.read(limit + 1))
    except (OSError, ValueError) as e:
        raise VerificationError(ErrorCode.REVOCATION_UNKNOWN, f"cannot fetch {url}: {e}") from e
    if len(data) > limit:
        raise VerificationError(ErrorCode.REVOCATION_UNKNOWN, f"{url}: larger than {limit} bytes")
    return data


@dataclass
class CrlCache:
    """CRLs downloaded from distribution points, kept in ``directory``.

    :param directory: cache directory (created when needed).
    :param timeout: network timeout per request, seconds.
    """

    directory: Path
    timeout: float = DEFAULT_TIMEOUT_S

    def path_for(self, url: str) -> Path:
        """:return: the cache file of the CRL published at ``url``."""
        return self.directory / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".crl")

    def load(self, url: str) -> CrlIndex | None:
        """The cached CRL for ``url``, or ``None`` when absent.

        :raises VerificationError: ``revocation_unknown`` when the file is present but damaged
            (it is then moved aside as ``*.corrupt`` so the next refresh replaces it).
        """
        path = self.path_for(url)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return CrlIndex.from_bytes(data, f"{url} (cache {path.name})")
        except VerificationError as e:
            os.replace(path, path.with_suffix(".corrupt"))
            raise VerificationError(
                ErrorCode.REVOCATION_UNKNOWN, f"cached CRL for {url} is damaged: {e.message}"
            ) from e

    def refresh(self, url: str) -> CrlIndex:
        """Download the CRL at ``url``, check that it parses, and store it atomically.

        :raises VerificationError: ``revocation_unknown`` when the download fails or the body
            is not a CRL (the previous cached copy is kept).
        """
        data = fetch_url(url, timeout=self.timeout)
        try:
            index = CrlIndex.from_bytes(data, url)
        except VerificationError as e:
            raise VerificationError(
                ErrorCode.REVOCATION_UNKNOWN, f"{url} did not return a CRL: {e.message}"
            ) from e
        atomic_write(self.path_for(url), data)
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
