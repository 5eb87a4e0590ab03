"""Delivery: data used in place under the grade — downloads, row and aggregate queries, disclosure control, DP."""
