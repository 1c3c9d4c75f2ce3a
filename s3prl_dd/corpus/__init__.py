"""Corpora (placeholder)."""
