"""An emulated key's HID reports on a Unix socket: ``mie emulate fido2 --hid-socket PATH``, read
by :class:`mie.transport.ctap.SocketHidConnection` in another process.

:class:`HidSocketHost` listens on ``AF_UNIX``/``SOCK_SEQPACKET`` (message boundaries kept: one
message is one 64-byte report, either way), mode 0600, one client at a time (a second waits in
the backlog). A client that leaves is the host going away: its running command is cancelled and
its answers dropped (:meth:`~mie.emulation.ctaphid.CtapHidFraming.disconnect`). The host
stopping (or the emulator dying) closes the socket: the client reads end-of-file, a key pulled.
The socket's path is removed when the host stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import tempfile
import threading
from pathlib import Path

from mie.emulation.ctaphid import REPORT_SIZE, CtapHidFraming

__all__ = ["HidSocketHost"]

log = logging.getLogger(__name__)

_POLL_S = 0.1


class HidSocketHost:
    """Serves ``framing`` on the Unix socket ``path``.

    :param framing: the key's CTAPHID device side.
    :param path: the socket's path (its directory must exist). A stale socket nobody listens
        on is replaced; anything else there is refused.
    :param fail_after: test fault: take this many reports from the client, then close the
        connection and stop (the key pulled mid-operation); ``None`` never.
    :raises FileExistsError: something other than a stale socket is at ``path``.
    :raises OSError: the socket cannot be made.
    """

    def __init__(
        self,
        framing: CtapHidFraming,
        path: str | os.PathLike[str],
        *,
        fail_after: int | None = None,
    ) -> None:
        self.framing = framing
        self.path = Path(path)
        self.fail_after = fail_after
        self.received = 0
        self.gone = threading.Event()  # the fail_after fault fired
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener = _listen(self.path)

    def __repr__(self) -> str:
        return f"HidSocketHost({str(self.path)!r})"

    def start(self) -> HidSocketHost:
        """Serve in a background thread; :return: ``self``."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="mie-hid-socket", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (callable from a signal handler with ``timeout=0``)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> HidSocketHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    def close(self) -> None:
        """Close the listening socket and remove its path."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def serve_forever(self) -> None:
        """Take clients one after the other until :meth:`stop` (or the fault)."""
        try:
            self._listener.settimeout(_POLL_S)
            while not self._stop.is_set():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError as e:
                    if not self._stop.is_set():
                        log.info("HID socket %s: %s", self.path, e)
                    return
                self._serve(client)
        finally:
            self.framing.disconnect()

    def _serve(self, client: socket.socket) -> None:
        log.info("HID socket %s: a host connected", self.path)
        self.connected.set()
        client.settimeout(_POLL_S)
        left = threading.Event()
        writer = threading.Thread(target=self._write, args=(client, left), daemon=True)
        writer.start()
        try:
            self._read(client, left)
        finally:
            left.set()
            writer.join(2.0)
            self.framing.disconnect()
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
            self.connected.clear()
            log.info("HID socket %s: the host left", self.path)

    def _read(self, client: socket.socket, left: threading.Event) -> None:
        while not self._stop.is_set() and not left.is_set():
            if self.fail_after is not None and self.received >= self.fail_after:
                log.warning("Pull fault: the key leaves after %d reports", self.received)
                self.gone.set()
                self._stop.set()
                return
            try:
                report = client.recv(REPORT_SIZE + 1)
            except TimeoutError:
                continue
            except OSError:
                return
            if not report:
                return
            self.received += 1
            self.framing.feed(report)

    def _write(self, client: socket.socket, left: threading.Event) -> None:
        while not left.is_set() and not self._stop.is_set():
            report = self.framing.read(_POLL_S)
            if report is None:
                continue
            try:
                client.sendall(report)
            except OSError:
                left.set()
                return


def _listen(path: Path) -> socket.socket:
    """A listening socket at ``path``, mode 0600 from the start: bound in a private directory
    (0700) next to it, then renamed into place, so no other user can connect in between."""
    _remove_stale(path)
    private = Path(tempfile.mkdtemp(prefix=".mie-hid-", dir=path.parent))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        staged = private / "socket"
        sock.bind(str(staged))
        staged.chmod(0o600)
        sock.listen(1)
        os.rename(staged, path)
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            for leftover in private.iterdir():
                leftover.unlink()
            private.rmdir()
    return sock


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # nobody listens: a socket a dead emulator left
        return
    except OSError as e:
        # A full backlog (EAGAIN) or a timeout: someone listens, and is busy.
        raise FileExistsError(f"Another emulator serves {path} ({e.strerror or e})") from e
    finally:
        probe.close()
    raise FileExistsError(f"Another emulator serves {path}")
