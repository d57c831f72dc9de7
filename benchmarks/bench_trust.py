"""How fast is a CPS-like certificate check with a 1,000,000-entry CRL?

Chain: RSA-4096 root -> RSA-4096 FORT PERSONNES CA -> RSA-2048 card authentication certificate,
with a 1M-entry CRL from the CA and a small one from the root. Measured on one core:

- mie: warm ``Verifier.verify`` (CRLs loaded and their signatures checked once);
- floor: the signature verifications a check must do (leaf by CA, CA by root);
- pyhanko-certvalidator doing the same check with the same CRLs (few runs: it scans the CRL);
- loading the 1M CRL (parse + index + signature) in a fresh process: time and memory;
- one CRL lookup, for 1k and 1M entries (O(1) means the two are alike).

Run: ``python benchmarks/bench_trust.py`` (``--help`` for options). The CA keys and the 1M CRL
are built once and cached (``--cache``, default ``$TMPDIR/mie-bench-trust``). The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mie.emulation.testpki import CardIdentity, Gamme, Issued, default_rpps
from mie.emulation.testpki import TestPki as Pki
from mie.trust import CrlIndex, CrlSet, TrustStore, Usage, VerifierBuilder

ENTRIES = 1_000_000
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _children(der: bytes) -> list[bytes]:
    """The TLVs inside one DER SEQUENCE (definite lengths only, as DER has)."""
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = []
    while i < len(der):
        start, i = i, i + 1
        length = der[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(der[i : i + count], "big")
            i += count
        i += length
        out.append(der[start:i])
    return out


def big_crl(issuer: Issued, entries: int, *, skip: int | None = None) -> bytes:
    """A CRL with ``entries`` random 16-byte serials, built by splicing DER.

    cryptography's builder copies its entry list on every addition (quadratic for 1M entries),
    so the revoked-certificates SEQUENCE is encoded here and inserted into the TBSCertList of a
    builder-made empty CRL; the result is then signed with cryptography.
    """
    empty = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=30))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        .sign(issuer.key, hashes.SHA256())
    )
    tbs = _children(empty.tbs_certlist_bytes)
    date = _tlv(0x17, (NOW - dt.timedelta(days=1)).strftime("%y%m%d%H%M%SZ").encode())
    rows = []
    for _ in range(entries):
        serial = bytearray(os.urandom(16))
        serial[0] = (serial[0] & 0x3F) | 0x40  # positive, 16 bytes, never the leaf's
        rows.append(b"\x30\x21\x02\x10" + serial + date)
    revoked = _tlv(0x30, b"".join(rows))
    new_tbs = _tlv(0x30, b"".join(tbs[:5]) + revoked + b"".join(tbs[5:]))
    signature = issuer.key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    algorithm = _children(empty.public_bytes(serialization.Encoding.DER))[1]
    return _tlv(0x30, new_tbs + algorithm + _tlv(0x03, b"\x00" + signature))


def small_crl(issuer: Issued) -> bytes:
    return big_crl(issuer, 0)


def _pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            fn()
        count += 20
    return count / elapsed


def _rss_mb() -> float:
    """Peak resident size of this process image, MB. VmHWM, not ``ru_maxrss``: on Linux the
    latter survives exec, so a child would inherit the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_child(crl_path: str, issuer_pem: str) -> None:
    """Fresh-process measurement of loading the big CRL (prints JSON)."""
    issuer = x509.load_pem_x509_certificate(Path(issuer_pem).read_bytes())
    before = _rss_mb()
    start = time.perf_counter()
    index = CrlIndex.from_bytes(Path(crl_path).read_bytes(), "1M")
    ok = index.signed_by(issuer)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "load_s": elapsed,
                "rss_mb": _rss_mb() - before,
                "rss_total_mb": _rss_mb(),
                "entries": len(index),
                "signature_ok": ok,
            }
        )
    )


def _setup(cache: Path) -> tuple[Pki, Any, Path, bytes]:
    cache.mkdir(parents=True, exist_ok=True)
    pki = Pki.load(cache / "pki", key_bits=4096)
    card = pki.issue_card(CardIdentity("RPPS", default_rpps(), "CPS"), "2800000009")
    ca = pki.intermediates[Gamme.FORT]
    crl_path = cache / "ca-1m.crl"
    try:
        cached = x509.load_der_x509_crl(crl_path.read_bytes())
        usable = (
            cached.is_signature_valid(ca.key.public_key())
            and cached.next_update_utc is not None
            and cached.next_update_utc > NOW + dt.timedelta(days=1)
        )
    except (OSError, ValueError):
        usable = False
    if not usable:
        start = time.perf_counter()
        crl_path.write_bytes(big_crl(ca, ENTRIES))
        print(f"built the 1M-entry CRL in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    arl = small_crl(pki.roots[Gamme.FORT])
    return pki, card, crl_path, arl


def _pyhanko_rate(leaf: bytes, ca: bytes, root: bytes, crls: list[bytes], runs: int) -> float:
    from asn1crypto import crl as acrl  # type: ignore[import-untyped]
    from asn1crypto import x509 as ax509
    from pyhanko_certvalidator import CertificateValidator, ValidationContext

    context = ValidationContext(
        trust_roots=[ax509.Certificate.load(root)],
        other_certs=[ax509.Certificate.load(ca)],
        crls=[acrl.CertificateList.load(c) for c in crls],
        moment=NOW,
        revocation_mode="require",
    )
    leaf_cert = ax509.Certificate.load(leaf)

    async def check() -> None:
        validator = CertificateValidator(leaf_cert, validation_context=context)
        await validator.async_validate_usage({"digital_signature"})

    asyncio.run(check())  # warm-up (parses the CRL once, as the validator caches it)
    start = time.perf_counter()
    for _ in range(runs):
        asyncio.run(check())
    return runs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "mie-bench-trust"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per timed loop")
    parser.add_argument("--pyhanko-runs", type=int, default=3)
    parser.add_argument("--load-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        load_child(*args.load_child)
        return
    _pin_one_core()
    pki, card, crl_path, arl = _setup(args.cache)
    leaf = card.authentication.certificate
    ca, root = pki.intermediates[Gamme.FORT].certificate, pki.roots[Gamme.FORT].certificate
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    der = lambda c: c.public_bytes(serialization.Encoding.DER)  # noqa: E731
    issuer_pem = args.cache / "ca.pem"
    issuer_pem.write_bytes(pem(ca))

    child = subprocess.run(
        [sys.executable, __file__, "--load-child", str(crl_path), str(issuer_pem)],
        check=True,
        capture_output=True,
        text=True,
    )
    load = json.loads(child.stdout.strip().splitlines()[-1])

    big = CrlIndex.from_bytes(crl_path.read_bytes(), "1M")
    small_der = big_crl(pki.intermediates[Gamme.FORT], 1000)
    small = CrlIndex.from_bytes(small_der, "1k")
    crls = CrlSet.of([big, CrlIndex.from_bytes(arl, "arl")])
    verifier = (
        VerifierBuilder()
        .store(TrustStore.from_certificates([root], test=True))
        .usage(Usage.AUTH)
        .crls(crls)
        .build()
    )
    verifier.verify(leaf, [ca])  # warm: CRL signatures checked and cached here

    # The last entry: a listed serial costs a scan of the CRL (the index is a set of serials).
    *_, last = iter(big.crl)
    some_serial = last.serial_number
    lookups = {}
    for name, index in (("1k", small), ("1M", big)):
        rate = _rate(functools.partial(index.lookup, leaf.serial_number), args.seconds / 3)
        lookups[name] = 1e6 / rate
    hit_us = 1e6 / _rate(lambda: big.lookup(some_serial), args.seconds / 3)

    verify_rate = _rate(lambda: verifier.verify(leaf, [ca]), args.seconds)
    root_key, ca_key = root.public_key(), ca.public_key()
    if not (isinstance(root_key, rsa.RSAPublicKey) and isinstance(ca_key, rsa.RSAPublicKey)):
        raise TypeError("the benchmark chain is RSA")

    def floor() -> None:
        ca_key.verify(
            leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256()
        )
        root_key.verify(ca.signature, ca.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())

    floor_rate = _rate(floor, args.seconds)
    try:
        pyhanko_rate: float | None = _pyhanko_rate(
            der(leaf), der(ca), der(root), [crl_path.read_bytes(), arl], args.pyhanko_runs
        )
        pyhanko_small = _pyhanko_rate(der(leaf), der(ca), der(root), [small_der, arl], 50)
    except ImportError:
        pyhanko_rate = pyhanko_small = None

    rows = [
        ("mie verify (warm, 1M CRL)", f"{verify_rate:,.0f} /s", f"{1e6 / verify_rate:,.0f} us"),
        (
            "floor: 2 RSA-4096 signature checks",
            f"{floor_rate:,.0f} /s",
            f"{1e6 / floor_rate:,.0f} us",
        ),
        (
            "pyhanko-certvalidator (1M CRL)",
            f"{pyhanko_rate:,.2f} /s" if pyhanko_rate else "n/a",
            f"{1 / pyhanko_rate:,.2f} s" if pyhanko_rate else "n/a",
        ),
        (
            "pyhanko-certvalidator (1k CRL)",
            f"{pyhanko_small:,.0f} /s" if pyhanko_small else "n/a",
            f"{1e6 / pyhanko_small:,.0f} us" if pyhanko_small else "n/a",
        ),
        (
            "1M CRL load (parse+index+signature)",
            f"{load['load_s']:.2f} s",
            f"+{load['rss_mb']:.0f} MB RSS ({load['rss_total_mb']:.0f} MB total)",
        ),
        ("CRL lookup, 1k entries (miss)", f"{lookups['1k']:.3f} us", ""),
        ("CRL lookup, 1M entries (miss)", f"{lookups['1M']:.3f} us", ""),
        ("CRL lookup, 1M entries (hit, last entry)", f"{hit_us:.3f} us", "scan, entry decoded"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'rate / value':>16}  per item / note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    print(f"verify / floor cost ratio: {floor_rate / verify_rate:.2f}x (target <= 2)")
    print(
        json.dumps(
            {
                "verify_per_s": round(verify_rate, 1),
                "floor_per_s": round(floor_rate, 1),
                "pyhanko_per_s": round(pyhanko_rate, 3) if pyhanko_rate else None,
                "crl_1m_load_s": round(load["load_s"], 3),
                "crl_1m_rss_mb": round(load["rss_mb"], 1),
                "crl_lookup_us": round(lookups["1M"], 3),
                "crl_hit_1m_us": round(hit_us, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
