"""The report's reading aids (issue 25): the arms in plain words, which rate to trust, and the
baseline row first in the accuracy table."""

from __future__ import annotations

from synthequiv.reporting.report import READING_GUIDE, _accuracy_rows
from synthequiv.stats import equivalence as eq


def test_accuracy_table_starts_each_base_size_with_the_baseline():
    rows = [{"n_base": nb, "arm": arm, "n_add": n, "seed": 0, "replicate": u,
             "accuracy": 0.5 + 0.01 * u + 0.001 * n}
            for nb in (5, 10) for arm, n in (("closed", 20), ("open", 20), ("real", 0),
                                             ("real", 10)) for u in range(3)]
    table = _accuracy_rows(eq.analyse(rows, eq.EquivalenceConfig())["cells"])
    assert [(r[0], r[1], r[2]) for r in table] == [
        ("5", "real", "0"), ("5", "real", "10"), ("5", "closed", "20"), ("5", "open", "20"),
        ("10", "real", "0"), ("10", "real", "10"), ("10", "closed", "20"), ("10", "open", "20")]


def test_reading_guide_explains_the_arms_and_which_rate_to_trust():
    for words in ("closed-set arm adds synthetic images from a generator trained on that same "
                  "base set and nothing else", "open-set arm", "baseline",
                  "trust the measured one", "model-based"):
        assert words in READING_GUIDE
