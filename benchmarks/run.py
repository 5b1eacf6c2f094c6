"""`make bench`: run every benchmark; each writes benchmarks/results/<name>.json."""

from __future__ import annotations

from . import (
    bench_checkpoint,
    bench_drift,
    bench_drift_detection,
    bench_e2e,
    bench_formats,
    bench_quality,
    bench_sampler,
    bench_snapshot,
    bench_snapshot_cadence,
    bench_soak,
    bench_trainer,
)


def main() -> None:
    bench_sampler.main()
    bench_drift.main()
    bench_drift_detection.main()
    bench_formats.main()
    bench_snapshot.main()
    bench_checkpoint.main()
    bench_trainer.main()
    bench_quality.main()
    bench_e2e.main()
    bench_snapshot_cadence.main()
    bench_soak.main()


if __name__ == "__main__":
    main()
