"""Hostile certificate and CRL files: linear PEM, size limits, bounded memory, only ``malformed``.

Regression tests for issue 7 items 2, 3, 12 and 13 (the file-input part).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core as acore  # type: ignore[import-untyped]
from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from mie.emulation.testpki import Gamme
from mie.trust import ErrorCode, VerificationError, load_certificates, load_crl
from mie.trust.parse import MAX_CERTIFICATE_FILE_BYTES, certificate_ders
from tests.trust.conftest import Files, cli, make_cert, person

ROOT = Path(__file__).resolve().parents[2]


def der_header(tag: int, length: int) -> bytes:
    """A DER tag and definite length."""
    if length < 0x80:
        return bytes([tag, length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size


def children(der: bytes) -> list[bytes]:
    """The TLVs inside one DER SEQUENCE (definite lengths, as DER has)."""
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = []
    while i < len(der):
        start = i
        length = der[i + 1]
        i += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(der[i : i + count], "big")
            i += count
        i += length
        out.append(der[start:i])
    return out


def zero_sequence(size: int) -> bytes:
    """A SEQUENCE of ``size`` zero bytes (``size / 2`` empty values: the memory bomb)."""
    return der_header(0x30, size) + b"\x00" * size


def resigned(files: Files, der: bytes, change: Callable[[Any], None]) -> bytes:
    """Re-encode a certificate after ``change`` and sign it again with the FORT CA key."""
    cert = ax509.Certificate.load(der)
    tbs = cert["tbs_certificate"]
    change(tbs)
    tbs_der = tbs.dump(force=True)
    return sign_tbs(files, tbs_der, cert["signature_algorithm"].dump())


def sign_tbs(files: Files, tbs_der: bytes, algorithm_der: bytes) -> bytes:
    """A certificate made of ``tbs_der`` signed by the FORT CA key."""
    key = files.pki.intermediates[Gamme.FORT].key
    signature = key.sign(tbs_der, padding.PKCS1v15(), hashes.SHA256())
    bits = b"\x00" + signature
    body = tbs_der + algorithm_der + der_header(0x03, len(bits)) + bits
    return der_header(0x30, len(body)) + body


def _leaf_der(files: Files) -> bytes:
    ca = files.pki.intermediates[Gamme.FORT]
    return make_cert(ca, person()).certificate.public_bytes(serialization.Encoding.DER)


def _nested_subject(files: Files, depth: int) -> bytes:
    """A certificate whose subject holds an attribute value nested ``depth`` SEQUENCEs deep."""
    value = b"\x05\x00"
    for _ in range(depth):
        value = der_header(0x30, len(value)) + value
    oid = acore.ObjectIdentifier("1.2.250.1.999").dump()
    pair = der_header(0x30, len(oid) + len(value)) + oid + value
    rdn = der_header(0x31, len(pair)) + pair
    name = der_header(0x30, len(rdn)) + rdn
    der = _leaf_der(files)
    tbs = children(children(der)[0])
    subject = x509.load_der_x509_certificate(der).subject.public_bytes()
    body = b"".join(name if part == subject else part for part in tbs)
    algorithm = children(der)[1]
    return sign_tbs(files, der_header(0x30, len(body)) + body, algorithm)


def _duplicate_extension(files: Files) -> bytes:
    def change(tbs: Any) -> None:
        extensions = tbs["extensions"]
        extensions.append(ax509.Extension.load(extensions[0].dump()))

    return resigned(files, _leaf_der(files), change)


def _bad_version(files: Files) -> bytes:
    def change(tbs: Any) -> None:
        tbs["version"] = 7

    return resigned(files, _leaf_der(files), change)


def _x400_alt_name(files: Files) -> bytes:
    # A SubjectAltName holding an x400Address, which cryptography cannot represent.
    san = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"0\x02\xa3\x00"
    )
    ca = files.pki.intermediates[Gamme.FORT]
    cert = make_cert(ca, person(), extra=[(san, False)]).certificate
    return cert.public_bytes(serialization.Encoding.DER)


def _point_off_curve(files: Files) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = files.pki.intermediates[Gamme.FORT]
    der = make_cert(ca, person(), key=key).certificate.public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.DER
    )

    def change(tbs: Any) -> None:
        info = tbs["subject_public_key_info"]
        point = bytearray(info["public_key"].native)
        point[-1] ^= 0x01  # no longer on the curve
        tbs["subject_public_key_info"] = akeys.PublicKeyInfo(
            {"algorithm": info["algorithm"], "public_key": bytes(point)}
        )

    return resigned(files, der, change)


def _long_country(files: Files) -> bytes:
    # cryptography parses a six-letter country name with a UserWarning on every access.
    def change(tbs: Any) -> None:
        tbs["subject"] = ax509.Name.build({"country_name": "FRANCE", "common_name": "X"})

    return resigned(files, _leaf_der(files), change)


HOSTILE: dict[str, Callable[[Files], bytes]] = {
    "long-country.der": _long_country,
    "nested-subject.der": lambda files: _nested_subject(files, 1000),
    "duplicate-extension.der": _duplicate_extension,
    "version-7.der": _bad_version,
    "x400-alt-name.der": _x400_alt_name,
    "point-off-curve.der": _point_off_curve,
    "zero-sequence.der": lambda files: zero_sequence(5_000_000),
    "asn1-trailer.der": lambda files: b"\x30\x03\x02\x01",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_certificate_is_malformed_in_one_line(
    capsys: pytest.CaptureFixture[str], files: Files, name: str
) -> None:
    path = files.write(name, HOSTILE[name](files))
    code, out, err = cli(capsys, "verify-cert", path, "--json", "--trust", files.root_cert())
    assert code == 2, err
    assert out["error"]["code"] == "malformed"
    assert name in out["error"]["message"]
    assert "\n" not in out["error"]["message"]
    assert "internal error" not in err and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("mie: error: ")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_certificate_raises_only_verification_error(files: Files, name: str) -> None:
    data = HOSTILE[name](files)
    with pytest.raises(VerificationError) as info:
        load_certificates(data, name)
    assert info.value.code is ErrorCode.MALFORMED
    assert "\n" not in info.value.message


def test_nesting_is_refused_before_parsing(files: Files) -> None:
    with pytest.raises(VerificationError, match="nested deeper than"):
        load_certificates(_nested_subject(files, 30), "deep.der")


def test_asn1crypto_message_keeps_one_line(files: Files) -> None:
    der = bytearray(_leaf_der(files))
    start = der.index(b"\x17\x0d")  # notBefore: month 13 parses in neither library
    der[start + 4 : start + 6] = b"13"
    with pytest.raises(VerificationError) as info:
        load_certificates(bytes(der), "month-13.der")
    assert "while parsing" not in info.value.message and "\n" not in info.value.message


PEM_FLOODS = {
    "begin-lines": b"-----BEGIN CERTIFICATE-----\n",
    "begin-crl-lines": b"-----BEGIN X509 CRL-----\n",
    "begin-no-newline": b"-----BEGIN CERTIFICATE-----",
    "begin-and-other-end": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END X509 CRL-----\n",
}


@pytest.mark.parametrize("flood", sorted(PEM_FLOODS))
def test_pem_scan_is_linear_at_10_mb(flood: str) -> None:
    line = PEM_FLOODS[flood]
    data = line * (10_000_000 // len(line))
    start = time.monotonic()
    with pytest.raises(VerificationError) as info:
        list(certificate_ders(data, "flood.pem"))
    with pytest.raises(VerificationError):
        load_crl(data, "flood.crl")
    # The regular expression this replaces took 11 s for 256 KB and never ended at 2 MB.
    assert time.monotonic() - start < 10
    assert info.value.code is ErrorCode.MALFORMED


def test_pem_between_text_and_several_blocks(files: Files) -> None:
    ca = files.pki.intermediates[Gamme.FORT].certificate.public_bytes(serialization.Encoding.PEM)
    root = files.pki.roots[Gamme.FORT].certificate.public_bytes(serialization.Encoding.PEM)
    bundle = b"Subject: the CA\r\n" + ca.replace(b"\n", b"\r\n") + b"\nthe root:\n" + root
    certs = load_certificates(bundle, "bundle.pem")
    assert [c.subject for c in certs] == [
        files.pki.intermediates[Gamme.FORT].certificate.subject,
        files.pki.roots[Gamme.FORT].certificate.subject,
    ]
    with pytest.raises(VerificationError, match="no END line"):
        load_certificates(ca[:-30] + root, "cut.pem")


def test_size_limits_name_the_limit(
    capsys: pytest.CaptureFixture[str], files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = files.write("big.pem", b"-" * (MAX_CERTIFICATE_FILE_BYTES + 1))
    code, out, _ = cli(capsys, "verify-cert", big, "--json")
    assert code == 2 and f"{MAX_CERTIFICATE_FILE_BYTES}-byte limit" in out["error"]["message"]
    crl = files.write("c.crl", files.pki.crl(Gamme.FORT).public_bytes(serialization.Encoding.DER))
    monkeypatch.setenv("MIE_CRL_MAX_BYTES", "100")
    leaf = files.cert("leaf.pem", x509.load_der_x509_certificate(_leaf_der(files)))
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", "--crl", crl)
    assert code == 2 and "100-byte limit" in out["error"]["message"]
    assert load_crl(Path(crl).read_bytes(), "c.crl", max_bytes=10_000).issuer is not None


def dense_crl(files: Files, entries: int) -> bytes:
    """A signed CRL of ``entries`` revoked serials of 3-4 bytes (the densest real encoding)."""
    issuer = files.pki.intermediates[Gamme.FORT]
    empty = files.pki.crl(Gamme.FORT)
    fields = children(empty.tbs_certlist_bytes)
    date = b"\x17\x0d" + dt.datetime.now(dt.UTC).strftime("%y%m%d%H%M%SZ").encode()
    rows = []
    for serial in range(0x100000, 0x100000 + entries):
        number = serial.to_bytes(3, "big")
        rows.append(der_header(0x30, 5 + len(date)) + b"\x02\x03" + number + date)
    revoked = b"".join(rows)
    # version, signature, issuer, thisUpdate, nextUpdate, then the entries, then extensions
    body = b"".join(fields[:5]) + der_header(0x30, len(revoked)) + revoked + b"".join(fields[5:])
    new_tbs = der_header(0x30, len(body)) + body
    signature = issuer.key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    algorithm = children(empty.public_bytes(serialization.Encoding.DER))[1]
    bits = b"\x00" + signature
    outer = new_tbs + algorithm + der_header(0x03, len(bits)) + bits
    return der_header(0x30, len(outer)) + outer


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from mie.trust import CrlIndex, VerificationError, load_certificates

    def status(field):  # kB figures of /proc/self/status, in bytes
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

    data = Path(sys.argv[2]).read_bytes()
    before = status("VmRSS")
    try:
        if sys.argv[1] == "crl":
            index = CrlIndex.from_bytes(data, "probe")
            index.lookup(0x100001)
            outcome = len(index)
        else:
            outcome = len(load_certificates(data, "probe"))
    except VerificationError as e:
        outcome = e.code.value
    grown = status("VmHWM") - before  # peak during parsing, over the resident size before
    print(json.dumps({"outcome": outcome, "grown": grown, "size": len(data)}))
    """
)

# The bound stated in docs/architecture.md: parsing an input costs at most this multiple of its
# size in memory (beyond the bytes themselves and a small constant).
MEMORY_MULTIPLE = 4
MEMORY_CONSTANT = 16 * 1024 * 1024


def _probe(kind: str, path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return dict(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("crl", "dense", 300_000),
        ("crl", "zeros", "malformed"),
        ("cert", "zeros", "malformed"),
        ("cert", "pkcs7-zeros", "malformed"),
    ],
)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux /proc")
def test_memory_is_a_bounded_multiple_of_the_input(
    files: Files, tmp_path: Path, kind: str, name: str, expected: Any
) -> None:
    oid = acore.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
    data = {
        "dense": lambda: dense_crl(files, 300_000),
        "zeros": lambda: zero_sequence(20_000_000 if kind == "crl" else 4_000_000),
        "pkcs7-zeros": lambda: der_header(0x30, len(oid) + 4_000_000) + oid + b"\0" * 4_000_000,
    }[name]()
    path = tmp_path / "probe.bin"
    path.write_bytes(data)
    measured = _probe(kind, path)
    assert measured["outcome"] == expected
    # Before the limits, a 20 MB SEQUENCE of zeros took 1.6 GB on the CRL path (80 times).
    assert measured["grown"] < MEMORY_MULTIPLE * measured["size"] + MEMORY_CONSTANT, measured


def test_command_line_files_are_read_no_further_than_the_limits(
    capsys: pytest.CaptureFixture[str], files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIE_CRL_MAX_BYTES", "100")
    huge = files.write("huge.crl", b"\0" * (MAX_CERTIFICATE_FILE_BYTES + 1))
    leaf = files.cert("leaf.pem", x509.load_der_x509_certificate(_leaf_der(files)))
    code, out, _ = cli(capsys, "verify-cert", leaf, "--json", "--crl", huge)
    assert code == 2
    assert out["error"]["message"].endswith(f"larger than {MAX_CERTIFICATE_FILE_BYTES} bytes")
