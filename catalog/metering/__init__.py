"""Metering: usage events written server-side, caps held atomically, usage ingest and reports."""
