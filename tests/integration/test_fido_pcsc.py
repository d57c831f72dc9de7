"""Issue 10's Done-when through pcscd + vpcd: `mie emulate fido2 --vpcd` (its own process, HOME
and every MIE_* variable scrubbed) presents the key's FIDO applet as a contactless card on
``Virtual PCD 00 00``; python-fido2's own PC/SC device (``fido2.pcsc.CtapPcscDevice``, found by
the reader's name) registers and authenticates with ``Fido2Client`` against ``Fido2Server``;
py_webauthn verifies the same registration (the packed chain to the emulator's TEST root, and
not to another root) and the same assertion; mie's SmartCardCtapDevice runs getInfo and an
assertion over mie's PC/SC connection; and the emulator killed mid-operation is card_removed.
Run under `flock -o /tmp/mie-pcsc.lock` (the vpcd ports are shared machine-wide)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap2.base import Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from mie.emulation.fido_pki import ROOT_FILE
from mie.errors import CardRemovedError
from mie.transport.ctap import SmartCardCtapDevice, list_ctap_devices, open_ctap_device
from tests.harness import READER0, Pcscd, require_module, settle_after_failure
from tests.integration.test_fido_socket import ORIGIN, PIN, RP_ID, Pin, spawn, stop

pytestmark = pytest.mark.pcsc

webauthn = require_module("webauthn", "py_webauthn (mie[dev]) is the independent verifier")
from webauthn.helpers.exceptions import InvalidRegistrationResponse  # noqa: E402
from webauthn.helpers.structs import AttestationFormat  # noqa: E402


@contextlib.contextmanager
def fido_key(tmp_path: Path, *options: str) -> Iterator[Any]:
    """`mie emulate fido2 --vpcd --pki P --state S OPTIONS` until the block ends."""
    from mie.transport.pcsc import wait_for_card, wait_for_removal

    process = spawn(
        tmp_path,
        "--vpcd",
        "--pki",
        str(tmp_path / "pki"),
        "--state",
        str(tmp_path / "key.json"),
        *options,
    )
    try:
        wait_for_card(READER0, timeout=20)
        yield process
    finally:
        stop(process)
        if process.stderr:
            process.stderr.close()
        with contextlib.suppress(Exception):
            wait_for_removal(READER0, timeout=10)


def _fido2_pcsc_device() -> Any:
    from fido2.pcsc import CtapPcscDevice

    devices = list(CtapPcscDevice.list_devices(READER0))
    assert len(devices) == 1, devices
    return devices[0]


def test_fido2_client_and_server_through_pcscd_and_py_webauthn_verifies_both(
    pcscd: Pcscd, tmp_path: Path, test_pki_dir: Path
) -> None:
    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=RP_ID, name="IAM"),
        attestation=AttestationConveyancePreference.DIRECT,
    )
    with fido_key(tmp_path, "--pin", PIN):
        device = _fido2_pcsc_device()
        client = Fido2Client(device, DefaultClientDataCollector(ORIGIN), user_interaction=Pin())
        assert "FIDO_2_1" in client.info.versions and client.info.options["clientPin"]
        options, state = server.register_begin(
            PublicKeyCredentialUserEntity(name="dr.martin", id=os.urandom(16), display_name="M"),
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        registration = client.make_credential(options.public_key)
        auth_data = server.register_complete(state, registration)
        credential = auth_data.credential_data
        assert credential is not None and auth_data.is_user_verified()
        request, auth_state = server.authenticate_begin(
            [credential], user_verification=UserVerificationRequirement.REQUIRED
        )
        assertion = client.get_assertion(request.public_key).get_response(0)
        server.authenticate_complete(auth_state, [credential], assertion)
        device.close()

        # mie's own PC/SC CTAP device on the same key: getInfo and one more assertion.
        key = open_ctap_device(f"pcsc:{READER0}")
        assert isinstance(key, SmartCardCtapDevice)
        ctap = Ctap2(key, strict_cbor=True)
        assert ctap.info.aaguid == credential.aaguid
        client_data_hash = hashlib.sha256(b"mie over pcscd").digest()
        got = ctap.get_assertion(
            RP_ID, client_data_hash, [{"type": "public-key", "id": credential.credential_id}]
        )
        got.verify(client_data_hash, credential.public_key)
        assert got.auth_data.counter == 2
        key.close()
        listed = [listing.spec for listing in list_ctap_devices()]
        assert f"pcsc:{READER0}" in listed

    # py_webauthn, on the very same registration and assertion.
    root = (tmp_path / "pki" / ROOT_FILE).read_bytes()
    verified = webauthn.verify_registration_response(
        credential=dict(registration),
        expected_challenge=options.public_key.challenge,
        expected_origin=ORIGIN,
        expected_rp_id=RP_ID,
        require_user_verification=True,
        pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [root]},
    )
    assert verified.fmt == AttestationFormat.PACKED and verified.user_verified
    assert verified.credential_id == credential.credential_id
    other_root = sorted(test_pki_dir.glob("root-*.pem"))[0].read_bytes()  # the CPx TEST root
    with pytest.raises(InvalidRegistrationResponse):
        webauthn.verify_registration_response(
            credential=dict(registration),
            expected_challenge=options.public_key.challenge,
            expected_origin=ORIGIN,
            expected_rp_id=RP_ID,
            pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [other_root]},
        )
    authenticated = webauthn.verify_authentication_response(
        credential=dict(assertion),
        expected_challenge=request.public_key.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=verified.sign_count,
        require_user_verification=True,
    )
    assert authenticated.new_sign_count == 1 and authenticated.user_verified
    saved = json.loads((tmp_path / "key.json").read_text())
    assert len(saved["credentials"]) == 1


def test_emulator_killed_mid_operation_is_card_removed(pcscd: Pcscd, tmp_path: Path) -> None:
    with fido_key(tmp_path, "--touch", "never") as process:
        key = open_ctap_device(f"pcsc:{READER0}")
        ctap = Ctap2(key)
        outcome: list[BaseException] = []

        def make() -> None:
            try:
                ctap.make_credential(
                    os.urandom(32),
                    {"id": RP_ID, "name": "IAM"},
                    {"id": b"user", "name": "u"},
                    [{"type": "public-key", "alg": -7}],
                )
            except BaseException as e:
                outcome.append(e)

        worker = threading.Thread(target=make)
        worker.start()
        time.sleep(0.6)  # the key polls 9100: it awaits the touch
        process.kill()
        worker.join(15)
        key.close()
    settle_after_failure()
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], CardRemovedError), outcome
    assert outcome[0].code == "card_removed"
    assert json.loads((tmp_path / "key.json").read_text())["credentials"] == []


def test_fail_after_on_vpcd_leaves_the_field_and_exits_1(pcscd: Pcscd, tmp_path: Path) -> None:
    # SELECT, getInfo (the probe), SELECT again is fine; the makeCredential answer is not.
    with fido_key(tmp_path, "--fail-after", "3") as process:
        key = open_ctap_device(f"pcsc:{READER0}")
        with pytest.raises(CardRemovedError):
            Ctap2(key).make_credential(
                os.urandom(32),
                {"id": RP_ID, "name": "IAM"},
                {"id": b"user", "name": "u"},
                [{"type": "public-key", "alg": -7}],
            )
        key.close()
        process.wait(15)
    settle_after_failure()
    assert process.returncode == 1


def test_mie_fido_register_and_auth_through_pcscd_then_a_pull_mid_assertion(
    pcscd: Pcscd, tmp_path: Path
) -> None:
    """`mie fido register|auth --key pcsc:READER` (their own processes) on the key behind
    pcscd; then the emulator killed while `mie fido auth` waits for the touch: card_removed,
    and the stored counter has not moved."""
    from mie.emulation.fido_pki import TestAttestationPki
    from tests.integration.test_fido_cli import authenticate, register
    from tests.unit.test_cli_fido import Desk

    key = f"pcsc:{READER0}"
    desk = Desk(tmp_path, TestAttestationPki.load(tmp_path / "pki"))
    desk.write()
    with fido_key(tmp_path, "--pin", PIN):
        code, outcome, err = register(desk, key)
        assert code == 0, err
        assert outcome["credential"]["level_cap"] == "substantial"
        code, result, err = authenticate(desk, key)
        assert code == 0, err
        assert result["level"] == "substantial" and result["valid"] is True
    counter = desk.credentials()[0].sign_count
    assert counter >= 1
    with fido_key(tmp_path, "--pin", PIN, "--touch", "30") as process:
        killer = threading.Timer(5.0, process.kill)  # mid-getAssertion: the touch is 30 s away
        killer.start()
        try:
            code, result, err = authenticate(desk, key)
        finally:
            killer.cancel()
    settle_after_failure()
    assert code == 1, err
    assert result["error"]["code"] == "card_removed", result
    assert desk.credentials()[0].sign_count == counter


def test_a_dual_protocol_key_answering_u2f_v2_works_through_pcscd(pcscd: Pcscd) -> None:
    # Most real NFC keys (YubiKey 5 NFC) answer U2F_V2 to the FIDO SELECT and speak CTAP2 too:
    # python-fido2's CtapPcscDevice and mie's SmartCardCtapDevice both take the key by getInfo.
    from mie.emulation.ctap2 import EmulatedAuthenticator
    from mie.emulation.fido_applet import EmulatedFidoApplet
    from tests.harness import attached

    engine = EmulatedAuthenticator(transports=("nfc",))
    with attached(EmulatedFidoApplet(engine, select_version=b"U2F_V2")):
        device = open_ctap_device(f"pcsc:{READER0}")
        try:
            assert isinstance(device, SmartCardCtapDevice)
            assert "FIDO_2_1" in Ctap2(device, strict_cbor=True).get_info().versions
        finally:
            device.close()
        theirs = _fido2_pcsc_device()
        try:
            assert "FIDO_2_1" in Ctap2(theirs).get_info().versions
        finally:
            theirs.close()
