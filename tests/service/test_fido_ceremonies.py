"""The FIDO2 ceremonies over HTTP (issue 11, Done 2b): python-fido2's client drives an emulated
key with the service's options; registration, then authentication to substantial with PSC
claims; a ceremony begun on one node completes on another sharing the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.emulation.fido_pki import TestAttestationPki
from mie.emulation.testpki import CardCredentials
from mie.service import ServiceConfig
from tests.harness import require_module
from tests.service.conftest import (
    ORIGIN,
    LiveService,
    cpx_evidence,
    headers,
    post_verify,
    still_serving,
)

require_module("fido2", "the FIDO2 ceremony tests need python-fido2 (mie[fido])")

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction  # noqa: E402
from fido2.webauthn import (  # noqa: E402
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
)

ID_NAT = "810100099877"
PIN = "1234"


class _Pin(UserInteraction):
    def request_pin(self, permissions: Any, rp_id: str | None) -> str:
        return PIN


def _client(device: EmulatedAuthenticator) -> Fido2Client:
    return Fido2Client(device, DefaultClientDataCollector(ORIGIN), user_interaction=_Pin())


def begin_registration(live: LiveService, **extra: Any) -> dict[str, Any]:
    body = {"id_nat": ID_NAT, "user_name": "dr.dupont", "display_name": "Dr Dupont", **extra}
    answer = live.client.post("/v1/fido/registrations", headers=headers("desk"), json=body)
    assert answer.status_code == 201, answer.text
    begun: dict[str, Any] = answer.json()
    return begun


def make_credential(device: EmulatedAuthenticator, begun: dict[str, Any]) -> dict[str, Any]:
    options = PublicKeyCredentialCreationOptions.from_dict(begun["options"])
    return dict(_client(device).make_credential(options))


def complete_registration(live: LiveService, nonce: str, credential: dict[str, Any]) -> Any:
    body = {"nonce": nonce, "credential": credential}
    return live.client.post("/v1/fido/registrations/complete", headers=headers("desk"), json=body)


def register(live: LiveService, device: EmulatedAuthenticator, **extra: Any) -> dict[str, Any]:
    begun = begin_registration(live, **extra)
    answer = complete_registration(live, begun["nonce"], make_credential(device, begun))
    assert answer.status_code == 201, answer.text
    done: dict[str, Any] = answer.json()
    return done


def authenticate(
    live: LiveService,
    device: EmulatedAuthenticator,
    *,
    complete_on: LiveService | None = None,
    allow: list[str] | None = None,
) -> Any:
    answer = live.client.post(
        "/v1/fido/authentications", headers=headers(), json={"id_nat": ID_NAT}
    )
    assert answer.status_code == 201, answer.text
    begun = answer.json()
    if allow is not None:
        # A caller that ignores allowCredentials (the service does not rely on it).
        begun["options"]["allowCredentials"] = [{"type": "public-key", "id": i} for i in allow]
    options = PublicKeyCredentialRequestOptions.from_dict(begun["options"])
    response = _client(device).get_assertion(options).get_response(0)
    body = {"nonce": begun["nonce"], "credential": dict(response)}
    target = complete_on or live
    return target.client.post("/v1/fido/authentications/complete", headers=headers(), json=body)


def test_registration_then_authentication(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
    card: CardCredentials,
) -> None:
    live = live_service(fido_config())
    begun = begin_registration(live)
    options = begun["options"]
    assert begun["rp_id"] == "iam.example" and options["rp"]["id"] == "iam.example"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "direct" and options["excludeCredentials"] == []
    answer = complete_registration(live, begun["nonce"], make_credential(device, begun))
    assert answer.status_code == 201, answer.text
    done = answer.json()
    assert done["identity"]["id_nat"] == ID_NAT
    assert done["credential"]["rp_id"] == "iam.example"
    assert done["temporary"] is None
    answer = authenticate(live, device)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["level"] == "substantial"
    assert body["identity"]["id_nat"] == ID_NAT
    claims = body["psc_claims"]
    assert claims["SubjectNameID"] == ID_NAT and claims["acr"] == "eidas1"
    assert claims["amr"] == ["hwk", "mfa"]
    # A second registration of the same professional excludes the first credential.
    again = begin_registration(live)
    assert [c["id"] for c in again["options"]["excludeCredentials"]] == [
        done["credential"]["credential_id"]
    ]
    still_serving(live, card)


def test_a_replayed_completion_is_refused(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    live = live_service(fido_config())
    begun = begin_registration(live)
    credential = make_credential(device, begun)
    assert complete_registration(live, begun["nonce"], credential).status_code == 201
    answer = complete_registration(live, begun["nonce"], credential)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "nonce_unknown"


def test_a_registration_nonce_posted_to_verify_is_refused_and_burnt(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
    card: CardCredentials,
) -> None:
    live = live_service(fido_config())
    begun = begin_registration(live)
    nonce = bytes.fromhex(begun["nonce"])
    # The desk's session: the nonce is bound to the desk client and its session.
    answer = post_verify(live, cpx_evidence(card, nonce), name="keycloak")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "nonce_unknown"
    answer = complete_registration(live, begun["nonce"], make_credential(device, begun))
    assert answer.status_code == 409


def test_the_ceremony_completes_on_another_node(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    node_a = live_service(fido_config(node="node-a"))
    node_b = live_service(fido_config(node="node-b"))
    begun = begin_registration(node_a)
    answer = complete_registration(node_b, begun["nonce"], make_credential(device, begun))
    assert answer.status_code == 201, answer.text
    answer = authenticate(node_b, device, complete_on=node_a)
    assert answer.status_code == 200, answer.text
    assert answer.json()["level"] == "substantial"


def test_an_assertion_is_accepted_once(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    live = live_service(fido_config())
    register(live, device)
    answer = live.client.post("/v1/fido/authentications", headers=headers(), json={})
    begun = answer.json()
    assert begun["options"]["allowCredentials"] == []
    begun = live.client.post(
        "/v1/fido/authentications", headers=headers(), json={"id_nat": ID_NAT}
    ).json()
    options = PublicKeyCredentialRequestOptions.from_dict(begun["options"])
    response = dict(_client(device).get_assertion(options).get_response(0))
    body = {"nonce": begun["nonce"], "credential": response}
    url = "/v1/fido/authentications/complete"
    assert live.client.post(url, headers=headers(), json=body).status_code == 200
    again = live.client.post(url, headers=headers(), json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "nonce_unknown"


def test_a_bad_registration_request_is_malformed(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
) -> None:
    live = live_service(fido_config())
    url = "/v1/fido/registrations"
    for body in (
        {"id_nat": "nope", "user_name": "x"},
        {"id_nat": ID_NAT},
        {"id_nat": ID_NAT, "user_name": "x", "extra": 1},
        {"id_nat": ID_NAT, "user_name": "x", "temporary": {"reason": "pvd", "expires_in": 10}},
        {"id_nat": ID_NAT, "user_name": "x", "temporary": {"reason": "x", "expires_in": 600}},
    ):
        answer = live.client.post(url, headers=headers("desk"), json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["code"] == "malformed"
    assert live.client.post(url, headers=headers(), json={}).status_code == 403


def test_without_a_fido_policy_the_ceremonies_are_malformed(service: LiveService) -> None:
    body = {"id_nat": ID_NAT, "user_name": "x"}
    answer = service.client.post("/v1/fido/registrations", headers=headers("desk"), json=body)
    assert answer.status_code == 400
    assert "fido_policy" in answer.json()["error"]["message"]


def test_a_temporary_key_is_capped_and_replaces_the_lost_one(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
    test_pki_dir: Path,
) -> None:
    live = live_service(fido_config())
    lost = register(live, device)["credential"]["credential_id"]
    spare = EmulatedAuthenticator(PIN, pki=TestAttestationPki.load(test_pki_dir))
    temporary = {
        "reason": "unannounced",
        "expires_in": 3600,
        "max_level": None,
        "replaces": {"mie": f"fido2:{lost}", "reason": "lost"},
    }
    done = register(live, spare, temporary=temporary)
    assert done["temporary"]["reason"] == "unannounced"
    assert done["temporary"]["max_level"] == "low"
    assert done["temporary"]["replaces"] == f"fido2:{lost}"
    # The lost key is revoked; the spare authenticates, capped at low (no PSC claims).
    begun = live.client.post(
        "/v1/fido/authentications", headers=headers(), json={"id_nat": ID_NAT}
    ).json()
    assert [c["id"] for c in begun["options"]["allowCredentials"]] == [
        done["credential"]["credential_id"]
    ]
    answer = authenticate(live, device, allow=[lost])
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "revoked"
    answer = authenticate(live, spare)
    assert answer.status_code == 200, answer.text
    assert answer.json()["level"] == "low" and answer.json()["psc_claims"] is None


def test_an_authentication_begun_for_another_professional_is_refused(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    live = live_service(fido_config())
    credential = register(live, device)["credential"]["credential_id"]
    other = "810100099885"
    begun = live.client.post(
        "/v1/fido/authentications", headers=headers(), json={"id_nat": other}
    ).json()
    assert begun["options"]["allowCredentials"] == []
    # The browser is handed ID_NAT's key anyway: the service refuses the other professional.
    begun["options"]["allowCredentials"] = [{"type": "public-key", "id": credential}]
    options = PublicKeyCredentialRequestOptions.from_dict(begun["options"])
    response = dict(_client(device).get_assertion(options).get_response(0))
    body = {"nonce": begun["nonce"], "credential": response}
    answer = live.client.post("/v1/fido/authentications/complete", headers=headers(), json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "policy"
    assert authenticate(live, device).status_code == 200


def _replacing(mie: str) -> dict[str, Any]:
    return {
        "reason": "pvd",
        "expires_in": 3600,
        "replaces": {"mie": mie, "reason": "lost"},
    }


def test_a_temporary_key_replacing_a_bad_or_unknown_mie_is_refused_before_any_nonce(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    # RS1: the replaced MIE was read only after the spare key was stored: a bad or unknown
    # ref left a temporary key registered with nothing revoked (half-written).
    live = live_service(fido_config())
    url = "/v1/fido/registrations"
    for mie in ("nonsense", "fido2:AAAAAAAAAAAAAAAAAAAAAA"):
        body = {"id_nat": ID_NAT, "user_name": "x", "temporary": _replacing(mie)}
        answer = live.client.post(url, headers=headers("desk"), json=body)
        assert answer.status_code in (400, 404), (mie, answer.text)
        assert answer.json()["error"]["code"] in ("malformed", "not_found"), answer.text
    ctx = live.app.state.mie
    assert not ctx.store.credentials_of(ID_NAT, ctx.fido.policy.rp_id)
    assert register(live, device)["temporary"] is None


def test_a_temporary_key_cannot_revoke_another_professionals_key(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    # RS1: the enrol scope revoked any MIE by naming it in replaces (revocation is admin's).
    live = live_service(fido_config())
    victim = register(live, device)["credential"]["credential_id"]
    other = "810100099885"
    body = {"id_nat": other, "user_name": "x", "temporary": _replacing(f"fido2:{victim}")}
    answer = live.client.post("/v1/fido/registrations", headers=headers("desk"), json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "policy"
    assert authenticate(live, device).status_code == 200


def test_a_refused_registration_nonce_is_audited(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    # RS1: a completion whose nonce was used, unknown or of another purpose was refused
    # without an audit record (every attempt, success or failure, is one).
    import json

    from mie.service.config import AuditConfig

    live = live_service(fido_config(audit=AuditConfig(file=None, store=True)))
    begun = begin_registration(live)
    credential = make_credential(device, begun)
    assert complete_registration(live, begun["nonce"], credential).status_code == 201
    again = complete_registration(live, begun["nonce"], credential)
    assert again.status_code == 409, again.text
    records = [json.loads(line) for line in live.ctx.store.audit_lines("node-a")]
    registers = [r for r in records if r["event"] == "fido.register"]
    assert [r["error"]["code"] if r["error"] else None for r in registers] == [
        None,
        "nonce_unknown",
    ]
    assert begun["nonce"] not in json.dumps(records)
