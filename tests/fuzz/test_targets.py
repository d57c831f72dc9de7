"""A short deterministic pass of every fuzz target: its seeds, then mutations of them drawn from
a fixed random seed. No atheris, no pcscd; ``make fuzz`` runs the coverage-guided version."""

from __future__ import annotations

import random

import pytest

from tests.fuzz.context import Context
from tests.fuzz.harness import Finding, check, mutate
from tests.fuzz.targets import TARGETS

MAX_SEEDS = 24
MUTATIONS = 400
# Emulator targets send up to hundreds of commands per input.
SLOW = {"emulator-cps3": 100, "emulator-cps3-cl": 100, "emulator-cps4": 100, "emulator-demo": 100}


def _dictionary(seeds: list[bytes]) -> list[bytes]:
    return [seed[i : i + 4] for seed in seeds[:8] for i in range(0, min(len(seed), 64), 4)]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_holds_the_oracle(name: str, fuzz_context: Context) -> None:
    target = TARGETS[name]
    rng = random.Random(f"mie-fuzz-{name}")  # noqa: S311 (reproducible mutations, not secrets)
    seeds = list(target.seeds(fuzz_context))
    assert seeds, f"{name} has no seeds"
    if len(seeds) > MAX_SEEDS:
        seeds = rng.sample(seeds, MAX_SEEDS)
    run = target.prepare(fuzz_context)
    dictionary = _dictionary(seeds)
    inputs = list(seeds)
    inputs += [
        mutate(rng.choice(seeds), rng, dictionary)[: target.max_len]
        for _ in range(SLOW.get(name, MUTATIONS))
    ]
    findings: dict[str, tuple[Finding, bytes]] = {}
    for data in inputs:
        finding = check(run, data)
        if finding is not None and finding.key not in findings:
            findings[finding.key] = (finding, data)
    report = [
        f"{f.kind} {f.exception} at {f.where}: {f.message}\n"
        f"  python scripts/fuzz.py --reproduce {name} --hex {data.hex()}"
        for f, data in findings.values()
    ]
    assert not findings, "\n".join(report)
