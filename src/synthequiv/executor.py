"""Run independent tasks locally or as Ray tasks; results come back to the driver.

`map_tasks(fn, items, shared, cfg, kind)` yields fn(item, **shared) for every item, in
completion order. The driver consumes the results and is the only writer of the run
directory's results table, so a cell is never recorded twice.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator


def map_tasks(fn: Callable, items: Iterable, shared: dict[str, Any], cfg,
              kind: str = "cell") -> Iterator[Any]:
    items = list(items)
    if not items:
        return
    if cfg.executor == "local":
        for item in items:
            yield fn(item, **shared)
    elif cfg.executor == "ray":
        from .ray_executor import ray_map

        yield from ray_map(fn, items, shared, cfg, kind)
    else:
        from .utils import SynthequivError

        raise SynthequivError(f"unknown executor '{cfg.executor}' (use local or ray)")
