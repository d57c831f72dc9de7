"""``mie emulate``: host an emulated card on vpcd until interrupted."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from mie._cli.output import warn
from mie.emulation.crlserver import CRL_PORT, CrlServer
from mie.emulation.registry import KINDS, CardOptions, build_card, default_pki_dir
from mie.emulation.testpki import CHAIN_FILE
from mie.emulation.trace import TraceWriter
from mie.emulation.vpcd import VPCD_PORT, VpcdHost

_NOTICE_AFTER = 2.0


@click.command()
@click.argument("kind", type=click.Choice(sorted(KINDS)))
@click.option(
    "--port",
    default=VPCD_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="vpcd port: 35963 is 'Virtual PCD 00 00', 35964 is '00 01'.",
)
@click.option("--pin", default="1234", show_default=True, help="Cardholder PIN (4-8 digits).")
@click.option("--serial", help="Card serial (10 digits for CPx cards).")
@click.option(
    "--identity", help="Holder: rpps=…, adeli=…, finess=NUMBER/ID, siret=NUMBER/ID, psi=UUID."
)
@click.option(
    "--pki",
    "pki_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="TEST PKI directory (default: $MIE_TEST_PKI or ~/.cache/mie/testpki).",
)
@click.option(
    "--crl-port",
    default=CRL_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Serve the TEST PKI's CRLs on 127.0.0.1 at this port (0: do not serve).",
)
@click.option(
    "--trace",
    type=click.Path(dir_okay=False, writable=True),
    help="Write every exchange to this vector file (PINs masked).",
)
def emulate(
    kind: str,
    port: int,
    pin: str,
    serial: str | None,
    identity: str | None,
    pki_dir: Path | None,
    crl_port: int,
    trace: str | None,
) -> int:
    """Host an emulated KIND card on vsmartcard's vpcd (pcscd must be running).

    CPx kinds get certificates from a TEST PKI kept in --pki: its root-*.pem and ca-*.pem files
    are the TEST anchors and intermediates to trust explicitly (mie trust import --test), and
    its CRLs are served on 127.0.0.1 at the distribution points the certificates name.
    """
    options = CardOptions(pin=pin, serial=serial, identity=identity, pki_dir=pki_dir)
    card = build_card(kind, options)
    if kind != "iso7816":
        chain = (options.pki_dir or default_pki_dir()) / CHAIN_FILE
        warn(f"TEST PKI: to let mie auth trust it, once: mie trust import {chain} --test")
    crl_server = _serve_crls(options, crl_port) if kind != "iso7816" and crl_port else None
    observer = TraceWriter(trace, kind, card.atr) if trace else None
    host = VpcdHost(card, port=port, observer=observer)
    _stop_on_signals(host)
    warn(f"Emulating {kind} on vpcd 127.0.0.1:{port}; Ctrl-C to stop.")
    threading.Timer(_NOTICE_AFTER, _notice_if_waiting, (host, port)).start()
    try:
        host.serve_forever()
    finally:
        if crl_server is not None:
            crl_server.stop()
    return 0


def _serve_crls(options: CardOptions, port: int) -> CrlServer | None:
    directory = options.pki_dir or default_pki_dir()
    try:
        return CrlServer(directory, port).start()
    except OSError as e:
        warn(f"Not serving CRLs on 127.0.0.1:{port} ({e.strerror}); another emulator may be.")
        return None


def _stop_on_signals(host: VpcdHost) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        host.stop(timeout=0)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _notice_if_waiting(host: VpcdHost, port: int) -> None:
    if not host.connected.is_set():
        warn(f"Still waiting for vpcd on 127.0.0.1:{port}: is pcscd running with vsmartcard-vpcd?")
