"""A drift check as a report people read: one self-contained HTML page (inline CSS and
SVG, no script, nothing fetched) and the same facts as JSON.

Per label: the decision, the score, the window and reference sizes; per feature: the KS
statistic and p-value (raw and adjusted for testing many features), the threshold,
Wasserstein-1, PSI, the decision, and both distributions on common bins as a small plot.
Then the label mix (JS divergence, chi-square p-value, scarce labels) and the actions the
check took. Pure: it returns strings and dicts; the caller writes them.

>>> from drift.monitor import DriftReport, LabelDrift, MixDrift
>>> r = DriftReport({"a": LabelDrift("a", True, n_window=3)}, MixDrift(0.0, 1.0, True, False,
...                 [], {}), [])
>>> page = render_html(r, title="check")
>>> page.startswith("<!DOCTYPE html>") and "insufficient" in page
True
>>> report_dict(r, alpha=0.01)["labels"]["a"]["insufficient"]
True
"""

from __future__ import annotations

import html
import math

from .monitor import DriftReport, FeatureDrift

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1b1b;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
.bad{color:#b00020;font-weight:600}.ok{color:#1b5e20}.muted{color:#777}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float) and (abs(v) >= 1e4 or (0 < abs(v) < 1e-3)):
        return f"{v:.2e}"
    return f"{v:.{digits}g}"


def _svg(hist, width: int = 180, height: int = 44) -> str:
    """Two step histograms (reference grey, window red) on common bins."""
    if not hist:
        return ""
    _, ref, cur = hist
    rt, ct = max(1, sum(ref)), max(1, sum(cur))
    top = max(max(r / rt for r in ref), max(c / ct for c in cur), 1e-9)
    n = len(ref)
    bw = width / n

    def path(counts, total) -> str:
        pts = []
        for i, v in enumerate(counts):
            y = height - (v / total) / top * (height - 2)
            pts += [f"{i * bw:.1f},{y:.1f}", f"{(i + 1) * bw:.1f},{y:.1f}"]
        return " ".join(pts)

    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="distributions">'
        f'<polyline fill="none" stroke="#9e9e9e" stroke-width="1.5" points="{path(ref, rt)}"/>'
        f'<polyline fill="none" stroke="#c62828" stroke-width="1.5" points="{path(cur, ct)}"/>'
        "</svg>"
    )


def _feature_row(f: FeatureDrift, alpha: float) -> str:
    cls = "bad" if f.drifted else "ok"
    return (
        f'<tr><td class="l">{html.escape(f.feature)}</td><td>{_num(f.ks)}</td>'
        f"<td>{_num(f.pvalue)}</td><td>{_num(f.p_adjusted)}</td><td>{_num(alpha)}</td>"
        f"<td>{_num(f.wasserstein)}</td><td>{_num(f.psi)}</td>"
        f'<td class="{cls}">{"drift" if f.drifted else "no drift"}</td>'
        f"<td>{_svg(f.histogram)}</td></tr>"
    )


def render_html(report: DriftReport, title: str = "Drift report", alpha: float = 0.01,
                context: dict | None = None) -> str:  # fmt: skip
    """The report as one HTML page (``context``: key/value lines shown at the top)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if context:
        out.append("<p>" + "<br>".join(f"<b>{e(str(k))}</b>: {e(str(v))}"
                                       for k, v in context.items()) + "</p>")  # fmt: skip
    drifted = [n for n, ld in report.labels.items() if ld.drifted]
    out.append(
        f'<p class="{"bad" if drifted or report.mix.drifted else "ok"}">'
        + (f"Drift in {len(drifted)} of {len(report.labels)} labels: "
           + e(", ".join(drifted)) if drifted else "No label drifted")
        + (" · the label mix changed" if report.mix.drifted else "") + "</p>"
    )  # fmt: skip
    out.append('<p class="legend muted">distributions:<span style="background:#9e9e9e">'
               '</span>reference (last snapshot)<span style="background:#c62828"></span>'
               "recent window</p>")  # fmt: skip
    for name in sorted(report.labels):
        ld = report.labels[name]
        state = "insufficient data" if ld.insufficient else ("drift" if ld.drifted else "stable")
        cls = "muted" if ld.insufficient else ("bad" if ld.drifted else "ok")
        out.append(
            f'<h2>{e(name)} <span class="{cls}">{state}</span></h2><p class="muted">'
            f"score {_num(ld.score)} (−log10 of the smallest adjusted p-value) · window "
            f"{ld.n_window} · reference {ld.n_reference}</p>"
        )
        if ld.features:
            out.append(
                '<table><tr><th class="l">feature</th><th>KS D</th><th>p</th>'
                "<th>p adjusted</th><th>threshold α</th><th>W1</th><th>PSI</th>"
                "<th>decision</th><th>distributions</th></tr>"
            )
            out += [_feature_row(f, alpha) for f in ld.features]
            out.append("</table>")
    m = report.mix
    out.append(
        f"<h2>Label mix</h2><p>JS divergence {_num(m.js)} · chi-square p {_num(m.chi2_pvalue)}"
        f" · {'changed' if m.drifted else 'stable'}"
        + (f" · scarce: {e(', '.join(m.scarce))}" if m.scarce else "") + "</p>"
    )  # fmt: skip
    if m.shares:
        out.append('<table><tr><th class="l">label</th><th>reference share</th>'
                   "<th>window share</th></tr>")  # fmt: skip
        out += [f'<tr><td class="l">{e(n)}</td><td>{_num(r)}</td><td>{_num(w)}</td></tr>'
                for n, (r, w) in sorted(m.shares.items())]  # fmt: skip
        out.append("</table>")
    out.append("<h2>Actions</h2>")
    if report.actions:
        out.append('<table><tr><th class="l">action</th><th class="l">label</th>'
                   '<th class="l">feature</th><th class="l">statistic</th><th>value</th>'
                   "<th>threshold</th></tr>")  # fmt: skip
        out += [
            f'<tr><td class="l">{e(a.action)}</td><td class="l">{e(a.label or "—")}</td>'
            f'<td class="l">{e(a.feature or "—")}</td><td class="l">{e(a.statistic)}</td>'
            f"<td>{_num(a.value)}</td><td>{_num(a.threshold)}</td></tr>"
            for a in report.actions
        ]
        out.append("</table>")
    else:
        out.append('<p class="muted">none</p>')
    out.append("</body></html>")
    return "\n".join(out)


def report_dict(report: DriftReport, alpha: float = 0.01, context: dict | None = None) -> dict:
    """The same facts as JSON-ready data (NaN as None)."""

    def clean(v):
        if isinstance(v, float):
            return None if math.isnan(v) or math.isinf(v) else v
        return v

    labels = {}
    for name, ld in report.labels.items():
        labels[name] = {
            "insufficient": ld.insufficient, "drifted": ld.drifted, "score": clean(ld.score),
            "n_window": ld.n_window, "n_reference": ld.n_reference,
            "features": [
                {"feature": f.feature, "ks": clean(float(f.ks)), "pvalue": clean(float(f.pvalue)),
                 "p_adjusted": clean(float(f.p_adjusted)), "threshold": alpha,
                 "wasserstein": clean(float(f.wasserstein)), "psi": clean(float(f.psi)),
                 "drifted": f.drifted,
                 "histogram": None if f.histogram is None else dict(
                     zip(("edges", "reference", "window"), f.histogram, strict=True))}
                for f in ld.features
            ],
        }  # fmt: skip
    m = report.mix
    return {
        "context": context or {},
        "labels": labels,
        "mix": {"js": clean(float(m.js)), "chi2_pvalue": clean(float(m.chi2_pvalue)),
                "insufficient": m.insufficient, "drifted": m.drifted, "scarce": m.scarce,
                "shares": {k: list(v) for k, v in m.shares.items()}},
        "actions": [a.to_dict() for a in report.actions],
    }  # fmt: skip
