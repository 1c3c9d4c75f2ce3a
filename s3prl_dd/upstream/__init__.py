"""Upstreams s3prl_dd registers into ``s3prl.hub`` (see registry.py)."""
