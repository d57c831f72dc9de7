"""The suite on a machine without pyscard: the modules that need it are skipped with the reason,
and under CI=true that is a failure (CI must never pass by testing nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Imported first by the interpreter (sitecustomize): from then on, `import smartcard` fails as it
# does where pyscard is not installed.
NO_PYSCARD = """
import sys

class _NoPyscard:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "smartcard":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoPyscard())
"""
NEEDS_PYSCARD = ["test_cpx.py", "test_faults.py", "test_pcsc.py"]


def _collect_without_pyscard(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(NO_PYSCARD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tmp_path)
    if ci:
        env["CI"] = "true"
    # Collection only: nothing runs, no pcscd is started.
    command = [sys.executable, "-m", "pytest", "tests/integration", "--collect-only", "-q", "-ra"]
    return subprocess.run(
        [*command, "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_pyscard_the_modules_needing_it_are_skipped_with_the_reason(
    tmp_path: Path,
) -> None:
    result = _collect_without_pyscard(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout.lower()
    for module in NEEDS_PYSCARD:
        assert f"{module} needs pyscard, which is not installed (pip install 'mie[pcsc]')" in (
            result.stdout
        )
    # The modules that can run without pyscard are still collected.
    assert "test_vectors.py::test_committed_vector_replays" in result.stdout


def test_without_pyscard_under_ci_the_collection_fails(tmp_path: Path) -> None:
    result = _collect_without_pyscard(tmp_path, ci=True)
    assert result.returncode != 0
    for module in NEEDS_PYSCARD:
        assert f"ERROR tests/integration/{module}" in result.stdout
        assert f"Failed: CI=true and {module} needs pyscard" in result.stdout
