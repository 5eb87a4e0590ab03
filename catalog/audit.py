"""The hash-chained audit log.

Every state change records an event. Events are buffered on the session (``record``) and appended
in the session's ``before_commit`` hook, so the chain head is locked only for the final flush of
the transaction that produced them, and a rolled-back transaction leaves no event and no gap.

Each event's ``hash`` is SHA-256 over the RFC 8785 canonical JSON of ``seq, occurred_at,
actor_user_id, actor_org_id, org_ids, action, subject_type, subject_id, data, prev_hash``; ``data``
is stored as exactly that canonical text, so verification recomputes the hash from stored bytes.
The head row moves only through a conditional update on its previous ``seq`` (STYLE rule 5).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, bindparam, event, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from catalog import jcs
from catalog.db import Base, utcnow
from catalog.ids import new_id

GENESIS_HASH = "0" * 64
_BUFFER_KEY = "lode.audit"


class AuditEvent(Base):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    occurred_at: Mapped[datetime]
    actor_user_id: Mapped[str | None] = mapped_column(String(40))
    actor_org_id: Mapped[str | None] = mapped_column(String(40))
    org_ids: Mapped[list[str]]
    action: Mapped[str] = mapped_column(String(80), index=True)
    subject_type: Mapped[str] = mapped_column(String(40))
    subject_id: Mapped[str] = mapped_column(String(80), index=True)
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditEventOrg(Base):
    """Which organisations an event concerns, so each can list its own events with an index."""

    __tablename__ = "audit_event_orgs"

    seq: Mapped[int] = mapped_column(ForeignKey("audit_events.seq"), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class Actor(msgspec.Struct, frozen=True):
    user_id: str | None
    org_id: str | None


SYSTEM = Actor(None, None)


def record(
    session: Any,
    actor: Any,
    action: str,
    subject_type: str,
    subject_id: str,
    org_ids: Iterable[str | None] = (),
    data: dict[str, Any] | None = None,
) -> None:
    """Buffer an event on the session; it joins the chain when the transaction commits.

    ``actor`` is anything with ``user_id`` and ``org_id`` (a Principal, an Actor) or None for the
    system. ``session`` may be an AsyncSession or its sync Session.
    """
    sync_session = getattr(session, "sync_session", session)
    user_id = getattr(actor, "user_id", None)
    org_id = getattr(actor, "org_id", None)
    concerned = {o for o in org_ids if o}
    if org_id:
        concerned.add(org_id)
    sync_session.info.setdefault(_BUFFER_KEY, []).append(
        {
            "actor_user_id": user_id,
            "actor_org_id": org_id,
            "org_ids": sorted(concerned),
            "action": action,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "data": _canonical_data(data or {}),
        }
    )


def _canonical_data(data: dict[str, Any]) -> Any:
    # Round-trip through msgspec so dates, Structs and the like become plain JSON values first.
    return json.loads(msgspec.json.encode(data))


def event_hash(fields: dict[str, Any]) -> str:
    canonical = {
        "seq": fields["seq"],
        "occurred_at": fields["occurred_at"],
        "actor_user_id": fields["actor_user_id"],
        "actor_org_id": fields["actor_org_id"],
        "org_ids": fields["org_ids"],
        "action": fields["action"],
        "subject_type": fields["subject_type"],
        "subject_id": fields["subject_id"],
        "data": fields["data"],
        "prev_hash": fields["prev_hash"],
    }
    return hashlib.sha256(jcs.dumps(canonical)).hexdigest()


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Core statements, built once: the append runs in every write transaction's commit, and the ORM's
# bulk-insert machinery and entity loading cost more than the statements themselves.
_EVENTS = AuditEvent.__table__
_EVENT_ORGS = AuditEventOrg.__table__
_HEAD = AuditHead.__table__
_READ_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
_MOVE_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1, _HEAD.c.seq == bindparam("was"))
    .values(seq=bindparam("now"), hash=bindparam("head_hash"))
)


@event.listens_for(Session, "before_commit")
def _append_buffered(session: Session) -> None:
    buffered = session.info.pop(_BUFFER_KEY, None)
    if not buffered:
        return
    session.flush()
    head_seq, prev_hash = session.execute(_READ_HEAD).one()
    seq = head_seq
    rows, org_rows = [], []
    for item in buffered:
        seq += 1
        fields = {**item, "seq": seq, "occurred_at": format_time(utcnow()), "prev_hash": prev_hash}
        digest = event_hash(fields)
        rows.append(
            {
                **item,
                "seq": seq,
                "id": new_id("aud"),
                "occurred_at": datetime.fromisoformat(fields["occurred_at"].replace("Z", "+00:00")),
                "data": jcs.dumps(item["data"]).decode(),
                "prev_hash": prev_hash,
                "hash": digest,
            }
        )
        org_rows.extend({"seq": seq, "org_id": org_id} for org_id in item["org_ids"])
        prev_hash = digest
    session.execute(insert(_EVENTS), rows)
    if org_rows:
        session.execute(insert(_EVENT_ORGS), org_rows)
    moved = session.execute(_MOVE_HEAD, {"was": head_seq, "now": seq, "head_hash": prev_hash})
    if moved.rowcount != 1:  # pragma: no cover - the row lock makes this unreachable
        raise RuntimeError("audit head moved during append")


@event.listens_for(Session, "after_rollback")
def _drop_buffered(session: Session) -> None:
    session.info.pop(_BUFFER_KEY, None)


class VerifyResult(msgspec.Struct, kw_only=True):
    valid: bool
    events: int
    head: str
    head_seq: int
    first_broken_seq: int | None = None
    reason: str | None = None


def stored_fields(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "occurred_at": format_time(row.occurred_at),
        "actor_user_id": row.actor_user_id,
        "actor_org_id": row.actor_org_id,
        "org_ids": list(row.org_ids),
        "action": row.action,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "data": json.loads(row.data),
        "prev_hash": row.prev_hash,
    }


async def verify(session: Any, *, expected_head: str | None = None, from_seq: int = 1) -> VerifyResult:
    """Walk the chain from ``from_seq`` and report the first event that does not hold.

    ``expected_head`` is ``<seq>:<hash>`` (as ``lode audit head`` prints it) or a bare hash
    published earlier: a chain whose newest events were deleted no longer reaches it.
    """
    from_seq = max(1, from_seq)
    prev_hash = GENESIS_HASH
    if from_seq > 1:
        before = await session.get(AuditEvent, from_seq - 1)
        prev_hash = before.hash if before is not None else None
    expected_seq, expected_hash = _parse_head(expected_head)
    count, last_seq, seen_expected = 0, from_seq - 1, False
    batch_start = from_seq
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEvent).where(AuditEvent.seq >= batch_start).order_by(AuditEvent.seq).limit(1000)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for row in rows:
            fields = stored_fields(row)
            problem = None
            if row.seq != last_seq + 1:
                problem = f"events {last_seq + 1}..{row.seq - 1} are missing"
                row_seq = last_seq + 1
            elif prev_hash is not None and row.prev_hash != prev_hash:
                problem, row_seq = "prev_hash does not match the previous event", row.seq
            elif jcs.dumps(fields["data"]).decode() != row.data or event_hash(fields) != row.hash:
                problem, row_seq = "the event's content does not match its hash", row.seq
            if problem:
                return VerifyResult(
                    valid=False,
                    events=count,
                    head=prev_hash or "",
                    head_seq=last_seq,
                    first_broken_seq=row_seq,
                    reason=problem,
                )
            if expected_hash is not None and row.hash == expected_hash and expected_seq in (None, row.seq):
                seen_expected = True
            count, last_seq, prev_hash = count + 1, row.seq, row.hash
        batch_start = last_seq + 1
    head = await session.get(AuditHead, 1)
    result = VerifyResult(valid=True, events=count, head=prev_hash or "", head_seq=last_seq)
    if head is not None and (head.seq != last_seq or (count and head.hash != prev_hash)):
        return _broken(result, min(head.seq, last_seq) + 1, "the chain head names events that are not stored")
    if expected_hash is not None and not seen_expected:
        if expected_seq is not None and expected_seq > last_seq:
            return _broken(result, last_seq + 1, "the chain ends before the expected head: events were deleted")
        return _broken(result, expected_seq or last_seq + 1, "the expected head is not in the chain")
    return result


def _broken(result: VerifyResult, seq: int, reason: str) -> VerifyResult:
    result.valid, result.first_broken_seq, result.reason = False, seq, reason
    return result


def _parse_head(expected: str | None) -> tuple[int | None, str | None]:
    if not expected:
        return None, None
    seq_text, sep, digest = expected.partition(":")
    if sep and seq_text.isdigit():
        return int(seq_text), digest.lower()
    return None, expected.lower()


async def current_head(session: Any) -> tuple[int, str]:
    head = await session.get(AuditHead, 1)
    return (head.seq, head.hash) if head is not None else (0, GENESIS_HASH)


class AuditEventRead(msgspec.Struct, kw_only=True):
    seq: int
    id: str
    occurred_at: datetime
    actor_user_id: str | None
    actor_org_id: str | None
    org_ids: list[str]
    action: str
    subject_type: str
    subject_id: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


class AuditList(msgspec.Struct, kw_only=True):
    items: list[AuditEventRead]
    next_cursor: str | None


async def list_events(
    session: Any,
    *,
    org_id: str | None,
    limit: int,
    before_seq: int | None,
    action: str | None = None,
    subject_id: str | None = None,
) -> AuditList:
    """Newest first; ``org_id`` scopes to events concerning that organisation (None: all)."""
    stmt = select(AuditEvent)
    if org_id is not None:
        stmt = stmt.join(AuditEventOrg, AuditEventOrg.seq == AuditEvent.seq).where(AuditEventOrg.org_id == org_id)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if subject_id:
        stmt = stmt.where(AuditEvent.subject_id == subject_id)
    rows = (await session.execute(stmt.order_by(AuditEvent.seq.desc()).limit(limit + 1))).scalars().all()
    items = [
        AuditEventRead(**{**stored_fields(r), "id": r.id, "occurred_at": r.occurred_at, "hash": r.hash})
        for r in rows[:limit]
    ]
    return AuditList(items=items, next_cursor=str(items[-1].seq) if len(rows) > limit else None)
