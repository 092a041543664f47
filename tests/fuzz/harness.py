"""The shared harness of the fuzz targets: a cursor over the fuzzer's bytes and a registry.

A *target* is a function ``(data: bytes) -> None`` that feeds ``data`` to one parser (or to a
whole Node) and asserts the contract: the parser returns a value, or raises the error type it
documents. Anything else escaping the target (another exception, an ``AssertionError`` from a
broken round trip or invariant) is a crash. Targets never catch ``Exception``; each one names the
documented types it expects.

Targets do not import atheris: the same function runs under atheris (``python -m tests.fuzz``),
over the seed corpus in pytest (``tests/fuzz/test_targets.py``), and under hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CORPUS_ROOT = Path(__file__).parent / "corpus"


class Cursor:
    """Reads structured choices off the fuzzer's bytes; runs dry as zeros and empty strings.

    Running dry never raises: a short input is a valid, shorter program, which keeps every input
    meaningful to the fuzzer.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return (self.u8() << 8) | self.u8()

    def choice(self, n: int) -> int:
        """A number in ``range(n)`` (n <= 256)."""
        return self.u8() % n

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk

    def sized(self) -> bytes:
        """A chunk prefixed by its 2-byte big-endian length."""
        return self.take(self.u16())

    def rest(self) -> bytes:
        return self.take(self.remaining)


def check(condition: bool, detail: object) -> None:
    """``assert`` for use inside ``except`` blocks (where ruff wants pytest.raises)."""
    if not condition:
        raise AssertionError(detail)


def sized(chunk: bytes) -> bytes:
    """Encode ``chunk`` the way :meth:`Cursor.sized` reads it (for building seeds)."""
    if len(chunk) > 0xFFFF:
        raise ValueError("a sized chunk holds at most 65,535 bytes")
    return len(chunk).to_bytes(2, "big") + chunk


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], Iterator[bytes]]
    about: str
    max_len: int = 4096  # libFuzzer's -max_len for generated inputs

    @property
    def corpus(self) -> Path:
        return CORPUS_ROOT / self.name

    def corpus_inputs(self) -> list[Path]:
        return (
            sorted(p for p in self.corpus.iterdir() if p.is_file()) if self.corpus.is_dir() else []
        )


TARGETS: dict[str, Target] = {}


def target(
    name: str, *, seeds: Callable[[], Iterator[bytes]], max_len: int = 4096
) -> Callable[[Callable[[bytes], None]], Callable[[bytes], None]]:
    """Register a fuzz target; its docstring's first paragraph says what it asserts."""

    def register(run: Callable[[bytes], None]) -> Callable[[bytes], None]:
        about = (run.__doc__ or "").strip().split("\n\n")[0]
        TARGETS[name] = Target(name=name, run=run, seeds=seeds, about=" ".join(about.split()),
                               max_len=max_len)  # fmt: skip
        return run

    return register
