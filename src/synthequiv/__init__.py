"""synthequiv: how many synthetic images are worth one real image?"""

__version__ = "0.1.0"
