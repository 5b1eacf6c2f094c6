"""A PNG per training: loss curve, and per-label F1 against the previous model."""

from __future__ import annotations

import io


def training_png(
    model_id_hint: str, losses: list[float], f1: dict[str, float], prev_f1: dict[str, float] | None
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(range(1, len(losses) + 1), losses, marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    a.set_title(f"loss — {model_id_hint}")
    names = sorted(f1)
    xs = range(len(names))
    if prev_f1:
        b.bar(
            [x - 0.2 for x in xs], [prev_f1.get(n, 0.0) for n in names], width=0.4, label="previous"
        )
        b.bar([x + 0.2 for x in xs], [f1[n] for n in names], width=0.4, label="this model")
        b.legend()
    else:
        b.bar(list(xs), [f1[n] for n in names])
    b.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
    b.set_ylim(0, 1)
    b.set_ylabel("F1 (held-out split)")
    b.set_title("per-label F1")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
