"""`make bench`: run every benchmark; each writes benchmarks/results/<name>.json."""

from __future__ import annotations

from . import bench_sampler


def main() -> None:
    bench_sampler.main()


if __name__ == "__main__":
    main()
