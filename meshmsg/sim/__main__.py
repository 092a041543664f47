"""``python -m meshmsg.sim run|sweep ...``."""

from meshmsg.sim.cli import sim

sim(prog_name="python -m meshmsg.sim")
