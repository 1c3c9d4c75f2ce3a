"""Upstream features on disk: extraction (extract.py) and the memory-mapped store (store.py)."""
from .store import FeatureStore, check_compatible, make_meta, write_store

__all__ = ["FeatureStore", "check_compatible", "make_meta", "write_store"]
