"""Billing: money, ledger, revenue split and the Stripe gateway."""
