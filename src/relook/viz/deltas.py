"""The benchmark's figure: each row's delta of mAP to the global order with its 95% interval, per test set."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_deltas(results: dict, out_path: str | Path) -> Path:
    """One panel per test set (the pooled one first): a dot per row at its delta mAP (x100), a bar for its
    paired-bootstrap 95% interval, a line at 0 (the global order); an open blue circle at the delta to its own
    global for a row run over a global row. Rows without numbers are left out."""
    # lazy (start-up): loads matplotlib; relook's entry points import this module
    import matplotlib

    matplotlib.use("Agg")
    # lazy (start-up): loads matplotlib; relook's entry points import this module
    import matplotlib.pyplot as plt

    tables = results["tables"]
    names = sorted(tables, key=lambda n: (not n.startswith("pooled"), list(tables).index(n)))
    rows = [r for r in results["order"] if r != "global"]
    fig, axes = plt.subplots(
        1, len(names), figsize=(3.2 * len(names), 0.35 * len(rows) + 1.6), sharey=True, squeeze=False
    )
    for ax, name in zip(axes[0], names):
        y = np.arange(len(rows))
        for i, lab in enumerate(rows):
            r = tables[name].get(lab)
            if r is None or not np.isfinite(r["delta_mAP"]):
                continue
            d, lo, hi = 100 * r["delta_mAP"], 100 * r["delta_lo"], 100 * r["delta_hi"]
            colour = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:grey"
            ax.errorbar(d, i, xerr=[[d - lo], [hi - d]], fmt="o", color=colour, capsize=3)
            if "vs" in r and np.isfinite(r["own_delta_mAP"]):  # a row over its own global: open marker, its delta
                ax.plot(100 * r["own_delta_mAP"], i, "o", mfc="none", color="tab:blue")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, rows)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("delta mAP vs global (x100)")
    fig.suptitle("relook benchmark (test splits): delta mAP, paired bootstrap 95% interval", fontsize=10)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
