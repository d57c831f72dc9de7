"""A CPS3 login through the service, end to end (issue 11, Done 1 and 4): ``mie serve`` issues
a nonce, ``mie emulate cps3`` and ``mie auth --nonce --origin --json`` make the evidence
through pcscd, ``POST /v1/verify`` accepts it at ``substantial`` with PSC claims, the same
body again is refused, and the audit trail verifies (an edited copy does not)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import READER0, Pcscd, emulator_process, mie_command
from tests.integration.test_service_nodes import audit_dir, mie_serve, write_config
from tests.service.conftest import (  # noqa: F401 - fixtures
    ORIGIN,
    headers,
    pki,
    psc_allowing_test,
    trust_files,
)

pytestmark = [pytest.mark.pcsc, pytest.mark.usefixtures("operator_trust")]


def _auth(nonce: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mie_command(
            "auth", "--reader", READER0, "--pin-stdin", "--json",
            "--nonce", nonce.hex(), "--origin", ORIGIN,
        ),
        input="1234\n",
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_cps3_login_through_the_service(
    pcscd: Pcscd,
    tmp_path: Path,
    trust_files: dict[str, list[str]],  # noqa: F811
    psc_allowing_test: str,  # noqa: F811
) -> None:
    store = f"sqlite:///{tmp_path / 'service.db'}"
    config = write_config(tmp_path, "node-a", store, trust_files, psc_allowing_test)
    try:
        _run(config, tmp_path)
    finally:
        shutil.rmtree(audit_dir(tmp_path), ignore_errors=True)


def _run(config: Path, tmp_path: Path) -> None:
    with mie_serve(config, "node-a") as node, node.client() as client:
        answer = client.post("/v1/challenges", headers=headers(), json={})
        assert answer.status_code == 201, answer.text
        nonce = bytes.fromhex(answer.json()["nonce"])
        with emulator_process("cps3", "--pin", "1234"):
            out = _auth(nonce)
        assert out.returncode == 0, out.stderr
        body = json.loads(out.stdout)
        answer = client.post("/v1/verify", headers=headers(), json=body)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["valid"] is True and result["level"] == "substantial"
        assert result["authenticator"]["kind"] == "cps3"
        claims = result["psc_claims"]
        assert claims["SubjectNameID"] == result["identity"]["id_nat"]
        assert claims["acr"] == "eidas1" and claims["amr"] == ["sc", "pin", "mfa"]
        assert result["audit"]["node"] == "node-a"
        again = client.post("/v1/verify", headers=headers(), json=body)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "nonce_unknown"
    trail = node.audit
    done = subprocess.run(
        mie_command("audit", "verify", str(trail)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    edited = tmp_path / "edited.jsonl"
    lines = trail.read_text().splitlines(keepends=True)
    record = json.loads(lines[1])
    assert record["event"] == "verify" and record["level"] == "substantial"
    record["level"] = "high"
    lines[1] = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    edited.write_text("".join(lines))
    done = subprocess.run(
        mie_command("audit", "verify", str(edited)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "integrity_error" in done.stderr and "record 3" in done.stderr, done.stderr
