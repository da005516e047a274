"""The runtime floor's configs: RuntimeConfig (how a study runs: device, executor, workers,
threads; the executors read it) and RayConfig with its check. Light, so the study's config
parses and validates without loading Ray or torch."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from synthequiv.utils import SynthequivError, check_positive


@dataclass(frozen=True)
class RayConfig:
    address: str = ""  # "" = start Ray on this machine; "auto" or host:port = join a cluster
    num_cpus: int = 0  # local start only: CPUs Ray may use (0 = all)
    cpus_per_task: float = 1.0  # per classifier cell / sampling shard / generator
    gpus_per_task: float = 0.0  # per classifier cell or sampling shard, e.g. 0.25 = 4 per GPU
    gpus_per_generator: float = 0.0  # per generator training (1.0 on a GPU cluster)
    sample_shards: int = 4  # sampling of one synthetic set is split into this many seed ranges


@dataclass(frozen=True)
class RuntimeConfig:
    """The study's top-level fields of the same names (StudyConfig.runtime builds it, so the
    defaults are StudyConfig's alone): what runtime/ and the stages' executor calls read,
    never the study itself. None of them enters an artifact's key."""

    device: str  # auto | cpu | cuda[:N]
    executor: str  # local | ray
    workers: int  # local worker processes; 0 = one per core (one per GPU on a GPU)
    cpu_threads: int  # torch threads per task process on CPU; 0 = torch's default
    cpu_adapt: bool  # with cpu_threads 0: follow the cores other processes leave free
    generator_nproc: int  # processes (torchrun) per generator training
    compile: bool  # torch.compile the generator for training and sampling
    generator_group: int  # generators trained at once as one computation (0 = auto)
    ray: RayConfig


def check(r: RayConfig, used: bool) -> None:
    """One-line errors for the ray section; `used` (executor ray): a cluster address must
    answer."""
    check_positive("ray.num_cpus", r.num_cpus, allow_zero=True)
    check_positive("ray.cpus_per_task", r.cpus_per_task)
    check_positive("ray.gpus_per_task", r.gpus_per_task, allow_zero=True)
    check_positive("ray.gpus_per_generator", r.gpus_per_generator, allow_zero=True)
    check_positive("ray.sample_shards", r.sample_shards)
    if used and r.address not in ("", "auto"):
        check_reachable(r.address)


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a Ray address nothing answers at (ray.init would wait for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, "6379"  # Ray's default head (GCS) port
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise SynthequivError(f"ray.address {address}: nothing answers there ({exc}); start "
                              "the Ray head first or fix the address") from exc
