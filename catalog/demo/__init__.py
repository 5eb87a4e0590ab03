"""The demo marketplace seeded by ``lode demo``: deterministic, idempotent, with derived keys."""

from catalog.demo.seed import seed

__all__ = ["seed"]
