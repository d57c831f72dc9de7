"""benchmarks/bench_desfire.py runs, once per login, and its JSON says the protocol minimum of
each scheme (issue 9 plan D5): static UID 4 card commands, random UID 7, random UID + the
originality check 8, the same through the SoftHSM2 key provider and through the relay. Only the
counts are asserted, never a time."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness import missing

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_desfire.py"
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")

# Rows: static UID, random UID, random UID + originality.
COMMANDS = [4, 7, 8]
# + the reader's GET DATA (static UID) and the three AF frames of the 200-byte FULL read; the
# originality signature read inside the session (originality_read "full", the default) is 72
# bytes (64 enciphered + the MAC): two frames.
APDUS = [8, 10, 12]


def _run() -> tuple[list[str], dict[str, object]]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict)
    return lines, figures


def test_the_benchmark_counts_the_protocol_minimum_of_each_scheme() -> None:
    lines, figures = _run()
    assert figures["round_trips"] == COMMANDS[-1]
    assert figures["commands"] == COMMANDS
    assert figures["apdus"] == APDUS
    assert isinstance(figures["soft_ms"], float)
    assert isinstance(figures["floor_ms"], float)
    assert isinstance(figures["pin_ms"], float)
    # The same counts in every column (the script stops if a column counts otherwise), and a
    # relay time: the relay runs on 127.0.0.1 with no daemon.
    assert isinstance(figures["relay_ms"], float)
    table = [line.split() for line in lines[:-1]]
    assert any(row[:2] == ["static", "UID"] for row in table)
    softhsm = shutil.which("softhsm2-util") is not None and SOFTHSM_MODULE.exists()
    if not softhsm or importlib.util.find_spec("pkcs11") is None:
        assert figures["hsm_ms"] is None
        missing("SoftHSM2 or python-pkcs11 is not installed: the hsm column is null")
    assert isinstance(figures["hsm_ms"], float)
