"""benchmarks/bench_fido.py runs on a few assertions: its last line is the JSON of every row, and
every row accepted every assertion (the script stops on a refusal). Only the counts are
asserted, never a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.store.conftest import postgres_database, postgres_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_fido.py"
COUNT = 50
ROWS = ("mie", "fido2_server", "py_webauthn", "floor", "mie_sqlite", "mie_postgres")

__all__ = ["postgres_database", "postgres_server"]


def _run(*extra: str) -> tuple[list[str], dict[str, object]]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", str(COUNT), *extra],
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


def test_every_row_accepts_every_assertion(postgres_database: str) -> None:
    lines, figures = _run("--postgres", postgres_database)
    assert list(figures) == [f"{row}_per_s" for row in ROWS] + ["count", "accepted"]
    assert figures["count"] == COUNT
    assert figures["accepted"] == {row: COUNT for row in ROWS}
    for row in ROWS:
        rate = figures[f"{row}_per_s"]
        assert isinstance(rate, float) and rate > 0, row
    table = [line.split() for line in lines[:-1]]
    assert [row[0] for row in table[1:]] == list(ROWS)


def test_without_postgres_its_row_is_null_with_the_reason() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["mie_postgres_per_s"] is None
    assert figures["accepted"]["mie_postgres"] is None
    assert figures["accepted"]["mie"] == 5
    assert figures["accepted"]["mie_sqlite"] == 5
    assert "mie_postgres: no PostgreSQL given" in out.stderr
