"""synthequiv: how many synthetic images are worth one real image?"""

from synthequiv.runtime.cpu import prefer_passive_wait as _prefer_passive_wait

__version__ = "0.1.0"

# before torch loads (libgomp reads it then): waiting OpenMP threads sleep instead of spinning,
# which on a machine shared with other jobs made a study up to 13× slower (runtime/cpu.py)
_prefer_passive_wait()
