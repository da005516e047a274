"""The "Real vs synthetic" report section of an analysis (analysis.json layout)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from synthequiv.measures.domaingap import _span
from synthequiv.reporting.document import Doc


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _kid(o: dict) -> str:
    """KID ×10³ as mean ± std over its random subsets."""
    return f"{_f(1e3 * o['kid'])} ± {_f(1e3 * (o.get('kid_std') or math.nan))}"


def _rows(analysis: dict) -> list[list[str]]:
    b = analysis.get("baseline") or {}
    rows = []
    if b:
        o, d = b["overlap"], b["domain"]
        ext = analysis.get("extractor") or {}
        rows.append(["real vs real (test halves)", _f(d["accuracy"]), _f(d["auc"]), _f(o["fd"]),
                     _kid(o), _f(o["precision"]), _f(o["recall"]), _f(o["density"]),
                     _f(o["coverage"]), _f(ext.get("test_accuracy")) + " (real test)", "n/a",
                     _f(analysis.get("settings", {}).get("quantile", 0.05), 2) + " (by def.)"])
    for name, r in analysis.get("sets", {}).items():
        o, d, c, m = r["overlap"], r["domain"], r["cas"], r["memorization"]
        rows.append([f"{name} (vs {r.get('reference', 'real')})", _f(d["accuracy"]), _f(d["auc"]),
                     _f(o["fd"]), _kid(o), _f(o["precision"]), _f(o["recall"]),
                     _f(o["density"]), _f(o["coverage"]), _f(r["fidelity"]["accuracy"]),
                     f"{_f(c['accuracy'])} ({_f(c['real_accuracy'])})",
                     f"{_f(m['pixel']['frac_below'], 2)}"])
    return rows


def memorization_words(name: str, mem: dict) -> str:
    """Plain words: does this set lie nearer the training images than held-out real images?
    "Exceeds" = the share flagged is more than 3 binomial standard errors above the expected
    `quantile` (a held-out real image is flagged with that probability by construction)."""
    q, n = mem["quantile"], max(1, mem.get("n_synthetic") or 1)
    rate = mem["pixel"]["frac_below"]
    copies = mem["pixel"].get("exact_copies", 0)
    tail = f"; {copies} exact copies" if copies else ""
    if rate > q + 3 * math.sqrt(q * (1 - q) / n):
        return (f"Memorization in {name}: {100 * rate:.0f} % of synthetic images lie closer to "
                f"a generator training image than {100 * (1 - q):.0f} % of held-out real images "
                f"do — {rate / q:.1f}× the {100 * q:.0f} % expected if the generator did not "
                f"copy{tail}. Part of its synthetic data are near-copies of the base set (see "
                "the closest pairs), which adds little new information.")
    return (f"No sign of memorization in {name}: {100 * rate:.0f} % of synthetic images lie as "
            f"close to a training image as only the nearest {100 * q:.0f} % of held-out real "
            f"images do ({100 * q:.0f} % expected){tail}.")


def _reading(analysis: dict) -> list[str]:
    sets = analysis.get("sets", {})
    if not sets:
        return ["No synthetic set was analysed."]
    gap = analysis["paper_finding_f4"]["text"]
    cas = [r["cas"]["accuracy"] for r in sets.values()]
    real = [r["cas"]["real_accuracy"] for r in sets.values()]
    fid = [r["fidelity"]["accuracy"] for r in sets.values()]
    use = (f"Usefulness: trained on synthetic images alone, a classifier reaches test accuracy "
           f"{_span(cas, 3)} (the same recipe on the generators' real training images: "
           f"{_span(real, 3)}); a classifier trained on real images agrees with the synthetic "
           f"images' intended classes on {_span(fid, 3)} of them.")
    return [gap, use] + [memorization_words(n, r["memorization"]) for n, r in sets.items()]


def _per_class_table(analysis: dict) -> tuple[list[str], list[list[str]]] | None:
    names = analysis.get("class_names") or []
    sets = analysis.get("sets", {})
    if not sets or not names or len(names) > 20:
        return None
    header = ["set", "metric"] + [str(n) for n in names]
    rows = []
    for name, r in sets.items():
        rows.append([name, "fidelity"] + [_f(v, 2) for v in r["fidelity"]["per_class"]])
        rows.append([name, "CAS recall"] + [_f(v, 2) for v in r["cas"]["per_class"]])
    return header, rows


NOTE = ("Domain: a real-vs-synthetic classifier, held-out accuracy/AUC (0.5 = "
        "indistinguishable). FD, KID (mean ± std over random subsets), precision/recall/"
        "density/coverage: synthetic vs half A of the real test split in the features of a "
        "classifier trained on real data only; the first row compares the two real halves. CAS "
        "(classification accuracy score): train on synthetic, test on real (in brackets: the "
        "same recipe trained on real). Fidelity: the real-trained classifier's agreement with "
        "the synthetic images' labels. Memorized: share of synthetic images nearer (pixels) to a "
        "training image than the {q:.0f} % quantile of real test images.")


def add_section(doc: Doc, analysis: dict) -> None:
    """The "Real vs synthetic" section: findings in words, metrics table, maps and pairs."""
    doc.h2("Real vs synthetic")
    for para in _reading(analysis):
        doc.p(para)
    header = ["set", "domain acc", "domain AUC", "FD", "KID ×10³", "precision", "recall",
              "density", "coverage", "fidelity", "CAS (train-on-real)", "memorized"]
    doc.table(header, _rows(analysis))
    q = 100 * analysis.get("settings", {}).get("quantile", 0.05)
    doc.p(NOTE.format(q=q), small=True)
    per_class = _per_class_table(analysis)
    if per_class:
        doc.p("Per class:")
        doc.table(*per_class)
    crit = analysis.get("paper_finding_f4", {}).get("criteria")
    if crit:
        doc.p(f"Criteria used above: {crit}.", small=True)
    figs = analysis.get("figures", {})
    for name in analysis.get("sets", {}):
        doc.figure(figs.get(f"analysis_{name}_maps"),
                   f"{name}: real and synthetic images in two feature spaces (2-D PCA): left, "
                   "the real-vs-synthetic classifier's; right, the real-trained classifier's")
        doc.figure(figs.get(f"analysis_{name}_nearest"),
                   f"{name}: the synthetic images nearest to a training image (top) and that "
                   "training image (bottom); near-identical pairs are memorized images")


def report_section(analysis: dict, root: Path | str = ".") -> tuple[str, str]:
    """(markdown, html) of the "Real vs synthetic" section on its own."""
    doc = Doc("synthequiv analysis", Path(root))
    add_section(doc, analysis)
    return doc.render()
