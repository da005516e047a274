"""Splits stage: seeded, stratified, nested base sets B(n), reserve R(m), disjoint test split."""

from __future__ import annotations

import pytest
import torch

from synthequiv.inputs.splits import SplitConfig, make_splits
from synthequiv.utils import SynthequivError


def as_set(idx: torch.Tensor) -> set[int]:
    return set(idx.tolist())


@pytest.fixture(scope="module")
def digit_splits(digits):
    return make_splits(digits, SplitConfig(base_per_class=(10, 20, 40), test_per_class=50, seed=0))


# ----------------------------------------------------------------------------- base sets


def test_base_sets_are_nested(digit_splits):
    b10, b20, b40 = (as_set(digit_splits.base_indices(n)) for n in (10, 20, 40))
    assert b10 < b20 < b40
    assert (len(b10), len(b20), len(b40)) == (100, 200, 400)


@pytest.mark.parametrize("n", [1, 10, 40])
def test_base_sets_are_stratified(digit_splits, digits, n):
    x, y = digit_splits.base(n)
    assert y.bincount(minlength=10).tolist() == [n] * 10
    assert torch.equal(y, digits.labels[digit_splits.base_indices(n)])
    assert torch.equal(x, digits.images[digit_splits.base_indices(n)])


def test_holdout_test_is_stratified_and_pool_is_the_rest(digit_splits, digits):
    assert digit_splits.test_labels.bincount().tolist() == [50] * 10
    pool = digit_splits.pool_indices()
    assert len(pool) == len(as_set(pool)) == 1797 - 500
    assert digits.labels[pool].bincount().tolist() == [n - 50 for n in
                                                       digits.labels.bincount().tolist()]


# ----------------------------------------------------------------------------- disjointness


def test_base_reserve_and_test_partition_the_data(make_indexed, decode):
    ds = make_indexed([30, 25, 40])
    sp = make_splits(ds, SplitConfig(base_per_class=(5, 10), test_per_class=6, seed=3))
    base = as_set(sp.base_indices(10))
    reserve = as_set(sp.reserve_indices(sp.reserve_capacity()))
    pool = as_set(sp.pool_indices())
    test = decode(sp.test_images)  # the images encode their own index
    assert sp.reserve_capacity() == 25 - 6 - 10
    assert not base & reserve and not base & test and not reserve & test and not pool & test
    assert base | reserve <= pool
    assert pool | test == set(range(95)) and len(test) == 18
    assert sp.test_labels.bincount().tolist() == [6, 6, 6]
    assert torch.equal(ds.labels[sorted(test)].bincount(), sp.test_labels.bincount())


def test_reserve_sets_are_nested_and_stratified(digit_splits, digits):
    r10, r40 = as_set(digit_splits.reserve_indices(10)), as_set(digit_splits.reserve_indices(40))
    assert r10 < r40 and len(r40) == 400
    assert not r40 & as_set(digit_splits.base_indices(40))
    _, y = digit_splits.reserve(40)
    assert y.bincount().tolist() == [40] * 10


def test_reserve_starts_after_the_largest_base(make_indexed):
    ds = make_indexed([50, 50])
    small = make_splits(ds, SplitConfig(base_per_class=(10,), test_per_class=5, seed=0))
    large = make_splits(ds, SplitConfig(base_per_class=(10, 20), test_per_class=5, seed=0))
    assert torch.equal(small.base_indices(10), large.base_indices(10))
    assert as_set(small.reserve_indices(10)) == as_set(large.base_indices(20)) - as_set(
        large.base_indices(10))


# ----------------------------------------------------------------------------- seeding


def test_same_seed_same_indices_other_seed_different(digits):
    def idx(seed):
        sp = make_splits(digits, SplitConfig(base_per_class=(10,), test_per_class=50, seed=seed))
        return sp.base_indices(10), sp.reserve_indices(10), sp.test_images

    a, b, c = idx(0), idx(0), idx(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    assert not torch.equal(a[2], c[2])


def test_base_sets_do_not_depend_on_test_size(make_indexed):
    ds = make_indexed([40, 40, 40])
    a = make_splits(ds, SplitConfig(base_per_class=(10,), test_per_class=5, seed=7))
    b = make_splits(ds, SplitConfig(base_per_class=(10,), test_per_class=20, seed=7))
    assert torch.equal(a.base_indices(10), b.base_indices(10))


# ----------------------------------------------------------------------------- official test


def test_official_test_split_is_used(make_indexed, decode):
    ds = make_indexed([12, 15], test_counts=[3, 4])
    sp = make_splits(ds, SplitConfig(base_per_class=(5,), test_per_class=50, seed=0))
    assert torch.equal(sp.test_images, ds.test_images)
    assert torch.equal(sp.test_labels, ds.test_labels)
    assert as_set(sp.pool_indices()) == set(range(27))  # no hold-out taken from the pool
    assert not decode(sp.test_images) & set(range(27))


def test_pneumonia_official_split(pneumonia_root):
    from synthequiv.inputs.data import DataConfig, load_dataset

    ds = load_dataset(DataConfig(source="medmnist:pneumoniamnist", root=str(pneumonia_root)))
    sp = make_splits(ds, SplitConfig(base_per_class=(25, 50, 100), seed=0))
    assert len(sp.test_labels) == 624 and sp.test_labels.bincount().tolist() == [234, 390]
    assert [len(o) for o in sp.order] == [1214, 3494]
    assert sp.reserve_capacity() == 1214 - 100


# ----------------------------------------------------------------------------- errors


def test_class_too_small_for_holdout_names_it(make_indexed):
    ds = make_indexed([20, 20, 20, 5, 20])
    with pytest.raises(SynthequivError, match="class '3' has 5 images"):
        make_splits(ds, SplitConfig(base_per_class=(2,), test_per_class=5, seed=0))


def test_class_too_small_for_base_names_it(make_indexed):
    ds = make_indexed([30, 8], test_counts=[2, 2])
    with pytest.raises(SynthequivError, match="class '1' has 8 training images"):
        make_splits(ds, SplitConfig(base_per_class=(5, 10), seed=0))


def test_class_too_small_for_reserve_names_it(make_indexed):
    ds = make_indexed([30, 16])
    sp = make_splits(ds, SplitConfig(base_per_class=(8,), test_per_class=4, seed=0))
    assert sp.reserve_capacity() == 4
    assert len(sp.reserve_indices(4)) == 8
    with pytest.raises(SynthequivError, match="class '1' has 12 training images"):
        sp.reserve_indices(5)


@pytest.mark.parametrize("cfg, match", [
    (SplitConfig(base_per_class=()), "empty"),
    (SplitConfig(base_per_class=(10, 0)), "base_per_class entry must be > 0"),
    (SplitConfig(base_per_class=(10,), test_per_class=0), "test_per_class must be > 0"),
])
def test_invalid_split_config(digits, cfg, match):
    with pytest.raises(SynthequivError, match=match):
        make_splits(digits, cfg)


# ----------------------------------------------------------------------------- test: all


def test_all_holdout_is_every_image_outside_base_and_reserve(make_indexed, decode):
    ds = make_indexed([30, 25, 40])
    sp = make_splits(ds, SplitConfig(base_per_class=(5, 10), seed=3), reserve_per_class=4)
    base, reserve = as_set(sp.base_indices(10)), as_set(sp.reserve_indices(4))
    test = decode(sp.test_images)
    assert sp.test_labels.bincount().tolist() == [30 - 14, 25 - 14, 40 - 14]
    assert not test & (base | reserve) and base | reserve | test == set(range(95))
    assert sp.reserve_capacity() == 4  # the reserve is exactly what the grid asked for
    with pytest.raises(SynthequivError, match="too few for base"):
        sp.reserve_indices(5)


def test_all_holdout_keeps_base_reserve_and_is_nested_in_a_smaller_reserve(make_indexed, decode):
    """Base sets and the reserve do not depend on the test size; a larger reserve takes its
    extra images from the hold-out, whose remaining images are the same ones."""
    ds = make_indexed([40, 40, 40])
    fixed = make_splits(ds, SplitConfig(base_per_class=(10,), test_per_class=5, seed=7),
                        reserve_per_class=20)
    small = make_splits(ds, SplitConfig(base_per_class=(10,), seed=7), reserve_per_class=10)
    large = make_splits(ds, SplitConfig(base_per_class=(10,), seed=7), reserve_per_class=20)
    assert torch.equal(fixed.base_indices(10), small.base_indices(10))
    assert torch.equal(small.reserve_indices(10), large.reserve_indices(10))
    assert torch.equal(fixed.reserve_indices(20), large.reserve_indices(20))
    assert decode(large.test_images) < decode(small.test_images)
    assert decode(fixed.test_images) <= decode(large.test_images)  # the last 5 of each order


def test_all_holdout_is_capped_and_the_rest_stays_in_the_pool(make_indexed, decode):
    ds = make_indexed([30, 12])
    sp = make_splits(ds, SplitConfig(base_per_class=(4,), seed=0, test_cap_per_class=6),
                     reserve_per_class=2)
    assert sp.test_labels.bincount().tolist() == [6, 6]
    pool, test = as_set(sp.pool_indices()), decode(sp.test_images)
    assert not pool & test and pool | test == set(range(42))


def test_all_holdout_same_seed_same_split(digits):
    a, b = (make_splits(digits, SplitConfig(base_per_class=(10, 20), seed=4), 40)
            for _ in range(2))
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.test_labels, b.test_labels)
    assert len(a.test_labels) == 1797 - 600


def test_all_holdout_class_with_nothing_left_names_it(make_indexed):
    ds = make_indexed([30, 14])
    with pytest.raises(SynthequivError, match=r"class '1' has 14 images.*reserve \(4/class\)"):
        make_splits(ds, SplitConfig(base_per_class=(10,), seed=0), reserve_per_class=4)
    make_splits(ds, SplitConfig(base_per_class=(10,), seed=0), reserve_per_class=3)  # 1 left


@pytest.mark.parametrize("cfg, match", [
    (SplitConfig(test_per_class="most"), "positive integer or 'all'"),
    (SplitConfig(test_per_class=True), "positive integer or 'all'"),
    (SplitConfig(test_cap_per_class=0), "test_cap_per_class must be > 0"),
])
def test_invalid_holdout_settings(digits, cfg, match):
    with pytest.raises(SynthequivError, match=match):
        make_splits(digits, cfg)
