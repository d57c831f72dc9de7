"""The MIE lifecycle API (plan §5.3): revocations, look-ups, temporary badges; scopes,
idempotence, and a revocation on one node refused by the other at its very next
verification."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mie.emulation.ctap2 import EmulatedAuthenticator
from mie.service import ServiceConfig
from tests.service.conftest import LiveService, headers
from tests.service.test_fido_ceremonies import ID_NAT, authenticate, register

UID = "04a1b2c3d4e5f6"
DESK = headers("desk", None)


def _revoke(live: LiveService, mie: str, reason: str = "lost", **extra: Any) -> Any:
    body = {"mie": mie, "reason": reason, **extra}
    return live.client.post("/v1/mie/revocations", headers=DESK, json=body)


def test_revoke_a_badge_then_look_it_up(service: LiveService) -> None:
    answer = _revoke(service, f"badge:{UID}", note="left in a taxi")
    assert answer.status_code == 201, answer.text
    first = answer.json()
    assert first["mie"] == f"badge:{UID}" and first["reason"] == "lost"
    assert first["by"] == "desk" and first["node"] == "node-a"
    assert first["note"] == "left in a taxi" and first["revoked_at"].endswith("Z")
    # Idempotent: the first revocation stays, answered 200.
    again = _revoke(service, f"badge:{UID}", "stolen")
    assert again.status_code == 200 and again.json() == first
    found = service.client.get(f"/v1/mie/badge:{UID}", headers=DESK)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["revocation"] == first and body["temporary"] is None
    assert body["credential"] is None


def test_nothing_known_is_404(service: LiveService) -> None:
    answer = service.client.get(f"/v1/mie/badge:{UID}", headers=DESK)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    answer = _revoke(service, "fido2:AAAAAAAAAAAAAAAAAAAAAA")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_bad_refs_and_reasons_are_malformed(service: LiveService) -> None:
    for body in (
        {"mie": "badge:04", "reason": "lost"},
        {"mie": "card:123", "reason": "lost"},
        {"mie": f"badge:{UID}", "reason": "bored"},
        {"mie": f"badge:{UID}"},
        {"mie": f"badge:{UID}", "reason": "lost", "by": "me"},
    ):
        answer = service.client.post("/v1/mie/revocations", headers=DESK, json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["code"] == "malformed"
    assert service.client.get("/v1/mie/badge:zz", headers=DESK).status_code == 400


def test_scopes(service: LiveService) -> None:
    verify_only = headers("keycloak", None)
    body = {"mie": f"badge:{UID}", "reason": "lost"}
    assert (
        service.client.post("/v1/mie/revocations", headers=verify_only, json=body).status_code
        == 403
    )
    assert service.client.get(f"/v1/mie/badge:{UID}", headers=verify_only).status_code == 403
    grant = {"mie": f"badge:{UID}", "id_nat": ID_NAT, "reason": "pvd", "expires_in": 3600}
    assert (
        service.client.post("/v1/mie/temporary", headers=verify_only, json=grant).status_code == 403
    )
    assert service.client.post("/v1/mie/revocations", json=body).status_code == 401


def test_a_temporary_badge(service: LiveService) -> None:
    old = "04000000000001"
    grant = {
        "mie": f"badge:{UID}",
        "id_nat": ID_NAT,
        "reason": "pvd",
        "expires_in": 86400,
        "max_level": None,
        "replaces": {"mie": f"badge:{old}", "reason": "lost"},
    }
    answer = service.client.post("/v1/mie/temporary", headers=DESK, json=grant)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["mie"] == f"badge:{UID}" and body["id_nat"] == ID_NAT
    assert body["reason"] == "pvd" and body["max_level"] == "substantial"
    assert body["replaces"] == f"badge:{old}" and body["by"] == "desk"
    found = service.client.get(f"/v1/mie/badge:{UID}", headers=DESK).json()
    assert found["temporary"] == body and found["revocation"] is None
    # The badge it replaces is revoked.
    replaced = service.client.get(f"/v1/mie/badge:{old}", headers=DESK).json()
    assert replaced["revocation"]["reason"] == "lost"
    # One unexpired grant per badge.
    again = service.client.post("/v1/mie/temporary", headers=DESK, json=grant)
    assert again.status_code == 400, again.text
    for bad in ({"expires_in": 8 * 86400}, {"reason": "x"}, {"mie": "fido2:AAAA"}, {"id_nat": "1"}):
        answer = service.client.post("/v1/mie/temporary", headers=DESK, json={**grant, **bad})
        assert answer.status_code == 400, (bad, answer.text)


def test_revoked_refused_on_the_other_node(
    live_service: Callable[[ServiceConfig], LiveService],
    fido_config: Callable[..., ServiceConfig],
    device: EmulatedAuthenticator,
) -> None:
    node_a = live_service(fido_config(node="node-a"))
    node_b = live_service(fido_config(node="node-b"))
    credential = register(node_a, device)["credential"]["credential_id"]
    assert authenticate(node_b, device).status_code == 200
    answer = _revoke(node_a, f"fido2:{credential}", "compromised")
    assert answer.status_code == 201, answer.text
    # The very next verification on node B refuses it.
    answer = authenticate(node_b, device, allow=[credential])
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "revoked"
    found = node_b.client.get(f"/v1/mie/fido2:{credential}", headers=DESK).json()
    assert found["credential"]["suspended"] == "revoked"
    assert found["revocation"]["reason"] == "compromised"


def test_a_temporary_badge_replacing_an_unknown_key_stores_nothing(service: LiveService) -> None:
    # RS1: the grant was stored before the replaced key was revoked; an unknown key then
    # failed the request with the grant left behind and nothing revoked.
    grant = {
        "mie": f"badge:{UID}",
        "id_nat": ID_NAT,
        "reason": "pvd",
        "expires_in": 86400,
        "replaces": {"mie": "fido2:AAAAAAAAAAAAAAAAAAAAAA", "reason": "lost"},
    }
    answer = service.client.post("/v1/mie/temporary", headers=DESK, json=grant)
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "not_found"
    assert service.client.get(f"/v1/mie/badge:{UID}", headers=DESK).status_code == 404
    del grant["replaces"]
    assert service.client.post("/v1/mie/temporary", headers=DESK, json=grant).status_code == 201


def test_a_temporary_badge_replacing_itself_is_refused(service: LiveService) -> None:
    # RS1: the grant was stored, then the same badge revoked: a useless grant, a revoked badge.
    grant = {
        "mie": f"badge:{UID}",
        "id_nat": ID_NAT,
        "reason": "pvd",
        "expires_in": 86400,
        "replaces": {"mie": f"badge:{UID}", "reason": "damaged"},
    }
    answer = service.client.post("/v1/mie/temporary", headers=DESK, json=grant)
    assert answer.status_code == 400, answer.text
    assert service.client.get(f"/v1/mie/badge:{UID}", headers=DESK).status_code == 404
