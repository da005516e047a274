"""Which DDP rank this process is, as the generator's training loop sees it.

Its own module so that generator.py (which trains on any rank) and distributed.py (which
launches the ranks and calls generator.py) import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthequiv.utils import SynthequivError


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def slice(self, n: int) -> slice:
        """This rank's share of a global batch of n rows (n divisible by world)."""
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a scalar over ranks (every rank gets it); gloo has no AVG, so SUM / W."""
        if self.world == 1:
            return value
        value = value.detach().clone()
        torch.distributed.all_reduce(value)
        return value / self.world


def check_split(batch_size: int, nproc: int) -> None:
    """Every rank trains on an equal slice of the global batch."""
    if batch_size % nproc:
        raise SynthequivError(f"generator.batch_size ({batch_size}) must be divisible by "
                              f"generator_nproc ({nproc}), the number of training processes")


def current() -> Rank:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return Rank(dist.get_rank(), dist.get_world_size())
    return Rank()
