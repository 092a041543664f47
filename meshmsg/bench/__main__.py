"""``python -m meshmsg.bench``: the same as ``meshmsg bench``."""

from meshmsg.bench.suite import bench_command

if __name__ == "__main__":
    bench_command()
