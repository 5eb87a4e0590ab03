"""Told once per process: keys of deduplicated events this process has emitted and committed.

An event with a dedupe key is inserted once however often it is emitted, but the insert still costs
a statement on a hot path (every settled query). So a process remembers the keys it emitted — only
once the transaction that emitted them has committed: a key remembered from a transaction that
rolled back would keep every later request from emitting it at all.
"""

from __future__ import annotations

from collections import OrderedDict

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

_TOLD: OrderedDict[str, None] = OrderedDict()
_MAX = 10_000
_PENDING = "lode.metering.noted"  # the session.info key of keys emitted in its open transaction


def told(key: str) -> bool:
    return key in _TOLD


def remember(session: AsyncSession, key: str) -> None:
    """Remember ``key`` once the session's transaction commits."""
    sync = session.sync_session
    sync.info.setdefault(_PENDING, set()).add(key)
    if not event.contains(sync, "after_commit", _remember_committed):
        event.listen(sync, "after_commit", _remember_committed)
        event.listen(sync, "after_transaction_end", _forget_uncommitted)


def _remember_committed(sync: Session) -> None:
    if sync.in_nested_transaction():  # a savepoint released: the outer transaction may still roll back
        return
    for key in sync.info.pop(_PENDING, ()):
        _TOLD[key] = None
    while len(_TOLD) > _MAX:
        _TOLD.popitem(last=False)


def _forget_uncommitted(sync: Session, transaction: SessionTransaction) -> None:
    # Runs after after_commit, and alone after a rollback or a close without commit: whatever the
    # outermost transaction did not commit must not be remembered by the session's next one.
    if transaction.parent is None:
        sync.info.pop(_PENDING, None)
