"""Compliant circulation: eligibility, applications and their review, licences, holds and block-lists."""
