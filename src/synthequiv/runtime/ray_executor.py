"""Ray back end of `executor.map_tasks`: every item becomes one Ray task.

The shared inputs (dataset, splits, synthetic sets, configs) are put in the object store once;
each task receives a reference and one item. Results return to the driver, which alone writes
the results table. Resources per task come from `rt.ray` (CPUs, GPUs or a fraction of a GPU).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from synthequiv.runtime.config import RuntimeConfig
from synthequiv.utils import SynthequivError


def _init(rt: RuntimeConfig) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise SynthequivError("--executor ray needs `pip install synthequiv[ray]`") from exc
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                  "include_dashboard": False}
        if rt.ray.address:
            kwargs["address"] = rt.ray.address  # "auto" or host:port: join a running cluster
        elif rt.ray.num_cpus:
            kwargs["num_cpus"] = rt.ray.num_cpus  # local: how many tasks run at once
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SynthequivError(f"cannot start/join Ray ({rt.ray.address or 'local'}): "
                                  f"{str(exc).splitlines()[0]}") from exc
    return ray


def _call(fn: Callable, item: Any, shared: dict) -> Any:
    import torch

    # one task = one core unless asked otherwise; also keeps CPU results independent of how
    # many tasks share the machine
    torch.set_num_threads(max(1, int(shared.pop("_threads", 1))))
    return fn(item, **shared)


def ray_map(fn: Callable, items: list, shared: dict, rt: RuntimeConfig, kind: str) -> Iterator[Any]:
    ray = _init(rt)
    gpus, cpus = rt.ray.gpus_per_task, rt.ray.cpus_per_task
    if kind == "generator":  # a DDP training's torchrun needs all its ranks' resources
        gpus, cpus = rt.ray.gpus_per_generator * rt.generator_nproc, cpus * rt.generator_nproc
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(_call)
    ref = ray.put({**shared, "_threads": cpus})
    pending = [remote.remote(fn, item, ref) for item in items]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            yield ray.get(done[0])
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, SynthequivError) else None
            for p in pending:
                ray.cancel(p)
            if cause is not None:
                raise cause from None
            raise
