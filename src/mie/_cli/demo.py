"""``mie demo``: every supported authenticator end to end on emulators, in process."""

from __future__ import annotations

import os
from typing import Any

import click
from cryptography.hazmat.primitives.serialization import Encoding

from mie._cli.output import emit_json, json_option
from mie._cli.state import CliState
from mie.cards.demo import DemoSession
from mie.emulation.cpx import CPS3, build_ias_ecc_card
from mie.emulation.iso7816 import DEMO_PIN, demo_card
from mie.emulation.testpki import TestPki, parse_identity
from mie.registry import AuthenticatorOptions, authenticator_for
from mie.request import AuthRequest, StaticPin
from mie.result import AuthResult
from mie.trust import (
    Anchor,
    CrlIndex,
    CrlSet,
    TrustStore,
    Usage,
    Verifier,
    VerifierBuilder,
)
from mie.verification import login

DEMO_CPX_PIN = "1234"
DEMO_BADGE_UID = bytes.fromhex("04958caa5c5e80")
DEMO_BADGE_ID_NAT = "810100099877"
DEMO_FIDO_PIN = "1234"
DEMO_FIDO_ID_NAT = "810100099877"
ENTRY_KEYS = (
    "card",
    "serial",
    "public_file_bytes",
    "pin_tries_before_verify",
    "holder_after_verify",
    "auth",
)
"""The keys of every ``demo --json`` entry, in order."""


def _generic(state: CliState) -> dict[str, Any]:
    with state.open_emulated(demo_card()) as connection:
        report = DemoSession(connection).run(DEMO_PIN)
    return _entry(
        "iso7816",
        report.serial,
        public_file_bytes=report.public_size,
        pin_tries_before_verify=report.pin_status.tries_left,
        holder_after_verify=report.holder,
    )


def _entry(card: str, serial: str | None, **values: Any) -> dict[str, Any]:
    """One ``results`` entry of ``demo --json``: every entry has every key, ``null`` when the
    card has no such value."""
    entry: dict[str, Any] = dict.fromkeys(ENTRY_KEYS)
    entry.update(card=card, serial=serial, **values)
    return entry


def _verifier(pki: TestPki) -> Verifier:
    """Trust exactly this TEST PKI (explicitly, as an operator would) with its fresh CRLs."""
    anchors = [Anchor.from_certificate(i.certificate, "explicit", True) for i in pki.roots.values()]
    crls = CrlSet.of(
        CrlIndex.from_bytes(pki.crl(gamme, authority=authority).public_bytes(Encoding.DER), "demo")
        for gamme in pki.intermediates
        for authority in (False, True)
    )
    store = TrustStore(anchors, [i.certificate for i in pki.intermediates.values()])
    return VerifierBuilder().store(store).usage(Usage.AUTH).crls(crls).build()


def _desfire() -> AuthResult:
    """A blank emulated DESFire EV3 badge enrolled with demonstration keys, then a login with
    the badge verifier (possession only: no second factor). In process and self-contained: it is
    not recorded, since its keys and record signature are new at each run."""
    import tempfile
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import ec

    from mie.desfire.config import BadgeConfig, KeyLabels
    from mie.desfire.enrol import Enroller, EnrolmentRequest
    from mie.desfire.journal import Journal
    from mie.desfire.record import AuthorityKey
    from mie.desfire.verify import BadgeVerifier
    from mie.emulation.base import EmulatedConnection
    from mie.emulation.desfire import EmulatedDesfire
    from mie.emulation.desfire_state import BadgeState
    from mie.keys.software import SoftwareKeyProvider

    labels = KeyLabels()
    authority = ec.generate_private_key(ec.SECP256R1())
    masters = {m: os.urandom(16) for m in (labels.picc, labels.app, labels.uid_read, labels.read)}
    keys = SoftwareKeyProvider(masters, {labels.authority: authority})
    config = BadgeConfig(
        authorities=(AuthorityKey.of(authority.public_key(), "CH Demo", test=True),),
        issuer="CH Demo",
        originality_keys=("mie-test",),
    )
    card = EmulatedDesfire(BadgeState.blank(DEMO_BADGE_UID))
    with tempfile.TemporaryDirectory(prefix="mie-demo-") as folder:
        with Journal.open(Path(folder) / "journal.csv") as journal:
            enroller = Enroller(config, keys, journal=journal)
            enroller.enrol(EmulatedConnection(card), EnrolmentRequest(DEMO_BADGE_ID_NAT), row="1")
    options = AuthenticatorOptions(badge=config, badge_keys=keys)
    authenticator = authenticator_for(EmulatedConnection(card), options)
    badges = BadgeVerifier(config, keys=keys)
    return login(authenticator, AuthRequest.new(), user=None, verifier=None, badges=badges)


def _fido2() -> AuthResult:
    """An emulated CTAP 2.1 key (PIN set, packed attestation with the TEST batch key) behind
    python-fido2's own CTAPHID code (in-memory HID): registered for the demonstration
    professional under a policy that trusts the TEST attestation root for the emulator's AAGUID
    only, in a one-process store, then an authentication verified at once. Self-contained, like
    the badge: not recorded."""
    from fido2.hid import CtapHidDevice

    from mie.emulation.ctap2 import EmulatedAuthenticator
    from mie.emulation.ctaphid import CtapHidFraming, InMemoryHidConnection, hid_descriptor
    from mie.emulation.fido_pki import EMULATOR_AAGUID, TestAttestationPki
    from mie.fido.allowlist import AaguidAllowlist, AllowedKey
    from mie.fido.assertion import FidoVerifier
    from mie.fido.authenticator import Fido2Authenticator
    from mie.fido.policy import FidoPolicy
    from mie.fido.registration import verify_registration
    from mie.request import DEFAULT_ORIGIN
    from mie.store.memory import MemoryStore
    from mie.trust.identity import Identity, parse_id_nat
    from mie.verification import Expected

    pki = TestAttestationPki.generate()
    key = EmulatedAuthenticator(DEMO_FIDO_PIN, pki=pki)
    device = CtapHidDevice(hid_descriptor("mie-demo"), InMemoryHidConnection(CtapHidFraming(key)))
    model = AllowedKey(EMULATOR_AAGUID, "mie TEST emulated key", (pki.root.certificate,), test=True)
    policy = FidoPolicy(rp_id="localhost", allowlist=AaguidAllowlist((model,), source="mie demo"))
    store = MemoryStore()
    id_type, number = parse_id_nat(DEMO_FIDO_ID_NAT)
    identity = Identity(DEMO_FIDO_ID_NAT, id_type, number, None, None, None, None, False)
    pin = StaticPin(DEMO_FIDO_PIN)
    desk = Fido2Authenticator(device, rp_id=policy.rp_id)
    enrolment = AuthRequest.new(DEFAULT_ORIGIN)
    data = desk.register(enrolment, user=pin, user_name=number, display_name=number)
    expected = Expected(enrolment.nonce, enrolment.origin)
    registered = verify_registration(data, expected, identity=identity, policy=policy, store=store)
    # The login: the key may use the credential the store holds for the professional.
    login_key = Fido2Authenticator(
        device, rp_id=policy.rp_id, credentials=[registered.record.credential_id]
    )
    request = AuthRequest.new(DEFAULT_ORIGIN)
    with login_key.connection:
        evidence = login_key.authenticate(request, user=StaticPin(DEMO_FIDO_PIN))
    verifier = FidoVerifier(policy, store)
    expected = Expected(request.nonce, request.origin)
    return verifier.verify(evidence, expected, authenticator=login_key.info)


def _cps3(state: CliState) -> AuthResult:
    pki = TestPki()
    card = build_ias_ecc_card(CPS3, parse_identity(None, "CPS"), pki, pin=DEMO_CPX_PIN)
    # A replayed session carries certificates of the recording's PKI, which no longer exists:
    # only the card protocol and the signature are checked then.
    verifier = _verifier(pki) if state.replay is None else None
    options = AuthenticatorOptions(chain_checked=verifier is not None)
    request = AuthRequest.new(rng=state.rng)
    with state.open_emulated(card) as connection:
        authenticator = authenticator_for(connection, options)
        return login(authenticator, request, user=StaticPin(DEMO_CPX_PIN), verifier=verifier)


@click.command()
@json_option()
@click.option(
    "--only",
    type=click.Choice(["iso7816", "cps3", "desfire", "fido2"]),
    help="Run one authenticator only.",
)
@click.pass_obj
def demo(state: CliState, as_json: bool, only: str | None) -> int:
    """Run the emulated cards, badge and FIDO2 key end to end, in process: no hardware, no
    daemon."""
    state.kind = only or "demo"
    generic = _generic(state) if only in (None, "iso7816") else None
    cps3 = _cps3(state) if only in (None, "cps3") else None
    badge = _desfire() if only in (None, "desfire") and state.replay is None else None
    key = _fido2() if only in (None, "fido2") and state.replay is None else None
    if as_json:
        results = [generic] if generic else []
        for name, result in (("cps3", cps3), ("desfire", badge), ("fido2", key)):
            if result is not None:
                serial = result.authenticator.serial if result.authenticator else None
                results.append(_entry(name, serial, auth=result.to_json()))
        emit_json({"results": results})
        return 0
    if generic is not None:
        _print_generic(generic)
    if cps3 is not None:
        _print_cps3(cps3)
    if badge is not None:
        _print_desfire(badge)
    if key is not None:
        _print_fido2(key)
    return 0


def _print_generic(generic: dict[str, Any]) -> None:
    click.echo("Generic ISO 7816 card (emulated, in process):")
    click.echo(
        f"  serial {generic['serial']}, public file {generic['public_file_bytes']} bytes read"
    )
    click.echo(f"  PIN verified; holder (readable after PIN): {generic['holder_after_verify']}")


def _print_cps3(cps3: AuthResult) -> None:
    click.echo("CPS3 card (emulated IAS-ECC, TEST PKI, in process):")
    serial = cps3.authenticator.serial if cps3.authenticator else None
    origin = cps3.evidence.origin if cps3.evidence else "?"
    click.echo(f"  card {serial}: nonce signed, bound to {origin}, and verified")
    if cps3.identity is not None:
        who = cps3.identity
        click.echo(f"  authenticated: {who.given_name} {who.family_name}, {who.id_type} {who.id}")
    level = cps3.level.value if cps3.level else "not established (chain not checked)"
    click.echo(f"  level: {level}")
    for reason in cps3.reasons:
        click.echo(f"    - {reason}")


def _print_desfire(badge: AuthResult) -> None:
    click.echo("DESFire EV3 badge (emulated, enrolled with demonstration keys, in process):")
    serial = badge.authenticator.serial if badge.authenticator else None
    click.echo(f"  badge {serial}: EV2 mutual authentication, identity record read and verified")
    if badge.identity is not None:
        click.echo(f"  authenticated: {badge.identity.id_type} {badge.identity.id}")
    level = badge.level.value if badge.level else "not established"
    click.echo(f"  level: {level}")
    for reason in badge.reasons:
        click.echo(f"    - {reason}")


def _print_fido2(key: AuthResult) -> None:
    level = key.level.value if key.level else "not established"
    click.echo(
        "FIDO2 key (emulated CTAP 2.1, in process): registered (packed attestation, TEST root), "
        f"authenticated, level {level}"
    )
    serial = key.authenticator.serial if key.authenticator else None
    click.echo(f"  credential {serial}: assertion over the nonce, bound to its origin, verified")
    if key.identity is not None:
        click.echo(f"  authenticated: {key.identity.id_type} {key.identity.id}")
    for reason in key.reasons:
        click.echo(f"    - {reason}")
