"""Activation caching for sequential training: finished modules' outputs in RAM or on disk."""

from edgetrgl.cache.activation_cache import STORAGE_DTYPES, ActivationCache
from edgetrgl.cache.prefetch import Prefetcher

__all__ = ["ActivationCache", "Prefetcher", "STORAGE_DTYPES"]
