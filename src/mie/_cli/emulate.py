"""``mie emulate``: host an emulated card on vpcd until interrupted."""

from __future__ import annotations

import math
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from mie._cli.output import warn
from mie._cli.state import UsageError
from mie.cards.cpx import CPX_PIN
from mie.core.errors import JsonFormatError, PinFormatError
from mie.emulation.base import EmulatedCard
from mie.emulation.crlserver import CRL_PORT, CrlServer
from mie.emulation.desfire import PRODUCTS, EmulatedDesfire, open_badge
from mie.emulation.nfc_target import UdpTypeATarget
from mie.emulation.registry import (
    KINDS,
    CardOptions,
    FidoKeyOptions,
    build_card,
    build_fido_key,
    default_pki_dir,
)
from mie.emulation.testpki import CHAIN_FILE, parse_identity
from mie.emulation.trace import TraceWriter
from mie.emulation.vpcd import VPCD_PORT, VpcdHost
from mie.trust.errors import VerificationError
from mie.trust.identity import parse_id_nat

if TYPE_CHECKING:
    from mie.emulation.ctap2 import EmulatedAuthenticator
    from mie.emulation.hid_socket import HidSocketHost

_NOTICE_AFTER = 2.0
_NFC_POLL = 0.1
# vpcd asks a newly accepted card for its ATR within a second; a second card on a port already
# served is accepted by the kernel's backlog and then never spoken to.
_SILENCE_TIMEOUT = 5.0
_CPX_SERIAL = re.compile(r"[0-9]{10}")
_DEMO_SERIAL = re.compile(r"[\x21-\x7e]{1,32}")
# The identity kinds each card type carries, as ANS issues them.
_IDENTITY_KINDS = {"CPS": ("rpps", "adeli"), "CPE": ("finess", "siret"), "PSI": ("psi",)}
_CARD_TYPES = {"cps3": "CPS", "cps3-cl": "CPS", "cps4": "CPS", "cpe": "CPE", "psi": "PSI"}
_ALGORITHMS = {"es256": -7, "eddsa": -8}
_SELECT_VERSIONS = {"fido2": "FIDO_2_0", "u2f": "U2F_V2"}


@click.command()
@click.argument("kind", type=click.Choice(sorted(KINDS)))
@click.option(
    "--port",
    default=VPCD_PORT,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="vpcd port: 35963 is 'Virtual PCD 00 00', 35964 is '00 01'.",
)
@click.option(
    "--pin",
    default="1234",
    help="Not desfire: the cardholder PIN (4-8 digits; default 1234, cards only); fido2: the"
    " key's PIN (4-63 characters; no default: a new key has no PIN set unless given, a --state"
    " file keeps its own).",
)
@click.option("--serial", help="Not desfire: the card serial (10 digits for CPx cards).")
@click.option(
    "--identity",
    help="CPx: the holder: rpps=…, adeli=… (cps3, cps3-cl, cps4), finess=NUMBER/ID, "
    "siret=NUMBER/ID (cpe), psi=UUID (psi).",
)
@click.option(
    "--pki",
    "pki_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="CPx: the TEST PKI directory (default: $MIE_TEST_PKI or ~/.cache/mie/testpki);"
    " fido2: where its TEST attestation PKI is (fido-attestation-root.pem, the root to trust).",
)
@click.option(
    "--crl-port",
    default=CRL_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="CPx: serve the TEST PKI's CRLs on 127.0.0.1 at this port (0: do not serve).",
)
@click.option(
    "--trace",
    type=click.Path(dir_okay=False),
    help="Write every exchange to this vector file (PINs masked; vpcd only).",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="desfire: the badge's state file (created blank when missing, saved on every change);"
    " fido2: the key's (mie-fido-state/1: PIN, credentials, counters).",
)
@click.option("--uid", help="desfire: a new badge's UID (7 bytes, hex).")
@click.option(
    "--product",
    type=click.Choice(sorted(PRODUCTS)),
    default="ev3",
    show_default=True,
    help="desfire: the product GetVersion shows.",
)
@click.option(
    "--nfc",
    help="desfire: serve nfcpy's udp reader on HOST:PORT instead of vpcd.",
)
@click.option(
    "--vpcd",
    "on_vpcd",
    is_flag=True,
    help="fido2: present the key's FIDO applet on vpcd (the default).",
)
@click.option(
    "--hid-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    help="fido2: serve the key's HID reports on this Unix socket instead of vpcd.",
)
@click.option(
    "--attestation",
    type=click.Choice(["packed", "self", "none"]),
    help="fido2: packed (the TEST batch key, default), self or none.",
)
@click.option(
    "--counter",
    type=click.Choice(["per-credential", "global", "zero"]),
    help="fido2: signature counters per credential (default), one global counter, or none.",
)
@click.option(
    "--alg",
    "algorithms",
    multiple=True,
    type=click.Choice(sorted(_ALGORITHMS)),
    help="fido2: an algorithm offered, by preference (repeat; default es256 then eddsa).",
)
@click.option(
    "--backup-eligible",
    is_flag=True,
    help="fido2: mark credentials backup-eligible (a syncable passkey).",
)
@click.option(
    "--touch",
    help="fido2: when the emulated user touches: auto (at once, default), SECONDS, or never.",
)
@click.option(
    "--select",
    "select_as",
    type=click.Choice(sorted(_SELECT_VERSIONS)),
    help="fido2 on vpcd: what the FIDO applet answers to SELECT: fido2 (FIDO_2_0, default) or"
    " u2f (U2F_V2, a dual-protocol key as most real NFC keys; CTAP2 is then found by getInfo).",
)
@click.option(
    "--stall-after",
    type=click.IntRange(0),
    hidden=True,
    help="Test fault: answer this many APDUs, then stop answering (the card goes silent).",
)
@click.option(
    "--fail-after",
    type=click.IntRange(0),
    hidden=True,
    help="Test fault (desfire, fido2): answer this many APDUs (fido2 --hid-socket: take this many"
    " reports), then the badge or key leaves and the emulator exits with status 1; the state"
    " file keeps what the answered commands wrote.",
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
    state_file: Path | None,
    uid: str | None,
    product: str,
    nfc: str | None,
    on_vpcd: bool,
    hid_socket: Path | None,
    attestation: str | None,
    counter: str | None,
    algorithms: tuple[str, ...],
    backup_eligible: bool,
    touch: str | None,
    select_as: str | None,
    stall_after: int | None,
    fail_after: int | None,
) -> int:
    """Host an emulated KIND card on vsmartcard's vpcd (pcscd must be running).

    CPx kinds (cps3, cps3-cl, cps4, cpe, psi) get certificates from a TEST PKI kept in --pki:
    its root-*.pem and ca-*.pem files are the TEST anchors and intermediates to trust explicitly
    (mie trust import --test), and its CRLs are served on 127.0.0.1 at the distribution points
    the certificates name.

    \b
    Options by kind:
      CPx:         --pin, --serial, --identity, --pki, --crl-port
      iso7816:     --pin, --serial (--pki, --crl-port: no effect)
      desfire:     --state, --uid, --product, --nfc; it refuses --pin, --serial,
                   --identity, --pki and --crl-port (a badge has no PIN, serial or
                   certificate: mie desfire enroll writes its record), and the
                   other kinds refuse these four (fido2 takes --state)
      fido2:       --vpcd (default) or --hid-socket PATH, --pin, --state, --pki,
                   --attestation, --counter, --alg, --backup-eligible, --touch,
                   --select (vpcd); a new key has no PIN unless --pin; it
                   refuses --serial, --identity, --crl-port, --uid, --product, --nfc
                   and --trace, and the other kinds refuse the fido2 options
      every kind:  --port, --trace (vpcd only; fido2: no --trace)
    """
    fido_given = [
        name
        for name, given in (
            ("--vpcd", on_vpcd),
            ("--hid-socket", hid_socket is not None),
            ("--attestation", attestation is not None),
            ("--counter", counter is not None),
            ("--alg", bool(algorithms)),
            ("--backup-eligible", backup_eligible),
            ("--touch", touch is not None),
            ("--select", select_as is not None),
        )
        if given
    ]
    if kind in ("desfire", "fido2") and state_file and not state_file.parent.is_dir():
        # The state file's writer makes missing directories: a mistyped path would be a new
        # blank badge or key, saved somewhere unexpected.
        raise UsageError(
            f"--state {state_file}: the directory {str(state_file.parent)!r} is not there"
        )
    if kind == "fido2":
        key = FidoKeyOptions(
            pin=_fido_pin(pin) if _given("pin") else None,
            attestation=attestation or "packed",
            counter=counter or "per-credential",
            algorithms=tuple(_ALGORITHMS[a] for a in algorithms) or (-7, -8),
            backup_eligible=backup_eligible,
            touch=_touch(touch),
            transports=("usb",) if hid_socket is not None else ("nfc",),
            fail_after=fail_after,
            select_version=_SELECT_VERSIONS[select_as or "fido2"],
        )
        _check_fido_options(serial, identity, uid, nfc, trace, on_vpcd, hid_socket, stall_after)
        options = CardOptions(pki_dir=pki_dir, state=state_file, fido=key)
        return _emulate_fido2(options, port, hid_socket, stall_after)
    if fido_given:
        raise UsageError(f"{', '.join(fido_given)}: only for mie emulate fido2")
    _check_options(kind, pin, serial, identity)
    badge_uid = _check_desfire_options(kind, state_file, uid, product, nfc)
    if fail_after is not None and kind != "desfire":
        raise UsageError("--fail-after: only for mie emulate desfire or fido2")
    options = CardOptions(
        pin=pin,
        serial=serial,
        identity=identity,
        pki_dir=pki_dir,
        state=state_file,
        uid=badge_uid,
        product=product,
    )
    if kind == "desfire":
        return _emulate_desfire(options, port, trace, nfc, stall_after, fail_after)
    # Everything is written (TEST PKI, CRLs, trace) before the card is presented, so whoever
    # waits for the card (mie readers --wait) finds the files.
    if kind == "iso7816":
        card = build_card(kind, options)
    else:
        built: list[EmulatedCard] = []
        _pki_ready(options, lambda: built.append(build_card(kind, options)))
        card = built[0]
    observer = _trace_writer(trace, kind, card.atr) if trace else None
    if kind != "iso7816":
        chain = (options.pki_dir or default_pki_dir()) / CHAIN_FILE
        warn(f"TEST PKI: to let mie auth trust it, once: mie trust import {chain} --test")
    crl_server = _serve_crls(options, crl_port) if kind != "iso7816" and crl_port else None
    try:
        return _serve_vpcd(card, kind, port, observer, stall_after)
    finally:
        if crl_server is not None:
            crl_server.stop()


def _serve_vpcd(
    card: EmulatedCard, kind: str, port: int, observer: TraceWriter | None, stall_after: int | None
) -> int:
    """Present ``card`` on vpcd until a signal stops it (exit 0) or the card is gone (exit 1,
    ``--fail-after``); a vpcd failure is a usage error."""
    host = VpcdHost(
        card,
        port=port,
        observer=observer,
        silence_timeout=_SILENCE_TIMEOUT,
        stall_after=stall_after,
    )
    _stop_on_signals(host)
    warn(f"Emulating {kind} on vpcd 127.0.0.1:{port}; Ctrl-C to stop.")
    notice = threading.Timer(_NOTICE_AFTER, _notice_if_waiting, (host, port))
    notice.daemon = True
    notice.start()
    try:
        host.serve_forever()
    finally:
        notice.cancel()
    if host.error is not None:
        raise UsageError(f"--port {port}: {host.error}")
    return _gone(host.gone.is_set(), host.answered, "key" if kind == "fido2" else "badge")


def _gone(gone: bool, answered: int, what: str = "badge") -> int:
    if not gone:
        return 0
    warn(f"--fail-after: the {what} answered {answered} APDUs and left the field (test fault)")
    return 1


def _given(parameter: str) -> bool:
    """:return: whether the command line gave ``parameter`` (not its default)."""
    source = click.get_current_context().get_parameter_source(parameter)
    return source not in (None, click.core.ParameterSource.DEFAULT)


def _check_options(kind: str, pin: str, serial: str | None, identity: str | None) -> None:
    """Refuse, naming the option, what would fail later or give a card mie cannot read."""
    if kind == "desfire":
        explicit = [
            name
            for name, given in (
                ("--pin", _given("pin")),
                ("--serial", serial is not None),
                ("--identity", identity is not None),
                ("--pki", _given("pki_dir")),
                ("--crl-port", _given("crl_port")),
            )
            if given
        ]
        if explicit:
            raise UsageError(f"{', '.join(explicit)}: not for a DESFire badge (mie desfire enroll)")
        return
    try:
        CPX_PIN.check(pin)
    except ValueError as e:
        raise UsageError(f"--pin: {e}") from e
    if serial is not None:
        if kind == "iso7816" and not _DEMO_SERIAL.fullmatch(serial):
            raise UsageError(f"--serial {serial!r}: 1 to 32 printable ASCII characters expected")
        if kind != "iso7816" and not _CPX_SERIAL.fullmatch(serial):
            raise UsageError(f"--serial {serial!r}: a {kind} card serial is 10 digits")
    if identity is None:
        return
    card_type = _CARD_TYPES.get(kind)
    if card_type is None:
        raise UsageError(f"--identity: the {kind} card carries no identity")
    allowed = _IDENTITY_KINDS[card_type]
    if identity.partition("=")[0].strip().lower() not in allowed:
        raise UsageError(f"--identity {identity!r}: a {kind} card holds {' or '.join(allowed)}=…")
    try:
        parsed = parse_identity(identity, card_type)
        # The check mie info and mie auth apply to the certificate the card will carry.
        parse_id_nat(parsed.id_nat)
    except VerificationError as e:
        raise UsageError(f"--identity {identity!r}: {e}") from e
    except ValueError as e:
        raise UsageError(f"--identity {identity!r}: {e}") from e


def _check_desfire_options(
    kind: str, state_file: Path | None, uid: str | None, product: str, nfc: str | None
) -> bytes | None:
    """:return: the ``--uid`` bytes; refuse the DESFire options on another kind."""
    if kind != "desfire":
        given = [n for n, v in (("--state", state_file), ("--uid", uid), ("--nfc", nfc)) if v]
        if given or product != "ev3":
            raise UsageError(f"{', '.join(given) or '--product'}: only for mie emulate desfire")
        return None
    if uid is None:
        return None
    try:
        badge_uid = bytes.fromhex(uid)
    except ValueError:
        badge_uid = b""
    if len(badge_uid) != 7:
        raise UsageError(f"--uid {uid!r}: a DESFire UID is 7 bytes in hex")
    return badge_uid


def _fido_pin(pin: str) -> str:
    from mie.fido.pin import check_fido_pin

    try:
        return check_fido_pin(pin)
    except PinFormatError as e:
        raise UsageError(f"--pin: {e}") from e


def _touch(touch: str | None) -> float | None:
    """:return: the ``--touch`` delay in seconds, ``None`` for never."""
    if touch is None or touch == "auto":
        return 0.0
    if touch == "never":
        return None
    try:
        seconds = float(touch)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or not 0 <= seconds <= 3600:
        raise UsageError(f"--touch {touch!r}: auto, never or a number of seconds (0 to 3600)")
    return seconds


def _check_fido_options(
    serial: str | None,
    identity: str | None,
    uid: str | None,
    nfc: str | None,
    trace: str | None,
    on_vpcd: bool,
    hid_socket: Path | None,
    stall_after: int | None,
) -> None:
    """Refuse, naming them, the card options a FIDO2 key has no use for."""
    refused = [
        name
        for name, given in (
            ("--serial", serial is not None),
            ("--identity", identity is not None),
            ("--crl-port", _given("crl_port")),
            ("--uid", uid is not None),
            ("--product", _given("product")),
            ("--nfc", nfc is not None),
            ("--trace", trace is not None),
        )
        if given
    ]
    if refused:
        raise UsageError(f"{', '.join(refused)}: not for a FIDO2 key")
    if hid_socket is not None:
        vpcd_only = [
            name
            for name, given in (
                ("--vpcd", on_vpcd),
                ("--port", _given("port")),
                ("--stall-after", stall_after is not None),
                ("--select", _given("select_as")),
            )
            if given
        ]
        if vpcd_only:
            raise UsageError(f"{', '.join(vpcd_only)}: with vpcd only, not with --hid-socket")


def _emulate_fido2(
    options: CardOptions, port: int, hid_socket: Path | None, stall_after: int | None
) -> int:
    from mie.emulation.fido_pki import ROOT_FILE, TestAttestationPki

    directory = options.pki_dir or default_pki_dir()
    _pki_ready(options, lambda: TestAttestationPki.load(directory))
    try:
        if hid_socket is not None:
            engine = build_fido_key(options)
        else:
            card = build_card("fido2", options)
    except JsonFormatError as e:
        raise UsageError(f"--state: {e}") from e
    except ValueError as e:
        raise UsageError(f"--state {options.state}: {e}" if options.state else str(e)) from e
    except OSError as e:
        where = options.state or directory
        raise UsageError(f"{where}: {e.strerror or e}") from e
    fail_after = options.fido.fail_after if options.fido else None
    # The socket is bound before anything is said: a path it cannot take is the one line.
    host = _hid_socket_host(engine, hid_socket, fail_after) if hid_socket is not None else None
    root = directory / ROOT_FILE
    warn(f"TEST attestation root (the FIDO2 key's, to trust only in tests): {root}")
    if host is None or hid_socket is None:
        return _serve_vpcd(card, "fido2", port, None, stall_after)
    return _serve_hid_socket(host, hid_socket)


def _pki_ready(options: CardOptions, load: Callable[[], object]) -> None:
    """Run ``load`` (which builds or reads the TEST PKI); a directory it cannot use is a usage
    error naming where it came from (``--pki``, ``$MIE_TEST_PKI`` or the user cache)."""
    directory = options.pki_dir or default_pki_dir()
    if options.pki_dir is not None:
        source = "--pki"
    elif os.environ.get("MIE_TEST_PKI"):
        source = "$MIE_TEST_PKI"
    else:
        source = "the TEST PKI directory"
    try:
        load()
    except (FileExistsError, NotADirectoryError) as e:
        raise UsageError(f"{source} {directory}: not a directory (or under a file)") from e
    except OSError as e:
        raise UsageError(f"{source} {directory}: cannot write it ({e.strerror or e})") from e


def _hid_socket_host(
    engine: EmulatedAuthenticator, path: Path, fail_after: int | None
) -> HidSocketHost:
    from mie.emulation.ctaphid import CtapHidFraming
    from mie.emulation.hid_socket import HidSocketHost

    try:
        return HidSocketHost(CtapHidFraming(engine), path, fail_after=fail_after)
    except OSError as e:
        raise UsageError(f"--hid-socket {path}: {e.strerror or e}") from e


def _serve_hid_socket(host: HidSocketHost, path: Path) -> int:
    def handler(signum: int, frame: FrameType | None) -> None:
        host.stop(timeout=0)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    warn(f"Emulating fido2 on the HID socket {path}; Ctrl-C to stop.")
    try:
        host.serve_forever()
    finally:
        host.close()
    if not host.gone.is_set():
        return 0
    warn(f"--fail-after: the key took {host.received} reports and was pulled (test fault)")
    return 1


def _nfc_address(nfc: str) -> tuple[str, int]:
    host, _, port = nfc.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--nfc {nfc!r}: HOST:PORT expected")
    return host, int(port)


def _emulate_desfire(
    options: CardOptions,
    port: int,
    trace: str | None,
    nfc: str | None,
    stall_after: int | None,
    fail_after: int | None,
) -> int:
    try:
        card = open_badge(options.state, uid=options.uid, product=options.product)
    except ValueError as e:
        raise UsageError(f"--uid: {e}") from e
    except JsonFormatError as e:
        raise UsageError(f"--state: {e}") from e
    except OSError as e:
        raise UsageError(f"--state {options.state}: {e.strerror or e}") from e
    card.faults.fail_after = fail_after
    if nfc is not None:
        if trace or stall_after is not None:
            raise UsageError("--trace, --stall-after: with vpcd only, not with --nfc")
        return _serve_nfc(card, *_nfc_address(nfc))
    observer = _trace_writer(trace, "desfire", card.atr) if trace else None
    return _serve_vpcd(card, "desfire", port, observer, stall_after)


def _serve_nfc(card: EmulatedDesfire, host: str, port: int) -> int:
    try:
        target = UdpTypeATarget(card, host, port)
    except OSError as e:
        raise UsageError(f"--nfc {host}:{port}: {e.strerror or e}") from e
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    target.start()
    warn(f"Emulating desfire for nfcpy's udp reader on {host}:{target.port}; Ctrl-C to stop.")
    try:
        while not done.wait(_NFC_POLL) and not target.gone.is_set():
            pass
    finally:
        target.stop()
    return _gone(target.gone.is_set(), card.answered)


def _trace_writer(path: str, kind: str, atr: bytes) -> TraceWriter:
    try:
        return TraceWriter(path, kind, atr)
    except OSError as e:
        raise UsageError(f"--trace {path}: cannot write it ({e.strerror or e})") from e


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
        # vpcd serves one emulator per port: a second one is accepted by the kernel, never served.
        warn(
            f"Still waiting for vpcd on 127.0.0.1:{port}: is pcscd running with vsmartcard-vpcd,"
            " and is no other emulator using this port (--port 35964 is slot 1)?"
        )
