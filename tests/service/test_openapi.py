"""The hand-written OpenAPI document matches the routes, both ways (plan D9)."""

from __future__ import annotations

from typing import Any

from mie.service.errors import STATUS
from mie.service.openapi import OPERATIONS, route_paths
from tests.service.conftest import ORIGIN, LiveService


def _document(service: LiveService) -> dict[str, Any]:
    answer = service.client.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def test_every_route_is_documented_and_every_path_is_a_route(service: LiveService) -> None:
    document = _document(service)
    routes = route_paths(service.app.routes)
    paths = document["paths"]
    for path, methods in routes.items():
        assert path in paths, f"route {path} is not documented"
        assert set(paths[path]) <= methods, path
        assert set(paths[path]) == {OPERATIONS[path].method}
    for path in paths:
        assert path in routes, f"documented path {path} is no route"


def test_every_operation_in_the_table_is_a_route_the_app_can_mount() -> None:
    from mie.service.app import _OPTIONAL

    mountable = {"/v1/challenges", "/v1/verify", "/v1/health", "/metrics", "/openapi.json"}
    mountable |= {path for spec in _OPTIONAL.values() for _, path, _, _ in spec}
    assert set(OPERATIONS) == mountable


def test_every_documented_status_is_the_one_of_its_codes(service: LiveService) -> None:
    for path, item in _document(service)["paths"].items():
        for operation in item.values():
            statuses = {int(s) for s in operation["responses"]}
            for code in operation["x-mie-codes"]:
                assert STATUS[code] in statuses, (path, code)
            for status in statuses:
                if status >= 400:
                    codes = {c for c in operation["x-mie-codes"] if STATUS[c] == status}
                    assert codes or status in (405, 415), (path, status)


def test_the_document(service: LiveService) -> None:
    document = _document(service)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": ORIGIN}]
    for name in ("Error", "Challenge", "AuthResult", "PscClaims"):
        assert name in document["components"]["schemas"]
    refs = _refs(document)
    for ref in refs:
        parts = ref.removeprefix("#/").split("/")
        node: Any = document
        for part in parts:
            node = node[part]


def _refs(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                found.add(item)
            else:
                found |= _refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= _refs(item)
    return found
