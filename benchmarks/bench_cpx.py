"""APDUs and wall time of a CPS3 authentication: mie cold, mie warm, OpenSC pkcs11-tool.

All three run against the same emulated CPS3 (T=0 ATR, as the real card) presented through
pcscd + vsmartcard-vpcd; APDUs are counted on the card side, as the emulator trace would.
Run: ``.venv/bin/python benchmarks/bench_cpx.py [--runs N]`` (starts pcscd if none runs).
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mie.auth import CertificateCache, CpxAuthenticator
from mie.emulation.registry import CardOptions, build_card
from mie.emulation.vpcd import ExchangeObserver, VpcdHost
from mie.errors import PcscUnavailableError
from mie.request import AuthRequest, StaticPin
from mie.transport.pcsc import PcscConnection, list_readers, wait_for_card
from mie.verification import login

READER = "Virtual PCD 00 00"
PIN = "1234"
AUT_ID = "e828bd080f8025000001ff001002"
OPENSC_PKCS11 = next(
    (str(p) for p in sorted(Path("/usr/lib").glob("*/opensc-pkcs11.so"))), "opensc-pkcs11.so"
)


class Counter(ExchangeObserver):
    """Counts the APDUs the card answers."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def exchange(self, command: bytes, response: bytes) -> None:
        with self._lock:
            self.count += 1

    def take(self) -> int:
        with self._lock:
            value, self.count = self.count, 0
        return value


def ensure_pcscd() -> subprocess.Popen[bytes] | None:
    try:
        list_readers()
        return None
    except PcscUnavailableError:
        pass
    process = subprocess.Popen(
        ["pcscd", "--foreground"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if READER in [r.name for r in list_readers()]:
                return process
        except PcscUnavailableError:
            pass
        time.sleep(0.1)
    raise SystemExit("pcscd did not start")


def measure(run: Callable[[], None], counter: Counter, runs: int) -> tuple[int, float]:
    apdus, times = [], []
    for _ in range(runs):
        counter.take()
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
        apdus.append(counter.take())
    return int(statistics.median(apdus)), statistics.median(times)


def mie_auth(cache: CertificateCache | None) -> None:
    with PcscConnection(READER) as connection:
        authenticator = CpxAuthenticator(connection, cache=cache, chain_checked=False)
        login(authenticator, AuthRequest.new(), user=StaticPin(PIN), verifier=None)


def opensc_sign(workdir: Path) -> None:
    source = workdir / "in"
    source.write_bytes(
        bytes.fromhex("3031300d060960864801650304020105000420")
        + hashlib.sha256(os.urandom(32)).digest()
    )
    subprocess.run(
        [
            "pkcs11-tool",
            "--module",
            OPENSC_PKCS11,
            "--slot-index",
            "0",
            "--login",
            "--pin",
            PIN,
            "--sign",
            "-m",
            "RSA-PKCS",
            "--id",
            AUT_ID,
            "-i",
            str(source),
            "-o",
            str(workdir / "sig"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("pkcs11-tool") is None:
        raise SystemExit("OpenSC's pkcs11-tool is needed (Debian package opensc)")
    daemon = ensure_pcscd()
    counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        card = build_card("cps3", CardOptions(pin=PIN, pki_dir=Path(tmp) / "pki"))
        host = VpcdHost(card, observer=counter).start()
        try:
            wait_for_card(READER, timeout=10)
            cold = measure(lambda: mie_auth(None), counter, args.runs)
            cache = CertificateCache()
            mie_auth(cache)
            warm = measure(lambda: mie_auth(cache), counter, args.runs)
            opensc = measure(lambda: opensc_sign(Path(tmp)), counter, max(3, args.runs // 2))
        finally:
            host.stop()
            if daemon is not None:
                daemon.terminate()
                daemon.wait(10)
    rows = [
        ("mie auth, cold (certificate read)", *cold),
        ("mie auth, warm (certificate cached)", *warm),
        ("OpenSC pkcs11-tool --login --sign", *opensc),
    ]
    print(f"{'flow':40} {'APDUs':>6} {'ms (median)':>12} {'APDUs vs OpenSC':>16}")
    for name, apdus, ms in rows:
        print(f"{name:40} {apdus:6d} {ms:12.1f} {apdus / opensc[0]:16.2f}")
    print("OpenSC's time includes starting pkcs11-tool and loading its module.", file=sys.stderr)
    print(
        json.dumps(
            {
                "mie_cold_apdus": cold[0],
                "mie_warm_apdus": warm[0],
                "opensc_apdus": opensc[0],
                "mie_cold_ms": round(cold[1], 1),
                "mie_warm_ms": round(warm[1], 1),
                "opensc_ms": round(opensc[1], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
