"""Run mie's fuzz targets coverage-guided with atheris, or reproduce one input.

    .venv/bin/python scripts/fuzz.py --inputs 20000            # every target, 2 at a time
    .venv/bin/python scripts/fuzz.py --inputs 5000 --targets tlv,apdu
    .venv/bin/python scripts/fuzz.py --reproduce tlv --hex 5f2000

Each target runs in its own process (atheris.Setup and Fuzz once per process) with
``-runs``, ``-max_total_time``, ``-timeout=1`` and ``-rss_limit_mb``. Seeds are made at run time
into the work directory (default ``$FUZZ_DIR`` or ``~/.cache/mie/fuzz``); the corpus each run
grows is kept there too. The table and a final JSON line go to stdout; the exit status is 1 when
any target found something. Targets and oracle: ``tests/fuzz`` and ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MAX_RESTARTS = 5
HANG_SECONDS = 1.0
STATUS_EVERY_S = 2.0


def _default_work() -> Path:
    explicit = os.environ.get("FUZZ_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mie" / "fuzz"


def _import_targets() -> Any:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "src"))
    from tests.fuzz import targets

    return targets


# --- worker: one target under atheris ------------------------------------------------------------


@dataclass
class _Worker:
    name: str
    findings: Path
    status: Path
    inputs: int = 0
    start: float = field(default_factory=time.monotonic)
    last_status: float = 0.0
    seen: dict[str, int] = field(default_factory=dict)

    def judge(self, check: Any, run: Any, data: bytes) -> None:
        finding = check(run, data)
        self.inputs += 1
        now = time.monotonic()
        if now - self.last_status > STATUS_EVERY_S:
            self.write_status(now)
        if finding is not None:
            self.record(finding, data)

    def write_status(self, now: float) -> None:
        self.last_status = now
        text = json.dumps({"inputs": self.inputs, "seconds": now - self.start})
        self.status.write_text(text)

    def record(self, finding: Any, data: bytes) -> None:
        key = finding.key
        self.seen[key] = self.seen.get(key, 0) + 1
        path = self.findings / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")
        entry: dict[str, Any] | None = json.loads(path.read_text()) if path.exists() else None
        if entry is None or len(data) < len(base64.b64decode(entry["input"])):
            entry = {
                "target": self.name,
                "kind": finding.kind,
                "exception": finding.exception,
                "message": finding.message,
                "where": finding.where,
                "seconds": round(finding.seconds, 3),
                "input": base64.b64encode(data).decode(),
            }
        entry["count"] = self.seen[key]
        path.write_text(json.dumps(entry, indent=1))


def worker(args: argparse.Namespace) -> int:
    """Fuzz one target in this process; libFuzzer ends the process when the budget is spent."""
    import atheris

    # Which modules to leave out is known only from the target list, which imports mie: read
    # it in a child interpreter, so that this one imports mie under instrumentation.
    exclude = _uninstrumented(args.worker)
    instrument = (
        atheris.instrument_imports(include=["mie"], exclude=exclude)
        if "mie" not in exclude
        else contextlib.nullcontext()
    )
    with instrument:
        targets = _import_targets()
        from tests.fuzz.context import Context
        from tests.fuzz.harness import check
    target = targets.TARGETS[args.worker]
    # Bad input makes mie log warnings (an unusable CRL...); millions of them are noise here.
    logging.disable(logging.CRITICAL)
    run = target.prepare(Context(args.work))
    state = _Worker(target.name, args.findings, args.status)
    state.findings.mkdir(parents=True, exist_ok=True)
    flags = [
        f"-runs={args.inputs}",
        f"-max_total_time={args.max_seconds}",
        "-timeout=1",
        f"-rss_limit_mb={args.rss_mb}",
        f"-max_len={target.max_len}",
        f"-artifact_prefix={args.artifacts}/",
        "-print_final_stats=1",
        "-keep_seed=1",
        f"-seed={args.seed}",
        str(args.corpus),
        str(args.seeds),
    ]
    atheris.Setup([sys.argv[0], *flags], lambda data: state.judge(check, run, data))
    atheris.Fuzz()
    return 0


def _uninstrumented(name: str) -> list[str]:
    code = (
        "import json, sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/src'];"
        "from tests.fuzz.targets import TARGETS;"
        "print(json.dumps(list(TARGETS[sys.argv[2]].uninstrumented)))"
    )
    output = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code, str(REPO), name], capture_output=True, check=True
    )
    return list(json.loads(output.stdout))


# --- runner: seeds, processes, table --------------------------------------------------------------


@dataclass
class Result:
    """What one target's run did."""

    target: str
    inputs: int = 0
    seconds: float = 0.0
    findings: int = 0
    hangs: int = 0
    restarts: int = 0
    error: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def make_seeds(work: Path, names: list[str]) -> dict[str, int]:
    """Write every target's seeds into ``work/seeds/<target>`` (made afresh each run)."""
    targets = _import_targets()
    from tests.fuzz.context import Context

    context = Context(work)
    counts = {}
    for name in names:
        directory = work / "seeds" / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        seeds = list(targets.TARGETS[name].seeds(context))
        for seed in seeds:
            (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)  # noqa: S324
        counts[name] = len(seeds)
    return counts


_DONE = re.compile(rb"Done (\d+) runs in (\d+) second")
_UNITS = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")


def run_target(name: str, args: argparse.Namespace) -> Result:
    """Fuzz ``name`` in child processes until its input budget is spent (restarting after a
    hang, which libFuzzer reports by ending the process)."""
    result = Result(name)
    base = args.work / "runs" / name
    shutil.rmtree(base, ignore_errors=True)
    artifacts, findings = base / "artifacts", base / "findings"
    for directory in (artifacts, findings, args.work / "corpus" / name):
        directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.max_seconds
    while result.inputs < args.inputs and result.restarts <= MAX_RESTARTS:
        left = max(1, int(deadline - time.monotonic()))
        if deadline - time.monotonic() <= 0:
            break
        done, seconds, output = _one_process(name, args, base, args.inputs - result.inputs, left)
        result.inputs += done
        result.seconds += seconds
        if b"ERROR: libFuzzer: timeout" in output:
            result.hangs += 1
        elif b"ERROR: libFuzzer" in output or (b"Traceback" in output and done == 0):
            result.error = output.decode(errors="replace")[-2000:]
            break
        if _DONE.search(output):
            break
        result.restarts += 1
    result.details = [json.loads(p.read_text()) for p in sorted(findings.glob("*.json"))]
    result.details += _hang_artifacts(name, artifacts)
    for detail in result.details:
        if detail["kind"] == "hang":
            _confirm_hang(detail, args)
    counted = [d for d in result.details if d["kind"] != "slow-instrumented"]
    result.findings = sum(1 for d in counted if d["kind"] != "hang")
    result.hangs = sum(1 for d in counted if d["kind"] == "hang")
    return result


_TOOK = re.compile(r"\((\d+\.\d+) s\)")


def _confirm_hang(detail: dict[str, Any], args: argparse.Namespace) -> None:
    """Time a hang again without coverage instrumentation, which slows large inputs many times:
    the oracle is about mie's time, not the tracer's. Unconfirmed hangs are listed, not counted."""
    command = [sys.executable, str(Path(__file__).resolve()), "--work", str(args.work)]
    command += ["--reproduce", detail["target"], "--base64", detail["input"]]
    slowest = 0.0
    for _ in range(3):
        completed = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, check=False, cwd=REPO, timeout=120
        )
        took = _TOOK.search(completed.stdout)
        if completed.returncode != 0 or took is None:
            return
        slowest = max(slowest, float(took.group(1)))
    if slowest <= HANG_SECONDS:
        detail["kind"] = "slow-instrumented"
        detail["message"] += f"; {slowest:.2f} s without instrumentation"


def _one_process(
    name: str, args: argparse.Namespace, base: Path, inputs: int, seconds: int
) -> tuple[int, float, bytes]:
    status = base / "status.json"
    status.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--inputs",
        str(inputs),
        "--max-seconds",
        str(seconds),
        "--rss-mb",
        str(args.rss_mb),
        "--seed",
        str(args.seed),
        "--work",
        str(args.work),
        "--corpus",
        str(args.work / "corpus" / name),
        "--seeds",
        str(args.work / "seeds" / name),
        "--findings",
        str(base / "findings"),
        "--artifacts",
        str(base / "artifacts"),
        "--status",
        str(status),
    ]
    start = time.monotonic()
    completed = subprocess.run(  # noqa: S603
        command, capture_output=True, check=False, cwd=REPO, timeout=seconds + 300
    )
    elapsed = time.monotonic() - start
    output = completed.stdout + completed.stderr
    (base / "log.txt").open("ab").write(output)
    done = _UNITS.search(output) or _DONE.search(output)
    if done:
        return int(done.group(1)), elapsed, output
    if status.exists():
        return int(json.loads(status.read_text())["inputs"]), elapsed, output
    return 0, elapsed, output


def _hang_artifacts(name: str, artifacts: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(artifacts.iterdir()):
        kind = path.name.split("-", 1)[0]
        if kind in ("timeout", "oom", "crash", "slow"):
            data = path.read_bytes()
            found.append(
                {
                    "target": name,
                    "kind": "hang" if kind in ("timeout", "slow") else kind,
                    "exception": kind,
                    "message": f"libFuzzer {kind} artifact {path.name}",
                    "where": "-",
                    "input": base64.b64encode(data).decode(),
                    "count": 1,
                }
            )
    return found


def print_table(results: list[Result], budget: int, wall: float) -> None:
    """Print the results table and the final JSON line."""
    header = (
        f"{'target':<20} {'inputs':>9} {'seconds':>8} {'rate/s':>8} {'findings':>8} {'hangs':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.target:<20} {r.inputs:>9} {r.seconds:>8.1f} {r.rate:>8.0f} "
            f"{r.findings:>8} {r.hangs:>6}"
        )
        for d in r.details:
            print(
                f"    {d['kind']}: {d['exception']} at {d['where']} x{d['count']}: {d['message']}"
            )
        if r.error:
            print(f"    worker failed: {r.error.strip().splitlines()[-1]}")
    summary = {
        "budget": budget,
        "wall_seconds": round(wall, 1),
        "targets": len(results),
        "inputs": sum(r.inputs for r in results),
        "findings": sum(r.findings for r in results),
        "hangs": sum(r.hangs for r in results),
        "errors": sum(1 for r in results if r.error),
        "results": {
            r.target: {
                "inputs": r.inputs,
                "seconds": round(r.seconds, 1),
                "rate": round(r.rate),
                "findings": r.findings,
                "hangs": r.hangs,
            }
            for r in results
        },
    }
    print(json.dumps(summary))


def runner(args: argparse.Namespace) -> int:
    """Make the seeds, fuzz every target ``--jobs`` at a time, print the table."""
    targets = _import_targets()
    names = args.targets.split(",") if args.targets else list(targets.TARGETS)
    unknown = [n for n in names if n not in targets.TARGETS]
    if unknown:
        print(f"fuzz: unknown targets {', '.join(unknown)}", file=sys.stderr)
        return 2
    start = time.monotonic()
    counts = make_seeds(args.work, names)
    print(f"seeds: {sum(counts.values())} in {time.monotonic() - start:.1f} s ({args.work})")
    # Longest first (by the previous run's rates), so the last target does not run alone.
    history_file = args.work / "rates.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else {}
    order = sorted(names, key=lambda n: history.get(n, 1000.0))
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        done = dict(zip(order, pool.map(lambda n: run_target(n, args), order), strict=True))
    results = [done[n] for n in names]
    history.update({r.target: r.rate for r in results if r.inputs})
    history_file.write_text(json.dumps(history, indent=1))
    print_table(results, args.inputs, time.monotonic() - start)
    bad = any(r.findings or r.hangs or r.error for r in results)
    short = any(r.inputs < args.inputs for r in results)
    if short and not bad:
        print("fuzz: some targets ran out of time before their budget", file=sys.stderr)
    return 1 if bad else 0


def reproduce(args: argparse.Namespace) -> int:
    """Run one input through a target without atheris, and print the oracle's verdict."""
    targets = _import_targets()
    from tests.fuzz.context import Context
    from tests.fuzz.harness import OracleViolation

    if args.hex is not None:
        data = bytes.fromhex(args.hex)
    elif args.base64 is not None:
        data = base64.b64decode(args.base64)
    else:
        data = Path(args.file).read_bytes()
    run = targets.TARGETS[args.reproduce].prepare(Context(args.work))
    from mie.core.errors import MieError

    start = time.perf_counter()
    try:
        run(data)
    except MieError as e:
        print(f"ok: {type(e).__name__}: {e} ({time.perf_counter() - start:.3f} s)")
        return 0
    except (Exception, RecursionError, OracleViolation):
        traceback.print_exc()
        return 1
    print(f"ok: no exception ({time.perf_counter() - start:.3f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=20000, help="inputs per target")
    parser.add_argument("--jobs", type=int, default=2, help="targets fuzzed at once")
    parser.add_argument("--targets", help="comma-separated target names (default: all)")
    parser.add_argument("--max-seconds", type=int, default=3600, help="time limit per target")
    parser.add_argument("--rss-mb", type=int, default=2048, help="memory limit per process")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer random seed")
    parser.add_argument("--work", type=Path, default=_default_work(), help="seeds and corpora")
    parser.add_argument("--reproduce", metavar="TARGET", help="run one input through TARGET")
    parser.add_argument("--hex", help="the input to reproduce, hex")
    parser.add_argument("--base64", help="the input to reproduce, base64")
    parser.add_argument("--file", help="the input to reproduce, a file")
    parser.add_argument("--list", action="store_true", help="list the targets")
    for internal in ("--worker", "--corpus", "--seeds", "--findings", "--artifacts", "--status"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("corpus", "seeds", "findings", "artifacts", "status"):
        if getattr(args, name) is not None:
            setattr(args, name, Path(getattr(args, name)))
    if args.worker:
        return worker(args)
    if args.list:
        for target in _import_targets().TARGETS.values():
            print(f"{target.name:<20} {target.covers}")
        return 0
    if args.reproduce:
        return reproduce(args)
    return runner(args)


if __name__ == "__main__":
    sys.exit(main())
