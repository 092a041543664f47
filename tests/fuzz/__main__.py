"""Run the fuzz targets with atheris (coverage-guided, libFuzzer).

    python -m tests.fuzz list                       # the targets and what each asserts
    python -m tests.fuzz run TARGET --time 3600     # one long run (one process, one core)
    python -m tests.fuzz all --time 60              # every target in turn (what .ci/fuzz does)
    python -m tests.fuzz replay TARGET FILE...      # run inputs (e.g. a crash-* file) directly
    python -m tests.fuzz seeds                      # rewrite tests/fuzz/corpus/ from the encoders

Each run fuzzes in a fresh subprocess (atheris can only be set up once per process). New inputs
go to a work directory (``--workdir``, default a temporary one), never into the repository's
corpus, which is read as the second corpus directory; crash, timeout and out-of-memory inputs
are written to ``<workdir>/<target>/artifacts/``. Pass ``--merge`` to copy a run's new inputs
into ``tests/fuzz/corpus/<target>/`` (keep it small: ``-merge=1`` keeps only inputs that add
coverage). Exit status: 0 when every run finished without a crash, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PER_INPUT_TIMEOUT_S = 10  # an input taking longer is a hang: a finding
RSS_LIMIT_MB = 1024  # a peer must not make us hold this much: a finding


@dataclass(frozen=True, slots=True)
class RunResult:
    target: str
    ok: bool
    execs: int
    seconds: float
    cov: int | None
    ft: int | None
    corpus: int | None
    detail: str

    def line(self) -> str:
        rate = self.execs / self.seconds if self.seconds else 0.0
        status = "ok" if self.ok else "CRASH"
        return (
            f"{self.target:<10} {status:<5} execs={self.execs} ({rate:.0f}/s) "
            f"time={self.seconds:.0f}s cov={self.cov} ft={self.ft} corpus={self.corpus}"
        )


def _child(target_name: str, libfuzzer_args: list[str]) -> None:
    """Inside the fuzzing subprocess: instrument meshmsg, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["meshmsg"]):
        from tests.fuzz import targets  # noqa: F401  (registers the targets)
    from tests.fuzz.harness import TARGETS

    run = TARGETS[target_name].run
    atheris.Setup([sys.argv[0], *libfuzzer_args], run)
    atheris.Fuzz()


_STATUS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_EXECS = re.compile(r"stat::number_of_executed_units: (\d+)")
_DONE = re.compile(r"Done (\d+) runs in")


def fuzz(target_name: str, seconds: int, workdir: Path, *, merge: bool = False) -> RunResult:
    from tests.fuzz.harness import TARGETS

    spec = TARGETS[target_name]
    work = workdir / target_name
    new_inputs = work / "corpus"
    artifacts = work / "artifacts"
    new_inputs.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        str(new_inputs),
        str(spec.corpus),
        f"-max_total_time={seconds}",
        f"-timeout={PER_INPUT_TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={spec.max_len}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    command = [sys.executable, "-m", "tests.fuzz", "_child", target_name, "--", *args]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    elapsed = time.monotonic() - started
    log = proc.stdout + proc.stderr
    (work / "fuzz.log").write_text(log, "utf-8")
    statuses = _STATUS.findall(log)
    execs = int((_EXECS.findall(log) or _DONE.findall(log) or ["0"])[-1])
    cov = ft = corp = None
    if statuses:
        cov, ft, corp = (int(x) for x in statuses[-1][1:])
        execs = max(execs, int(statuses[-1][0]))
    crashes = sorted(p.name for p in artifacts.iterdir())
    ok = proc.returncode == 0 and not crashes
    detail = "" if ok else _crash_detail(log, crashes, proc.returncode)
    if merge and ok:
        _merge(target_name, new_inputs)
    return RunResult(target_name, ok, execs, elapsed, cov, ft, corp, detail)


def _crash_detail(log: str, crashes: list[str], code: int) -> str:
    start = log.find("=== Uncaught Python exception")
    if start < 0:
        start = max(0, log.find("==ERROR"))
    excerpt = log[start : start + 4000] if start >= 0 else log[-4000:]
    return f"exit status {code}; artifacts: {', '.join(crashes) or 'none'}\n{excerpt}"


def _merge(target_name: str, new_inputs: Path) -> None:
    """Minimise the repository corpus plus the new inputs into the repository corpus."""
    from tests.fuzz.harness import TARGETS

    corpus = TARGETS[target_name].corpus
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "tests.fuzz", "_child", target_name, "--",
             "-merge=1", str(merged), str(corpus), str(new_inputs)],
            capture_output=True, check=True,
        )  # fmt: skip
        if not any(merged.iterdir()):  # seen on 2026-12-07: the old corpus was wiped
            raise RuntimeError(f"the merge for {target_name} produced no inputs; corpus kept")
        for old in corpus.iterdir():
            old.unlink()
        for new in merged.iterdir():
            (corpus / new.name).write_bytes(new.read_bytes())


def write_seeds() -> None:
    import hashlib

    from tests.fuzz import targets  # noqa: F401
    from tests.fuzz.harness import TARGETS

    for spec in TARGETS.values():
        spec.corpus.mkdir(parents=True, exist_ok=True)
        for seed in spec.seeds():
            name = "seed-" + hashlib.sha1(seed).hexdigest()[:16]
            (spec.corpus / name).write_bytes(seed)


def replay(target_name: str, files: list[str]) -> None:
    from tests.fuzz import targets  # noqa: F401
    from tests.fuzz.harness import TARGETS

    for file in files:
        TARGETS[target_name].run(Path(file).read_bytes())
        print(f"{file}: ok")


def main(argv: list[str]) -> int:
    if argv[:1] == ["_child"]:
        _child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    sub.add_parser("seeds")
    for name in ("run", "all"):
        p = sub.add_parser(name)
        if name == "run":
            p.add_argument("targets", nargs="+")
        p.add_argument("--time", type=int, default=60, help="seconds per target")
        p.add_argument("--workdir", type=Path, default=None)
        p.add_argument("--merge", action="store_true", help="minimise new inputs into the corpus")
    p = sub.add_parser("replay")
    p.add_argument("target")
    p.add_argument("files", nargs="+")
    args = parser.parse_args(argv)

    from tests.fuzz import targets  # noqa: F401
    from tests.fuzz.harness import TARGETS

    if args.command == "list":
        for spec in TARGETS.values():
            print(f"{spec.name}: {spec.about}\n")
        return 0
    if args.command == "seeds":
        write_seeds()
        return 0
    if args.command == "replay":
        replay(args.target, args.files)
        return 0
    names = list(TARGETS) if args.command == "all" else args.targets
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {list(TARGETS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="meshmsg-fuzz-"))
    results = []
    for name in names:
        result = fuzz(name, args.time, workdir, merge=args.merge)
        print(result.line(), flush=True)
        if not result.ok:
            print(result.detail, flush=True)
        results.append(result)
    total = sum(r.execs for r in results)
    failed = [r.target for r in results if not r.ok]
    print(f"== {len(results)} targets, {total} execs, work dir {workdir}")
    if failed:
        print(f"== CRASHES in: {', '.join(failed)} (inputs under {workdir}/<target>/artifacts/)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
