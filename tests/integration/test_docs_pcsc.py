"""The blocks of README.md and docs/*.md marked ``<!-- doc-test: pcsc -->``, run against an
emulated CPS3 through pcscd on vpcd slot 0 (the harness and the other rules are in
``tests/unit/test_docs.py``).

A ``python`` block runs while ``mie emulate cps3 --pin 1234`` presents the card (and serves its
CRLs), with an operator trust store (``MIE_TRUST_DIR``) holding the TEST roots and CAs. A ``sh``
block starts its own emulator, so it runs as one bash script (``set -euo pipefail``; its
background jobs are stopped when it ends), in a temporary directory (what it writes stays
there), with an empty temporary ``MIE_TRUST_DIR``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mie.emulation.testpki import TestPki
from mie.trust.store import OperatorStore
from tests.harness import READER0, Pcscd, emulator_process
from tests.unit.test_docs import (
    DOC_PIN,
    TIMEOUT,
    Block,
    blocks_of,
    doc_env,
    outcome,
    run_python,
)

pytestmark = pytest.mark.pcsc

SCRIPT_PROLOGUE = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"


def _id(block: Block) -> str:
    return block.id


def _trust_store(directory: Path, test_pki: Path) -> Path:
    pki = TestPki.load(test_pki)
    store = OperatorStore(directory)
    for issued in [*pki.roots.values(), *pki.intermediates.values()]:
        store.add(issued.certificate, allow_test=True)
    return directory


@pytest.mark.parametrize("block", blocks_of("python", "pcsc"), ids=_id)
def test_python_block_against_an_emulated_cps3(
    pcscd: Pcscd, block: Block, tmp_path: Path, test_pki_dir: Path
) -> None:
    trust = _trust_store(tmp_path / "trust", test_pki_dir)
    env = doc_env(tmp_path / "home", test_pki_dir, MIE_TRUST_DIR=str(trust))
    work = tmp_path / "work"
    work.mkdir()
    with emulator_process("cps3", "--pin", DOC_PIN):
        run_python(block, work, env)


@pytest.mark.parametrize("block", blocks_of("sh", "pcsc"), ids=_id)
def test_shell_block_against_pcscd(
    pcscd: Pcscd, block: Block, tmp_path: Path, test_pki_dir: Path
) -> None:
    from mie.transport.pcsc import wait_for_removal

    trust = tmp_path / "trust"
    trust.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = doc_env(tmp_path / "home", test_pki_dir, MIE_TRUST_DIR=str(trust))
    process = subprocess.Popen(
        ["bash", "-c", SCRIPT_PROLOGUE + block.text],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            # The script's process group: bash and the jobs it started, nothing else.
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        with contextlib.suppress(Exception):
            wait_for_removal(READER0, timeout=10)
    assert process.returncode == 0, outcome(block.id, process.returncode, stdout, stderr)
