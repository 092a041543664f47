"""The ONE simulator on the same replay as ours, for the simulator rows of ``meshmsg bench``.

The ONE (github.com/akeranen/the-one, Java) is not a dependency and never ships with meshmsg.
When ``MESHMSG_THE_ONE`` names a built checkout of it (``target/core/DTNSim.class``, from its
``compile.sh``) and ``java`` is on the PATH, :func:`run_the_one` replays a ONE contact trace and
message file with one of its routers, headless (``-b 1``), exactly as
``simulations/reference/data/README.md`` describes its "files" runs: the same settings as its
``default_settings.txt`` (read from the checkout) with contact detection off and both files as
external event queues. The wall time of the replay is the ONE's own "Simulation done in" figure
(its event loop, after reading the settings and building the world), next to the whole process.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Final

from meshmsg.errors import MeshError

ENV_VAR: Final = "MESHMSG_THE_ONE"
ROUTERS: Final = {
    "direct": "DirectDeliveryRouter",
    "spray-and-wait": "SprayAndWaitRouter",
    "epidemic": "EpidemicRouter",
    "prophet": "ProphetRouter",
}
_DONE: Final = re.compile(r"Simulation done in ([0-9.]+)s")
_DELIVERED: Final = re.compile(r"^delivered: (\d+)$", re.MULTILINE)


def the_one_dir() -> Path | None:
    """The built ONE checkout named by ``MESHMSG_THE_ONE``, or None (unset, unbuilt, no java)."""
    value = os.environ.get(ENV_VAR, "")
    if not value or shutil.which("java") is None:
        return None
    path = Path(value).expanduser()
    return path if (path / "target" / "core" / "DTNSim.class").is_file() else None


def _plain_copy(source: Path, target: Path) -> Path:
    """The ONE reads plain text only: un-gzip ``source`` into ``target`` when it is gzip."""
    with source.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if not gzipped:
        return source.resolve()
    with gzip.open(source, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def replay_settings(
    router: str, contacts: Path, messages: Path, duration_s: float, reports: Path
) -> str:
    """The settings file the ONE reads on top of its ``default_settings.txt``."""
    return "\n".join([
        f"Scenario.name = meshmsg_bench_{router}",
        "Scenario.simulateConnections = false",
        f"Scenario.endTime = {duration_s:g}",
        "Events.nrof = 2",
        "Events1.class = ExternalEventsQueue",
        f"Events1.filePath = {contacts}",
        "Events2.class = ExternalEventsQueue",
        f"Events2.filePath = {messages}",
        f"Group.router = {router}",
        "Report.nrofReports = 1",
        "Report.report1 = MessageStatsReport",
        f"Report.reportDir = {reports}/",
        "",
    ])  # fmt: skip


def run_the_one(
    one_dir: Path, contacts: Path, messages: Path, policy: str, duration_s: float, workdir: Path
) -> dict[str, float]:
    """Replay ``contacts`` and ``messages`` in the ONE with the router for ``policy``.

    Returns ``loop_s`` (the ONE's "Simulation done in"), ``process_s`` (the whole java process,
    wall), ``cpu_s`` (its CPU time, children included) and ``delivered``.

    Raises:
        MeshError: unknown policy, or the ONE failed or printed no timing.
    """
    router = ROUTERS.get(policy)
    if router is None:
        raise MeshError(f"no ONE router for routing policy {policy!r}")
    reports = workdir / "one-reports"
    reports.mkdir(parents=True, exist_ok=True)
    settings = workdir / f"one-{policy}.txt"
    settings.write_text(replay_settings(
        router, _plain_copy(contacts, workdir / "one-contacts.txt"),
        _plain_copy(messages, workdir / "one-messages.txt"), duration_s, reports,
    ))  # fmt: skip
    classpath = os.pathsep.join(["target", "lib/ECLA.jar", "lib/DTNConsoleConnection.jar"])
    before = os.times()
    started = time.perf_counter()
    proc = subprocess.run(
        ["java", "-Xmx4G", "-cp", classpath, "core.DTNSim", "-b", "1", str(settings)],
        cwd=one_dir, capture_output=True, text=True, timeout=3_600, check=False,
    )  # fmt: skip
    process_s = time.perf_counter() - started
    after = os.times()
    found = _DONE.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        tail = (proc.stdout + proc.stderr).strip()[-300:]
        raise MeshError(f"the ONE failed (exit {proc.returncode}): {tail}")
    report = (reports / f"meshmsg_bench_{router}_MessageStatsReport.txt").read_text()
    delivered = _DELIVERED.search(report)
    return {
        "loop_s": float(found.group(1)),
        "process_s": process_s,
        "cpu_s": (after.children_user - before.children_user)
        + (after.children_system - before.children_system),
        "delivered": float(delivered.group(1)) if delivered else float("nan"),
    }
