"""mie.fido.mds: MDS3 blobs built and signed by TestMds (ES256 and RS256), every refusal of the
loader (plan §5.2 steps 1-6) and every policy check (statuses, certification, unknown models)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from mie.core.errors import ErrorCode
from mie.emulation.fido_mds import SignerFault, TestMds
from mie.emulation.fido_pki import EMULATOR_AAGUID, OTHER_AAGUID, TestAttestationPki
from mie.fido import mds
from mie.fido.errors import (
    FidoPolicyError,
    MetadataFormatError,
    MetadataStaleError,
    MetadataStatusError,
    MetadataUntrustedError,
    UnknownAaguidError,
)
from mie.fido.mds import MDS_ROOT_SHA256, MetadataIndex, StatusReport, bundled_root, fetch_blob
from mie.fido.policy import DEFAULT_REFUSE, MetadataPolicy
from mie.trust import CrlCache, RevocationMode, RevocationStatus

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()
THIRD_AAGUID = bytes.fromhex("6d69652d544553542d5448495244ff03")


@pytest.fixture(scope="module")
def test_mds() -> TestMds:
    return TestMds.generate(now=NOW)


@pytest.fixture(scope="module")
def pki() -> TestAttestationPki:
    return TestAttestationPki.generate(now=NOW)


def _policy(**kwargs: Any) -> MetadataPolicy:
    return MetadataPolicy(blob=Path("unused.jwt"), **kwargs)


def _load(test_mds: TestMds, blob: bytes, **kwargs: Any) -> MetadataIndex:
    kwargs.setdefault("root", test_mds.root)
    kwargs.setdefault("at", NOW)
    return MetadataIndex.load(blob, **kwargs)


def _one(
    test_mds: TestMds, pki: TestAttestationPki, statuses: Any = None, **kwargs: Any
) -> MetadataIndex:
    """An index holding the emulator's model with ``statuses``."""
    extra = {} if statuses is None else {"statuses": statuses}
    entry = test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate], **extra)
    return _load(test_mds, test_mds.blob([entry], **kwargs))


def _parts(blob: bytes) -> list[bytes]:
    return blob.split(b".")


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _header(test_mds: TestMds, **fields: Any) -> bytes:
    """A header like TestMds's, members replaced or (value None) removed."""
    blob = test_mds.blob([])
    header = json.loads(base64.urlsafe_b64decode(_parts(blob)[0] + b"=="))
    header.update(fields)
    return json.dumps({k: v for k, v in header.items() if v is not None}).encode()


# --- accepted blobs --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_valid_blob(test_mds: TestMds, pki: TestAttestationPki, alg: str) -> None:
    entries = [
        test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate]),
        test_mds.entry(OTHER_AAGUID, [], statuses=[("FIDO_CERTIFIED_L2", "2025-06-01")]),
    ]
    blob = test_mds.blob(entries, no=57, alg=alg)  # type: ignore[arg-type]
    index = _load(test_mds, blob)
    assert (index.no, len(index), index.reasons) == (57, 2, ())
    assert index.next_update == TODAY + dt.timedelta(days=30)
    assert index.signer.subject.rfc4514_string().startswith("CN=mie TEST FIDO MDS signer")
    assert index.legal_header.startswith("mie TEST metadata")
    view = index.entry(EMULATOR_AAGUID)
    assert view is not None
    assert view.description == "mie TEST emulated authenticator"
    assert view.statuses == (StatusReport("FIDO_CERTIFIED_L1", dt.date(2026, 1, 1), None),)
    assert view.roots == (pki.root.certificate,)
    assert view.certification == "L1"
    other = index.entry(OTHER_AAGUID)
    assert other is not None and other.certification == "L2" and other.roots == ()
    assert index.entry(THIRD_AAGUID) is None
    # python-fido2 read the same payload.
    assert index.payload.no == 57 and len(index.payload.entries) == 2
    assert index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW) == view


def test_next_update_today_is_not_stale(test_mds: TestMds, pki: TestAttestationPki) -> None:
    assert _one(test_mds, pki, next_update=TODAY).reasons == ()


def test_newer_than_min_no(test_mds: TestMds) -> None:
    assert _load(test_mds, test_mds.blob([], no=58), min_no=57).no == 58


def test_from_policy_reads_the_files(test_mds: TestMds, tmp_path: Path) -> None:
    (tmp_path / "mds.jwt").write_bytes(test_mds.blob([], no=3))
    (tmp_path / "root.pem").write_bytes(test_mds.root_pem)
    policy = MetadataPolicy(blob=tmp_path / "mds.jwt", root=tmp_path / "root.pem")
    assert MetadataIndex.from_policy(policy, at=NOW).no == 3
    with pytest.raises(MetadataStaleError):
        MetadataIndex.from_policy(policy, at=NOW, min_no=3)


def test_from_policy_missing_blob(test_mds: TestMds, tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(test_mds.root_pem)
    policy = MetadataPolicy(blob=tmp_path / "absent.jwt", root=tmp_path / "root.pem")
    with pytest.raises(MetadataFormatError, match="Cannot read the MDS blob"):
        MetadataIndex.from_policy(policy, at=NOW)


def _within(seconds: float, call: Callable[[], object], unblock: Path | None = None) -> object:
    """:return: what ``call`` raised, or failed with, within ``seconds`` (a call still waiting
    then is a failure; ``unblock``, a FIFO, is opened for writing so the thread can end)."""
    import threading

    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except Exception as e:  # the outcome is judged by the test
            outcome.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() and unblock is not None:
        os.close(os.open(unblock, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"the call waited on {unblock} for over {seconds} s")
    assert outcome, "the call did not end"
    return outcome[0]


@pytest.mark.parametrize("name", ["root", "blob"])
def test_a_fifo_is_refused_not_waited_on(test_mds: TestMds, tmp_path: Path, name: str) -> None:
    # Review of issue 10: mds._read_file opened without O_NONBLOCK, so a FIFO with no writer
    # hung the library caller (the CLI checks first; a library caller had no guard).
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "root.pem").write_bytes(test_mds.root_pem)
    if name == "root":
        call: Callable[[], object] = lambda: mds.load_root(fifo)  # noqa: E731
    else:
        policy = MetadataPolicy(blob=fifo, root=tmp_path / "root.pem")
        call = lambda: MetadataIndex.from_policy(policy, at=NOW)  # noqa: E731
    error = _within(5.0, call, unblock=fifo)
    assert isinstance(error, MetadataFormatError)
    assert str(error) == f"Cannot read the MDS {name} {fifo}: not a regular file"


def test_a_device_is_refused_not_read_to_the_bound(test_mds: TestMds, tmp_path: Path) -> None:
    # /dev/zero was read to 64 MiB before the size refusal; now refused at once, unread.
    (tmp_path / "root.pem").write_bytes(test_mds.root_pem)
    policy = MetadataPolicy(blob=Path("/dev/zero"), root=tmp_path / "root.pem")
    with pytest.raises(MetadataFormatError) as caught:
        MetadataIndex.from_policy(policy, at=NOW)
    assert str(caught.value) == "Cannot read the MDS blob /dev/zero: not a regular file"
    with pytest.raises(MetadataFormatError, match="not a regular file"):
        mds.load_root("/dev/zero")


def test_an_oversized_file_is_refused_by_its_size(tmp_path: Path) -> None:
    big = tmp_path / "root.pem"
    with big.open("wb") as handle:
        handle.truncate(1024 * 1024 + 1)  # sparse: its size, not its bytes
    with pytest.raises(MetadataFormatError, match=r"is larger than 1048576 bytes"):
        mds.load_root(big)


def test_root_file_with_two_certificates(test_mds: TestMds, tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(test_mds.root_pem * 2)
    with pytest.raises(FidoPolicyError, match="2 certificates"):
        mds.load_root(tmp_path / "root.pem")


def test_bundled_root_is_the_pinned_globalsign_r3() -> None:
    root = bundled_root()
    der = root.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == MDS_ROOT_SHA256
    assert MDS_ROOT_SHA256 == "cbb522d7b7f127ad6a0113865bdf1cd4102e7d0759af635a7cf4720dc963c53b"
    assert root.subject.rfc4514_string() == "CN=GlobalSign,O=GlobalSign,OU=GlobalSign Root CA - R3"
    assert root.not_valid_after_utc == dt.datetime(2029, 3, 18, 10, 0, tzinfo=dt.UTC)


def test_bundled_root_checked_against_its_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mds, "MDS_ROOT_SHA256", "00" * 32)
    with pytest.raises(MetadataUntrustedError, match="does not match its pin"):
        bundled_root()


# --- untrusted blobs -------------------------------------------------------------------------


def _untrusted(test_mds: TestMds, blob: bytes, match: str, **kwargs: Any) -> None:
    with pytest.raises(MetadataUntrustedError, match=match) as caught:
        _load(test_mds, blob, **kwargs)
    assert caught.value.code is ErrorCode.METADATA_UNTRUSTED


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_bad_signature(test_mds: TestMds, pki: TestAttestationPki, alg: str) -> None:
    entry = test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    blob = test_mds.blob([entry], alg=alg, signer_fault=SignerFault.BAD_SIGNATURE)  # type: ignore[arg-type]
    _untrusted(test_mds, blob, "signature does not verify")


def test_payload_changed_after_signing(test_mds: TestMds) -> None:
    header, payload, signature = _parts(test_mds.blob([], no=1))
    forged = _b64url(base64.urlsafe_b64decode(payload + b"==").replace(b'"no":1', b'"no":9'))
    _untrusted(test_mds, b".".join([header, forged, signature]), "signature does not verify")


def test_signer_chained_to_another_root(test_mds: TestMds) -> None:
    blob = test_mds.blob([], signer_fault=SignerFault.OTHER_ROOT)
    _untrusted(test_mds, blob, "signer chain: untrusted")


def test_expired_signer(test_mds: TestMds) -> None:
    _untrusted(test_mds, test_mds.blob([], signer_fault=SignerFault.EXPIRED), "chain: expired")


def test_x5u_only(test_mds: TestMds) -> None:
    _untrusted(test_mds, test_mds.blob([], signer_fault=SignerFault.X5U_ONLY), "x5u")


def test_x5u_beside_x5c(test_mds: TestMds) -> None:
    header = _header(test_mds, x5u="https://mds.example.invalid/k.pem")
    _untrusted(test_mds, test_mds.sign(b"{}", header=header), "x5u")


def test_no_x5c(test_mds: TestMds) -> None:
    _untrusted(test_mds, test_mds.sign(b"{}", header=_header(test_mds, x5c=None)), "no certificate")


@pytest.mark.parametrize("alg", ["none", "HS256", "ES384", "PS256", None])
def test_other_algorithm(test_mds: TestMds, alg: str | None) -> None:
    header = _header(test_mds, alg=alg) if alg else _header(test_mds, alg=None)
    _untrusted(test_mds, test_mds.sign(b"{}", header=header), "not RS256 or ES256")


def test_algorithm_not_the_signer_key(test_mds: TestMds) -> None:
    # The header says RS256 while the chain is the P-256 signer's.
    header = _header(test_mds, alg="RS256")
    _untrusted(test_mds, test_mds.sign(b"{}", header=header), "no RSA key")


def test_es256_signature_length(test_mds: TestMds) -> None:
    header, payload, signature = _parts(test_mds.blob([]))
    der_length = _b64url(base64.urlsafe_b64decode(signature + b"==") + b"\x00")
    _untrusted(test_mds, b".".join([header, payload, der_length]), "not 64 bytes")


def test_current_crls_hard_revocation(test_mds: TestMds) -> None:
    index = _load(test_mds, test_mds.blob([]), crls=test_mds.crls(), revocation=RevocationMode.HARD)
    assert index.no == 1
    assert index.signer_revocation is RevocationStatus.GOOD


def test_soft_load_without_crls_is_not_a_warning(
    test_mds: TestMds, caplog: pytest.LogCaptureFixture
) -> None:
    # A blob read from its file has no CRL: kept on the index, not warned about at every load.
    with caplog.at_level(logging.INFO, logger="mie"):
        index = _load(test_mds, test_mds.blob([]))
    assert index.signer_revocation is RevocationStatus.UNKNOWN
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Outside a blob load, mie.trust still warns.
    logging.getLogger("mie.trust.verify").warning("Revocation status unknown (soft mode): x")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("mode", [RevocationMode.SOFT, RevocationMode.HARD])
def test_revoked_signer(test_mds: TestMds, mode: RevocationMode) -> None:
    crls = test_mds.crls(revoke_signer=True)
    _untrusted(test_mds, test_mds.blob([]), "chain: revoked", crls=crls, revocation=mode)


def test_hard_revocation_without_crls(test_mds: TestMds) -> None:
    blob = test_mds.blob([])
    _untrusted(test_mds, blob, "chain: revocation_unknown", revocation=RevocationMode.HARD)


def test_test_blob_under_the_bundled_root(test_mds: TestMds) -> None:
    _untrusted(test_mds, test_mds.blob([]), "signer chain: untrusted", root=None)


def test_under_the_bundled_root_the_signer_is_the_fido_alliances(
    test_mds: TestMds, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GlobalSign Root CA - R3 issues certificates to anyone: a blob signed by one chaining to
    # it, but not the FIDO Alliance's, is refused. Here the TEST root stands for the bundled one.
    monkeypatch.setattr(mds, "bundled_root", lambda: test_mds.root)
    blob = test_mds.blob([])
    _untrusted(test_mds, blob, "not the FIDO Alliance's", root=None)
    # The signer named as the FIDO Alliance's is accepted; an operator's own root names none.
    monkeypatch.setattr(mds, "MDS_SIGNER_NAMES", frozenset({"mie test fido mds signer"}))
    assert _load(test_mds, blob, root=None).no == 1
    monkeypatch.setattr(mds, "MDS_SIGNER_NAMES", frozenset({"mds.fidoalliance.org"}))
    assert _load(test_mds, blob).no == 1


# --- stale blobs -----------------------------------------------------------------------------


def test_past_next_update(test_mds: TestMds, pki: TestAttestationPki) -> None:
    yesterday = TODAY - dt.timedelta(days=1)
    with pytest.raises(MetadataStaleError, match=f"past its nextUpdate {yesterday}") as caught:
        _one(test_mds, pki, no=7, next_update=yesterday)
    assert caught.value.code is ErrorCode.METADATA_STALE


def test_past_next_update_warn(test_mds: TestMds, pki: TestAttestationPki) -> None:
    yesterday = TODAY - dt.timedelta(days=1)
    entry = test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    blob = test_mds.blob([entry], no=7, next_update=yesterday)
    index = _load(test_mds, blob, stale="warn")
    assert index.reasons == (f"MDS blob 7 is past its nextUpdate {yesterday.isoformat()}",)
    assert index.check(EMULATOR_AAGUID, policy=_policy(stale="warn"), at=NOW) is not None
    with pytest.raises(MetadataStaleError):
        index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW)


def test_index_goes_stale_while_held(test_mds: TestMds, pki: TestAttestationPki) -> None:
    index = _one(test_mds, pki)
    later = NOW + dt.timedelta(days=31)
    with pytest.raises(MetadataStaleError, match="past its nextUpdate"):
        index.check(EMULATOR_AAGUID, policy=_policy(), at=later)


@pytest.mark.parametrize("min_no", [57, 58])
def test_no_not_increasing(test_mds: TestMds, min_no: int) -> None:
    with pytest.raises(MetadataStaleError, match=f"blob 57 is not newer than {min_no}"):
        _load(test_mds, test_mds.blob([], no=57), min_no=min_no)


def test_no_not_increasing_even_under_warn(test_mds: TestMds) -> None:
    with pytest.raises(MetadataStaleError):
        _load(test_mds, test_mds.blob([], no=57), min_no=57, stale="warn")


# --- malformed blobs -------------------------------------------------------------------------


def _malformed(test_mds: TestMds, blob: bytes, match: str) -> None:
    with pytest.raises(MetadataFormatError, match=match) as caught:
        _load(test_mds, blob)
    assert caught.value.code is ErrorCode.MALFORMED


def _edit(part: int, edit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def apply(blob: bytes) -> bytes:
        parts = _parts(blob)
        parts[part] = edit(parts[part])
        return b".".join(parts)

    return apply


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda b: b.rsplit(b".", 1)[0], "2 parts instead of 3"),
        (lambda b: b + b".", "4 parts"),
        (lambda b: b + b"\n", "not unpadded base64url"),
        (_edit(2, lambda p: b""), "signature is not unpadded base64url"),
        (_edit(1, lambda p: p + b"="), "payload is not unpadded base64url"),
        (_edit(0, lambda p: p.replace(b"e", b"+", 1)), "header is not unpadded base64url"),
        (_edit(1, lambda p: p + b"A"), "payload is not unpadded base64url"),
    ],
)
def test_not_a_compact_jws(test_mds: TestMds, edit: Callable[[bytes], bytes], match: str) -> None:
    _malformed(test_mds, edit(test_mds.blob([])), match)


def test_non_canonical_base64url(test_mds: TestMds) -> None:
    # A payload of 2 bytes encodes in 3 characters: the last one carries 2 unused bits.
    blob = test_mds.sign(b"{}")
    header, payload, signature = _parts(blob)
    assert payload == b"e30"
    _malformed(test_mds, b".".join([header, b"e31", signature]), "not canonical")


def test_too_large(test_mds: TestMds, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = test_mds.blob([])
    monkeypatch.setattr(mds, "MAX_BLOB_BYTES", len(blob) - 1)
    _malformed(test_mds, blob, "larger than")


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b'{"alg":"ES256","alg":"ES256","x5c":[]}', "duplicate key 'alg'"),
        (b'["ES256"]', "not a JSON object"),
        (b"not json", "not JSON"),
        (b'{"alg":"ES256","x5c":[],"crit":["b64"]}', "unknown member 'crit'"),
        (b'{"alg":"ES256","x5c":[],"kid":"1"}', "unknown member 'kid'"),
        (b'{"alg":"ES256","typ":"JOSE","x5c":["AA=="]}', "typ is not JWT"),
        (b'{"alg":"ES256","x5c":[]}', "not a list of 1 to 5"),
        (b'{"alg":"ES256","x5c":"MIIB"}', "not a list of 1 to 5"),
        (b'{"alg":"ES256","x5c":["AA==","AA==","AA==","AA==","AA==","AA=="]}', "1 to 5"),
        (b'{"alg":"ES256","x5c":["A-B_"]}', r"x5c\[0\] is not base64"),
        (b'{"alg":"ES256","x5c":["AB=="]}', r"x5c\[0\] is not canonical base64"),
        (b'{"alg":"ES256","x5c":[5]}', r"x5c\[0\] is not base64"),
        (b'{"alg":"ES256","x5c":["MAA="]}', "signer chain"),
    ],
)
def test_malformed_header(test_mds: TestMds, header: bytes, match: str) -> None:
    _malformed(test_mds, test_mds.sign(b"{}", header=header), match)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b'{"legalHeader":"x","no":1,"no":2,"nextUpdate":"2099-01-01","entries":[]}', "duplicate"),
        (b"[]", "not a JSON object"),
        (b'{"no":1,"nextUpdate":"2099-01-01","entries":[]}', "no legalHeader"),
        (b'{"legalHeader":"x","nextUpdate":"2099-01-01","entries":[]}', "no no"),
        (b'{"legalHeader":"x","no":"1","nextUpdate":"2099-01-01","entries":[]}', "no is not"),
        (b'{"legalHeader":"x","no":-1,"nextUpdate":"2099-01-01","entries":[]}', "no is not"),
        (b'{"legalHeader":"x","no":1.5,"nextUpdate":"2099-01-01","entries":[]}', "no is not"),
        (b'{"legalHeader":"x","no":1e400,"nextUpdate":"2099-01-01","entries":[]}', "number"),
        (
            b'{"legalHeader":"x","no":' + b"9" * 50 + b',"nextUpdate":"2099-01-01","entries":[]}',
            "unusable number",
        ),
        (b'{"legalHeader":"x","no":1,"nextUpdate":"2099-13-01","entries":[]}', "not a date"),
        (b'{"legalHeader":"x","no":1,"nextUpdate":"20990101","entries":[]}', "YYYY-MM-DD"),
        (b'{"legalHeader":1,"no":1,"nextUpdate":"2099-01-01","entries":[]}', "legalHeader"),
        (b'{"legalHeader":"x","no":1,"nextUpdate":"2099-01-01","entries":{}}', "not a list"),
        (
            b'{"legalHeader":"x","no":1,"nextUpdate":"2099-01-01","entries":[1]}',
            "not a JSON object",
        ),
        (b'{"legalHeader":"x","no":1,"nextUpdate":"2099-01-01","entries":[[[[' * 10, "JSON"),
        (
            b'{"legalHeader":"x","no":1,"nextUpdate":"2099-01-01","entries":[],"d":'
            + b"[" * 40
            + b"]" * 40
            + b"}",
            "deeper",
        ),
        (b"\xff", "UTF-8"),
    ],
)
def test_malformed_payload(test_mds: TestMds, payload: bytes, match: str) -> None:
    _malformed(test_mds, test_mds.sign(payload), match)


def _blob_with(
    test_mds: TestMds, pki: TestAttestationPki, change: Callable[[dict[str, Any]], None]
) -> bytes:
    entry = test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    change(entry)
    return test_mds.blob([entry])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda e: e.pop("statusReports"), "MDS3 format"),
        (lambda e: e.pop("timeOfLastStatusChange"), "MDS3 format"),
        (lambda e: e["metadataStatement"].pop("upv"), "MDS3 format"),
        (lambda e: e.update(timeOfLastStatusChange="yesterday"), "MDS3 format"),
        # python-fido2 reads dates and base64 of every entry: those refuse the whole blob.
        (lambda e: e["statusReports"][0].update(effectiveDate="2026-02-30"), "MDS3 format"),
        (
            lambda e: e["metadataStatement"].update(attestationRootCertificates=["not b64"]),
            "MDS3 format",
        ),
        (lambda e: e.update(aaguid="6d69652d54455354"), "aaguid is not a UUID"),
        (lambda e: e.update(aaguid=7), "aaguid is not a UUID"),
        (lambda e: e.update(attestationCertificateKeyIdentifiers=["zz"]), "key identifier"),
    ],
)
def test_entry_breaks_mds3(
    test_mds: TestMds, pki: TestAttestationPki, change: Callable[[dict[str, Any]], None], match: str
) -> None:
    _malformed(test_mds, _blob_with(test_mds, pki, change), match)


def test_duplicate_aaguid(test_mds: TestMds, pki: TestAttestationPki) -> None:
    entry = test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    _malformed(test_mds, test_mds.blob([entry, entry]), "listed twice")


def test_duplicate_aaguid_in_upper_case(test_mds: TestMds, pki: TestAttestationPki) -> None:
    entry = test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    upper = dict(entry, aaguid=entry["aaguid"].upper())
    _malformed(test_mds, test_mds.blob([entry, upper]), "listed twice")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda e: e["metadataStatement"].update(attestationRootCertificates=["MAA="]), "root 0"),
        (lambda e: e["metadataStatement"].update(attestationRootCertificates=["AB=="]), "base64"),
        (lambda e: e["statusReports"][0].update(effectiveDate="20260203"), "not a YYYY-MM-DD"),
        (lambda e: e["statusReports"][0].update(certificate="%%"), "base64"),
        (lambda e: e["statusReports"][0].update(status=""), "status is not"),
        (lambda e: e.update(statusReports=[]), "statusReports"),
        (lambda e: e["metadataStatement"].update(description=["x"]), "description"),
    ],
)
def test_broken_entry_refuses_that_model_only(
    test_mds: TestMds,
    pki: TestAttestationPki,
    change: Callable[[dict[str, Any]], None],
    match: str,
) -> None:
    broken = test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate])
    change(broken)
    good = test_mds.entry(OTHER_AAGUID, [pki.root.certificate])
    index = _load(test_mds, test_mds.blob([broken, good]))
    with pytest.raises(MetadataFormatError, match=match):
        index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW)
    assert index.check(OTHER_AAGUID, policy=_policy(), at=NOW) is not None


def test_unknown_status_kept_and_refusing_nothing(
    test_mds: TestMds, pki: TestAttestationPki
) -> None:
    statuses = [("FIDO_CERTIFIED_L1", "2026-01-01"), ("QUANTUM_SAFE_CERTIFIED", "2026-02-01")]
    index = _one(test_mds, pki, statuses)
    view = index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW)
    assert view is not None
    assert view.statuses[1] == StatusReport("QUANTUM_SAFE_CERTIFIED", dt.date(2026, 2, 1), None)
    assert view.certification == "L1"
    # python-fido2's enum maps the unknown string to None: mie kept it.
    assert index.payload.entries[0].status_reports[1].status is None


def test_naive_time_refused(test_mds: TestMds) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        MetadataIndex.load(test_mds.blob([]), root=test_mds.root, at=dt.datetime(2026, 1, 1))


def test_aaguid_length(test_mds: TestMds, pki: TestAttestationPki) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        _one(test_mds, pki).entry(EMULATOR_AAGUID[:15])


def test_key_identifier_index(test_mds: TestMds, pki: TestAttestationPki) -> None:
    shared, own = b"\x01" * 20, b"\x02" * 20
    entries = [
        test_mds.entry(EMULATOR_AAGUID, [pki.root.certificate], key_identifiers=[own, shared]),
        test_mds.entry(OTHER_AAGUID, [], key_identifiers=[shared]),
    ]
    index = _load(test_mds, test_mds.blob(entries))
    view = index.entry_by_key_identifier(own)
    assert view is not None and view.roots == (pki.root.certificate,)
    assert index.entry_by_key_identifier(shared) is None  # two models: ambiguous
    assert index.entry_by_key_identifier(b"\x03" * 20) is None


# --- the policy checks -----------------------------------------------------------------------


def test_unknown_aaguid_required(test_mds: TestMds, pki: TestAttestationPki) -> None:
    index = _one(test_mds, pki)
    with pytest.raises(UnknownAaguidError, match=r"6d69652d-5445-5354-2d54-484952") as caught:
        index.check(THIRD_AAGUID, policy=_policy(), at=NOW)
    assert caught.value.code is ErrorCode.AAGUID_UNKNOWN
    assert index.check(THIRD_AAGUID, policy=_policy(required=False), at=NOW) is None


@pytest.mark.parametrize("status", sorted(DEFAULT_REFUSE))
def test_refused_status(test_mds: TestMds, pki: TestAttestationPki, status: str) -> None:
    index = _one(test_mds, pki, [("FIDO_CERTIFIED_L2", "2025-01-01"), (status, "2026-03-04")])
    with pytest.raises(MetadataStatusError, match=f"status {status} since 2026-03-04") as caught:
        index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW)
    assert caught.value.code is ErrorCode.METADATA_STATUS


def test_refused_status_without_date(test_mds: TestMds, pki: TestAttestationPki) -> None:
    index = _one(test_mds, pki, [("FIDO_CERTIFIED_L1", None), ("REVOKED", None)])
    with pytest.raises(MetadataStatusError, match="REVOKED since an unknown date"):
        index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW)


def test_refused_status_stays_after_a_later_certification(
    test_mds: TestMds, pki: TestAttestationPki
) -> None:
    statuses = [("USER_VERIFICATION_BYPASS", "2025-01-01"), ("FIDO_CERTIFIED_L3", "2026-01-01")]
    with pytest.raises(MetadataStatusError, match="USER_VERIFICATION_BYPASS"):
        _one(test_mds, pki, statuses).check(EMULATOR_AAGUID, policy=_policy(), at=NOW)


def test_status_the_policy_does_not_refuse(test_mds: TestMds, pki: TestAttestationPki) -> None:
    index = _one(test_mds, pki, [("FIDO_CERTIFIED_L1", "2026-01-01"), ("UPDATE_AVAILABLE", None)])
    assert index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW) is not None
    with pytest.raises(MetadataStatusError, match="UPDATE_AVAILABLE"):
        refuse = DEFAULT_REFUSE | {"UPDATE_AVAILABLE"}
        index.check(EMULATOR_AAGUID, policy=_policy(refuse=refuse), at=NOW)


@pytest.mark.parametrize(
    "status",
    ["ATTESTATION_KEY_COMPROMISE", "USER_KEY_REMOTE_COMPROMISE", "USER_KEY_PHYSICAL_COMPROMISE"],
)
def test_compromise_of_one_batch(test_mds: TestMds, pki: TestAttestationPki, status: str) -> None:
    batch = pki.leaf.der
    statuses = [("FIDO_CERTIFIED_L1", "2026-01-01"), (status, "2026-02-02", batch)]
    index = _one(test_mds, pki, statuses)
    with pytest.raises(MetadataStatusError, match=status):
        index.check(EMULATOR_AAGUID, chain=pki.x5c, policy=_policy(), at=NOW)
    # Another batch of the model (its chain lacks that certificate) is not concerned.
    other_batch = [pki.root.der]
    assert index.check(EMULATOR_AAGUID, chain=other_batch, policy=_policy(), at=NOW) is not None
    assert index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW) is not None


def test_compromise_of_the_whole_model(test_mds: TestMds, pki: TestAttestationPki) -> None:
    statuses = [("FIDO_CERTIFIED_L1", "2026-01-01"), ("ATTESTATION_KEY_COMPROMISE", "2026-02-02")]
    index = _one(test_mds, pki, statuses)
    with pytest.raises(MetadataStatusError, match="ATTESTATION_KEY_COMPROMISE"):
        index.check(EMULATOR_AAGUID, chain=[pki.root.der], policy=_policy(), at=NOW)


def test_revoked_with_a_certificate_refuses_every_chain(
    test_mds: TestMds, pki: TestAttestationPki
) -> None:
    statuses = [("FIDO_CERTIFIED_L1", "2026-01-01"), ("REVOKED", "2026-02-02", pki.leaf.der)]
    with pytest.raises(MetadataStatusError, match="REVOKED"):
        _one(test_mds, pki, statuses).check(EMULATOR_AAGUID, policy=_policy(), at=NOW)


@pytest.mark.parametrize(
    ("statuses", "minimum", "level"),
    [
        ([("FIDO_CERTIFIED_L1", "2026-01-01")], "L1", "L1"),
        ([("FIDO_CERTIFIED_L2plus", "2026-01-01")], "L2", "L2plus"),
        ([("FIDO_CERTIFIED_L3plus", "2026-01-01")], "L3plus", "L3plus"),
        ([("FIDO_CERTIFIED", "2020-01-01")], "L1", "L1"),
        ([("FIDO_CERTIFIED_L1", "2024-01-01"), ("FIDO_CERTIFIED_L2", "2025-01-01")], "L2", "L2"),
        ([("NOT_FIDO_CERTIFIED", "2026-01-01")], None, None),
        ([("FIDO_CERTIFIED_L9", "2026-01-01")], None, None),
    ],
)
def test_certification_accepted(
    test_mds: TestMds,
    pki: TestAttestationPki,
    statuses: Any,
    minimum: str | None,
    level: str | None,
) -> None:
    view = _one(test_mds, pki, statuses).check(
        EMULATOR_AAGUID, policy=_policy(min_certification=minimum), at=NOW
    )
    assert view is not None and view.certification == level


@pytest.mark.parametrize(
    ("statuses", "minimum", "match"),
    [
        (
            [("FIDO_CERTIFIED_L1", "2026-01-01")],
            "L2",
            "certification L1 since 2026-01-01 is below the minimum L2",
        ),
        ([("FIDO_CERTIFIED_L2plus", "2026-01-01")], "L3", "L2plus"),
        ([("NOT_FIDO_CERTIFIED", "2026-01-01")], "L1", "certification none is below"),
        ([("FIDO_CERTIFIED_L2", "2024-01-01"), ("NOT_FIDO_CERTIFIED", "2025-01-01")], "L1", "none"),
        ([("FIDO_CERTIFIED_L2", "2024-01-01"), ("RETIRED", "2025-01-01")], "L1", "none"),
        ([("FIDO_CERTIFIED_L3", "2024-01-01"), ("FIDO_CERTIFIED_L1", "2025-01-01")], "L2", "L1"),
        ([("SELF_ASSERTION_SUBMITTED", "2026-01-01")], "L1", "none"),
    ],
)
def test_certification_below_the_minimum(
    test_mds: TestMds, pki: TestAttestationPki, statuses: Any, minimum: str, match: str
) -> None:
    index = _one(test_mds, pki, statuses)
    with pytest.raises(MetadataStatusError, match=match) as caught:
        index.check(EMULATOR_AAGUID, policy=_policy(min_certification=minimum), at=NOW)
    assert caught.value.code is ErrorCode.METADATA_STATUS


def test_certification_effective_later_does_not_count(
    test_mds: TestMds, pki: TestAttestationPki
) -> None:
    later = (TODAY + dt.timedelta(days=10)).isoformat()
    statuses = [("FIDO_CERTIFIED_L1", "2026-01-01"), ("FIDO_CERTIFIED_L3", later)]
    index = _one(test_mds, pki, statuses)
    policy = _policy(min_certification="L3")
    with pytest.raises(MetadataStatusError, match="certification L1"):
        index.check(EMULATOR_AAGUID, policy=policy, at=NOW)
    view = index.check(EMULATOR_AAGUID, policy=policy, at=NOW + dt.timedelta(days=11))
    assert view is not None and view.certification == "L3"


def test_fetch_blob_https_only() -> None:
    with pytest.raises(ValueError, match="https only"):
        fetch_blob("http://mds3.fidoalliance.org/")
    with pytest.raises(ValueError, match="https only"):
        fetch_blob("file:///etc/passwd")


@pytest.mark.skipif(
    os.environ.get("MIE_MDS_LIVE") != "1",
    reason="network: set MIE_MDS_LIVE=1 to fetch the live blob",
)
def test_live_blob_verifies_against_the_bundled_root(tmp_path: Path) -> None:
    blob = fetch_blob()
    index = MetadataIndex.load(
        blob, at=NOW, revocation=RevocationMode.HARD, crl_cache=CrlCache(tmp_path / "crls")
    )
    assert index.no > 0 and len(index) > 100
    assert index.next_update >= TODAY


def test_a_model_is_read_once(test_mds: TestMds, pki: TestAttestationPki) -> None:
    # The verifier checks the model at every assertion: its roots are parsed once.
    index = _one(test_mds, pki)
    first = index.entry(EMULATOR_AAGUID)
    assert first is not None and index.entry(EMULATOR_AAGUID) is first
    assert index.check(EMULATOR_AAGUID, policy=_policy(), at=NOW) == first
