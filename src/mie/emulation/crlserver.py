"""Serve the TEST PKI's CRLs over HTTP on loopback, at the distribution points its certificates
name (``http://127.0.0.1:8088/crl/ACI-FO-PP-TEST.crl`` and ``…/ACI-ST-PP-TEST.crl``)."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

logger = logging.getLogger(__name__)

CRL_PORT = 8088
FILES = {
    "/crl/ACI-FO-PP-TEST.crl": "crl-fort.der",
    "/crl/ACI-ST-PP-TEST.crl": "crl-standard.der",
    "/crl/ACR-FO-TEST.crl": "arl-fort.der",
    "/crl/ACR-ST-TEST.crl": "arl-standard.der",
}


class CrlServer:
    """Serves ``crl-*.der`` from a TEST PKI directory on ``127.0.0.1:port``.

    :param directory: where :meth:`~mie.emulation.testpki.TestPki.publish_crls` wrote the CRLs.
    :param port: TCP port (0 picks a free one).
    :raises OSError: the port is taken.
    """

    def __init__(self, directory: Path, port: int = CRL_PORT) -> None:
        handler = _handler(directory)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mie-crl-server", daemon=True
        )

    def start(self) -> CrlServer:
        """Serve in a background thread; returns ``self``."""
        self._thread.start()
        logger.info("Serving TEST CRLs on http://127.0.0.1:%d/crl/", self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def _handler(directory: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = FILES.get(self.path)
            path = directory / name if name else None
            if path is None or not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("CRL server: " + format, *args)

    return Handler
