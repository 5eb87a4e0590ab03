"""The demo marketplace seeded by ``lode demo``: deterministic, idempotent, with derived keys."""
