"""Lode's pages: server-rendered HTML over the same HTTP API that clients program against.

A page handler calls the JSON API in-process (``api.py``) with the signed-in member's key, so
every rule — grade, permissions, validation, idempotency — is the API's own; pages only render.
"""
