"""The analyses' small trainings as data: which classifiers analyses.py trains (the feature
extractor, one real-vs-synthetic domain classifier per set and the real-vs-real baseline's,
the CAS models), each as a spec `batched.train_many` takes. A study's queue
(orchestration/pipeline.py) trains them on its workers while cells are still training, one
task per spec (`train_spec_task`); `_analyse` then trains only what it was not given. The specs
are made from seeded draws, so the queue's and the analyses' are the same."""

from __future__ import annotations

import torch

from synthequiv.measures.domaingap import domain_job
from synthequiv.measures.features import SEED, split_halves


def distinct_sets(sp, synth: dict) -> dict:
    """{name: (SyntheticSet, real_x, real_y, reference)} — a shared open-set set once."""
    out, seen = {}, set()
    ds = sp.dataset
    for (arm, n) in sorted(synth, key=lambda k: (k[0], k[1])):
        s = synth[(arm, n)]
        if s.key in seen:
            continue
        seen.add(s.key)
        # lever variants (closed@cfg2, open+top0.5) have their base arm's real reference
        if arm.split("+")[0].split("@")[0] == "closed":
            x, y = sp.base(n)
            out[f"{arm}-n{n}"] = (s, x, y, f"B({n})")
        else:
            idx = sp.pool_indices()
            shared = len({v.key for (a, _), v in synth.items() if a == arm}) == 1
            out[arm if shared else f"{arm}-n{n}"] = (s, ds.images[idx], ds.labels[idx], "pool")
    return out


def halves(test_x, test_y, seed: int, max_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    half_a, half_b = split_halves(test_y, seed)
    return test_x[half_a[:max_images]], test_x[half_b[:max_images]]


def trainings(named: dict, pool: tuple, test: tuple, num_classes: int, ccfg, settings: dict):
    """(specs {key: (x, y, num_classes, cfg, seed)}, the real-vs-real baseline's DomainJob,
    {set name: its DomainJob}, {set name: whether its real reference is the pool}) for the
    distinct sets `named` ({name: (SyntheticSet, real_x, real_y, reference)}), the pool
    (x, y) the extractor trains on, the test split (x, y) and the analyses' settings
    (max_images, domain_train_steps). Keys: "extractor", "baseline",
    (name, "domain"), (name, "cas") and, where the reference is not the pool, (name, "cas_real")."""
    pool_x, pool_y = pool
    test_x, test_y = test
    steps, max_images = settings["domain_train_steps"], settings["max_images"]
    same = {name: rx.shape == pool_x.shape and torch.equal(rx, pool_x)
            for name, (_, rx, _, _) in named.items()}
    base_job = domain_job(*halves(test_x, test_y, SEED, max_images), steps, SEED, ccfg,
                          max_images)
    jobs = {name: domain_job(rx, s.images, steps, SEED, ccfg, max_images)
            for name, (s, rx, _, _) in named.items()}
    specs = {"extractor": (pool_x, pool_y, num_classes, ccfg, SEED), "baseline": base_job.spec(),
             **{(name, "domain"): job.spec() for name, job in jobs.items()}}
    for name, (s, rx, ry, _) in named.items():
        specs[(name, "cas")] = (s.images, s.labels, num_classes, ccfg, SEED)
        if not same[name]:
            specs[(name, "cas_real")] = (rx, ry, num_classes, ccfg, SEED)
    return specs, base_job, jobs, same


def train_spec_task(item: tuple, device) -> tuple:
    """One queued training: item (key, spec) → (key, the trained model)."""
    from synthequiv.classification.batched import train_many

    key, spec = item
    return key, train_many([spec], 1, device)[0]
