"""``mie verify-cert``, ``mie trust list|import|remove`` and ``mie crl fetch|show``."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

import click

from mie._cli.options import (
    Seconds,
    crl_file_option,
    parse_at,
    revocation_option,
    trust_file_option,
)
from mie._cli.output import emit_json, emit_table, json_option, warn
from mie._cli.state import UsageError
from mie.policy import MieKind, Proof
from mie.trust import (
    CrlCache,
    CrlIndex,
    RevocationMode,
    TrustStore,
    Usage,
    VerificationError,
    VerificationResult,
    load_certificates,
)
from mie.trust.cache import OfflineCrlCache
from mie.trust.login import certificate_report, crl_directory, login_verifier, read_input
from mie.trust.store import (
    OperatorStore,
    classify,
    dn,
    fingerprint,
    imported_as_test,
    operator_directory,
)


@click.command("verify-cert")
@click.argument("leaf")
@click.option(
    "--intermediate",
    multiple=True,
    help="Untrusted CA certificate file (repeat). Certificates after the first in LEAF are "
    "used the same way.",
)
@trust_file_option
@crl_file_option
@click.option("--at", "at_text", help="Verify at this ISO 8601 time (with time zone).")
@click.option(
    "--usage",
    type=click.Choice(["auth", "sign"]),
    default="auth",
    show_default=True,
    help="What the certificate's key is for: auth (authentication) or sign (signature).",
)
@revocation_option
@json_option()
def verify_cert(
    leaf: str,
    intermediate: tuple[str, ...],
    trust: tuple[str, ...],
    crl: tuple[str, ...],
    at_text: str | None,
    usage: str,
    revocation: str,
    as_json: bool,
) -> int:
    """Verify a certificate against the trust store (chain, revocation, usage, level).

    LEAF is a PEM, DER or PKCS#7 file; its first certificate is the one verified, and any
    others in it (a server's leaf-and-chain PEM) are untrusted intermediates, as with
    --intermediate. CRLs come from --crl files and the CRL cache filled by `mie crl fetch` or
    `mie auth` (never the network).
    """
    at = parse_at(at_text)
    report: dict[str, Any] = {
        "valid": False,
        "error": None,
        "identity": None,
        "chain": [],
        "trust_anchor": None,
        "level": None,
        "revocation": None,
        "reasons": [],
    }
    try:
        result = _verify(leaf, intermediate, trust, crl, at, Usage(usage), revocation)
        _fill(report, result, Usage(usage), leaf)
        code = 0
    except VerificationError as e:
        report["error"] = {"code": e.code.value, "message": e.message}
        code = 2 if e.is_malformed else 1
    _print(report, as_json)
    if code == 2:
        warn(f"mie: error: {report['error']['message']}")
    return code


def _verify(
    leaf: str,
    intermediates: tuple[str, ...],
    trust: tuple[str, ...],
    crls: tuple[str, ...],
    at: dt.datetime | None,
    usage: Usage,
    revocation: str,
) -> VerificationResult:
    # A server keeps its certificate and the chain in one PEM: the first is the leaf, the
    # others may complete the path like --intermediate files.
    leaf_cert, *bundled = load_certificates(read_input(leaf), leaf)
    verifier = login_verifier(
        trust=trust,
        intermediates=intermediates,
        crls=crls,
        usage=usage,
        revocation=RevocationMode(revocation),
        at=at,
        # CRLs cached by `mie crl fetch` or `mie auth` are used offline, never downloaded; a
        # damaged file is reported (a warning), moved aside, and its status stays unknown.
        cache=OfflineCrlCache(crl_directory()),
        download=False,
    )
    return verifier.verify(leaf_cert, bundled)


def _fill(report: dict[str, Any], result: VerificationResult, usage: Usage, leaf: str) -> None:
    try:
        checked = certificate_report(result, Proof(MieKind.CERTIFICATE, frozenset(), result, usage))
    except VerificationError as e:
        raise VerificationError(e.code, f"{leaf}: {e.message}") from e
    report.update(
        valid=True,
        identity=checked.identity.to_json(),
        chain=list(checked.subjects),
        trust_anchor=checked.anchor.name,
        level=checked.level.value if checked.level else None,
        revocation=checked.revocation.value,
        reasons=[*checked.reasons, *checked.revocation_details],
    )


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(report)
        return
    click.echo(f"valid: {'yes' if report['valid'] else 'no'}")
    if report["error"]:
        click.echo(f"error: {report['error']['code']}: {report['error']['message']}")
    for key in ("trust_anchor", "level", "revocation"):
        if report[key]:
            click.echo(f"{key}: {report[key]}")
    for i, subject in enumerate(report["chain"]):
        click.echo(f"chain[{i}]: {subject}")
    if report["identity"]:
        for key, value in report["identity"].items():
            click.echo(f"identity.{key}: {value}")


@click.group("trust")
def trust_group() -> None:
    """Manage trust anchors (bundled ANS roots and the operator store)."""


@trust_group.command("list")
@json_option()
def trust_list(as_json: bool) -> int:
    """List trust anchors and stored intermediates."""
    store = TrustStore.default()
    rows = [_describe(a.certificate, a.source, "anchor", a.test) for a in store]
    rows += [_describe(c, "operator", "intermediate", False) for c in store.intermediates]
    if as_json:
        emit_json({"directory": str(operator_directory()), "certificates": rows})
        return 0
    emit_table(
        [
            (
                r["kind"],
                r["source"],
                r["gamme"] or "-",
                r["domain"] or "-",
                "yes" if r["test"] else "no",
                r["not_after"][:10],
                r["sha256"][:23],
                r["subject"],
            )
            for r in rows
        ],
        ("KIND", "SOURCE", "GAMME", "DOMAIN", "TEST", "NOT AFTER", "SHA-256", "SUBJECT"),
    )
    return 0


def _describe(cert: Any, source: str, kind: str, test: bool) -> dict[str, Any]:
    info = classify(cert.subject)
    return {
        "kind": kind,
        "source": source,
        "subject": dn(cert.subject),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": fingerprint(cert),
        "gamme": info.gamme.value if info.gamme else None,
        "domain": info.domain.value if info.domain else None,
        "test": test or info.test,
    }


@trust_group.command("import")
@click.argument("file")
@click.option(
    "--test",
    "allow_test",
    is_flag=True,
    help="Accept TEST hierarchy CAs (anchors imported with it are marked TEST).",
)
@json_option()
def trust_import(file: str, allow_test: bool, as_json: bool) -> int:
    """Import CA certificates from PEM, DER or a PKCS#7 (.p7b) bundle.

    All or nothing: every certificate of FILE is checked first, and when one is refused
    (not a CA, or a TEST CA without --test) nothing is stored and the exit code is 2.
    """
    certs = list({fingerprint(c): c for c in load_certificates(read_input(file), file)}.values())
    store = OperatorStore(operator_directory())
    try:
        kinds = store.add_all(certs, allow_test=allow_test)
    except ValueError as e:
        raise UsageError(f"{file}: {e}") from e
    imported = [
        _describe(cert, "operator", kind, imported_as_test(cert, kind, allow_test))
        for cert, kind in zip(certs, kinds, strict=True)
    ]
    if as_json:
        emit_json({"directory": str(store.directory), "imported": imported})
    else:
        for row in imported:
            click.echo(f"{row['kind']}: {row['subject']}")
            click.echo(f"  valid {row['not_before']} -> {row['not_after']}")
            click.echo(f"  sha256 {row['sha256']}")
            click.echo(
                f"  gamme {row['gamme'] or '-'}, domain {row['domain'] or '-'}, test {row['test']}"
            )
    return 0


@trust_group.command("remove")
@click.argument("fingerprint_prefix")
@json_option()
def trust_remove(fingerprint_prefix: str, as_json: bool) -> int:
    """Remove an imported certificate by (a prefix of) its SHA-256 fingerprint."""
    store = OperatorStore(operator_directory())
    try:
        removed = store.remove(fingerprint_prefix)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if as_json:
        # As `trust list` shows them (decision D5: lowercase, colon-separated).
        fingerprints = [bytes.fromhex(stem).hex(":") for stem in removed]
        emit_json({"directory": str(store.directory), "removed": fingerprints})
        return 0
    for stem in removed:
        click.echo(f"removed {stem}")
    return 0


@click.group("crl")
def crl_group() -> None:
    """Fetch and inspect CRLs (cache: $MIE_CRL_DIR or the user cache directory)."""


@crl_group.command("fetch")
@click.argument("url")
@click.option(
    "--timeout",
    type=Seconds(),
    default=10.0,
    show_default=True,
    help="Seconds the download may take.",
)
@json_option()
def crl_fetch(url: str, timeout: float, as_json: bool) -> int:
    """Download a CRL from an HTTP(S) distribution point into the cache."""
    _check_http_url(url)
    cache = CrlCache(crl_directory(), timeout=timeout)
    cache.clean_temporary()
    index = cache.refresh(url)
    _show(index, str(cache.path_for(url)), as_json)
    return 0


def _check_http_url(url: str) -> None:
    # A URL argument that is not HTTP(S) is bad usage (exit 2), not a failed download.
    try:
        parts = urllib.parse.urlsplit(url)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise UsageError(f"{url!r} is not an http:// or https:// URL")


@crl_group.command("show")
@click.argument("source")
@json_option()
def crl_show(source: str, as_json: bool) -> int:
    """Show a CRL file, or the cached CRL of a URL."""
    if source.lower().startswith(("http://", "https://")):
        cache = CrlCache(crl_directory())
        index = cache.load(source)
        if index is None:
            raise UsageError(f"No cached CRL for {source} (run: mie crl fetch {source})")
        _show(index, str(cache.path_for(source)), as_json)
    else:
        _show(CrlIndex.from_bytes(read_input(source), source), source, as_json)
    return 0


def _show(index: CrlIndex, where: str, as_json: bool) -> None:
    data = {
        "source": where,
        "issuer": index.issuer.rfc4514_string(),
        "this_update": index.this_update.isoformat(),
        "next_update": index.next_update.isoformat() if index.next_update else None,
        "crl_number": index.number,
        "delta_base": index.delta_base,
        "entries": len(index),
    }
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            click.echo(f"{key}: {value if value is not None else '-'}")
