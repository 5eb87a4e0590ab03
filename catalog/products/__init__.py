"""Data products: their metadata, grade, lifecycle, releases, terms, plans and revenue shares."""
