"""Persisting incoming events set-based: resolve or create their leads, dedupe by key, insert, all in a few statements."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, text, tuple_
from sqlalchemy.orm import Session

from models.base import utcnow
from models.dialect import insert_for, psycopg_rows
from models.events import Event
from models.leads import Lead, LeadAlias

EVENTS, LEADS, ALIASES = Event.__table__, Lead.__table__, LeadAlias.__table__
ALIAS_LOCK_SPACE = 1819  # advisory-lock namespace for "first sight of an alias"


class IngestConflict(Exception):
    """A concurrent change made this batch's answer unknowable; the client should retry (503)."""


@dataclass
class IncomingEvent:
    event_type: str
    occurred_at: datetime
    metadata: dict = field(default_factory=dict)
    lead_id: str | None = None
    aliases: list[tuple[str, str]] = field(default_factory=list)  # normalized (kind, value)
    idempotency_key: str | None = None
    quiet: bool = False  # imported history (skip_triggers): scores, but a level change it causes alerts no one


@dataclass
class IngestResult:
    event_id: int
    lead_id: str
    duplicate: bool


def public_ids(idempotency_key: str | None, row_id: int) -> dict:
    """How every answer and announcement names a stored event: event_id is the client's key (or None), id ours."""
    return {"event_id": idempotency_key, "id": str(row_id)}


def ingest_event(session: Session, org_id: str, unit_id: str, ev: IncomingEvent) -> IngestResult:
    """One event in the caller's transaction; a repeated idempotency key is reported, not stored."""
    return ingest_many(session, org_id, unit_id, [ev])[0]


def ingest_many(session: Session, org_id: str, unit_id: str, events: list[IncomingEvent]) -> list[IngestResult]:
    """Many events of one OU in the caller's transaction, with a handful of statements whatever their number.

    Inserts first and looks keys up only when the insert skipped them: a repeat is the rare case. (So a
    repeat naming a never-seen lead_id still creates that lead; its event is not stored twice.)
    """
    if not events:
        return []
    results: list[IngestResult | None] = [None] * len(events)
    first_with_key: dict[str, int] = {}
    fresh: list[int] = []
    for i, ev in enumerate(events):
        if ev.idempotency_key and ev.idempotency_key in first_with_key:
            continue  # a repeat inside this batch: answered from its first occurrence below
        if ev.idempotency_key:
            first_with_key[ev.idempotency_key] = i
        fresh.append(i)

    leads = resolve_leads(session, org_id, unit_id, [events[i] for i in fresh])
    now = utcnow()
    rows = [
        dict(
            org_id=org_id,
            unit_id=unit_id,
            lead_pk=leads[n][0],
            event_type=events[i].event_type,
            occurred_at=events[i].occurred_at,
            received_at=now,
            metadata=events[i].metadata,
            idempotency_key=events[i].idempotency_key,
            status=0,
            quiet=events[i].quiet,
        )
        for n, i in enumerate(fresh)
    ]
    if session.get_bind().dialect.name == "postgresql":
        stored = _insert_events_pg(session, rows, now)
    else:
        stored = _insert_events_generic(session, rows)
    for n, event_id in enumerate(stored):
        if event_id is not None:
            results[fresh[n]] = IngestResult(event_id, leads[n][1], False)
    inserted_keys = {rows[n]["idempotency_key"] for n, event_id in enumerate(stored) if event_id is not None}
    known = _existing_keys(session, unit_id, [k for k in first_with_key if k not in inserted_keys])
    for i, ev in enumerate(events):
        if results[i] is None:
            key = ev.idempotency_key
            if key in known:  # stored before this batch (or by a concurrent one)
                results[i] = IngestResult(*known[key], True)
            else:  # repeated within this batch
                first = results[first_with_key[key]]
                if first is None:  # the stored event it collided with was deleted meanwhile
                    raise IngestConflict(f"event {key!r} changed while being ingested")
                results[i] = IngestResult(first.event_id, first.lead_id, True)
    return results


# One statement: ids drawn in the document's order (an item may bring its own), rows inserted in key order (one lock
# order for all batches, so concurrent ones never deadlock), and each item's id and whether it was stored, in order.
INSERT_EVENTS_PG = text("""
WITH t AS MATERIALIZED (
  SELECT COALESCE(r.id, nextval('events_id_seq')) AS id, r.n, r.lead_pk, r.event_type, r.occurred_at, r.metadata, r.key, r.quiet
    FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb))
         AS (id bigint, lead_pk bigint, event_type text, occurred_at timestamptz, metadata jsonb, key text, quiet boolean))
         WITH ORDINALITY AS r(id, lead_pk, event_type, occurred_at, metadata, key, quiet, n)
   ORDER BY r.n),
     ins AS (
  INSERT INTO events (id, org_id, unit_id, lead_pk, event_type, occurred_at, received_at, metadata, idempotency_key, status, quiet)
  SELECT t.id, :org, :unit, t.lead_pk, t.event_type, t.occurred_at, :now, t.metadata, t.key, 0, t.quiet
    FROM t
   ORDER BY t.key COLLATE "C" NULLS LAST, t.id
      ON CONFLICT (unit_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
  RETURNING id)
SELECT t.id, ins.id IS NOT NULL AS stored FROM t LEFT JOIN ins ON ins.id = t.id ORDER BY t.n
""")


# The sequence by name, a constant the planner resolves once: nextval(pg_get_serial_sequence(...)) looks the catalog
# up for every row, 4-5x the cost (~2 ms of server time per 500 ids). tests/test_ingest_many.py checks the name.
EVENTS_ID_SEQUENCE = "events_id_seq"
NEXT_EVENT_IDS_PG = text(f"SELECT nextval('{EVENTS_ID_SEQUENCE}') FROM generate_series(1, :n)")

MAX_DOCUMENT_CHARS = 16 * 1024 * 1024  # per INSERT: jsonb can grow text ~6x, and refuses documents over 256 MB


def _insert_events_pg(session: Session, rows: list[dict], now) -> list[int | None]:
    """The rows read by the server from one JSON document (psycopg's per-item array dumping cost 4x the client CPU),
    their ids drawn in input order; a row whose idempotency key was already stored gets None. A document too big for
    jsonb is split in key order, its ids drawn first so that they still follow the input order."""
    dump = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
    items = [
        {
            "lead_pk": r["lead_pk"],
            "event_type": r["event_type"],
            "occurred_at": _utc_iso(r["occurred_at"]),
            "metadata": r["metadata"],
            "key": r["idempotency_key"],
            "quiet": bool(r["quiet"]),
        }
        for r in rows
    ]
    whole = dump(items)  # one C-level dump: per-item dumps cost the batch path a quarter of its rate
    params = {"org": rows[0]["org_id"], "unit": rows[0]["unit_id"], "now": now}
    if len(whole) <= MAX_DOCUMENT_CHARS:
        return [
            event_id if stored else None
            for event_id, stored in psycopg_rows(session, INSERT_EVENTS_PG, {**params, "rows": whole})
        ]
    ids = session.execute(NEXT_EVENT_IDS_PG, {"n": len(rows)}).scalars().all()
    for item, event_id in zip(items, ids):
        item["id"] = event_id
    order = sorted(range(len(rows)), key=lambda n: (items[n]["key"] is None, items[n]["key"] or "", ids[n]))
    stored: set[int] = set()
    for doc in _split([dump(items[n]) for n in order]):
        stored.update(
            event_id for event_id, ok in psycopg_rows(session, INSERT_EVENTS_PG, {**params, "rows": doc}) if ok
        )
    return [i if i in stored else None for i in ids]


def _split(items: list[str]) -> list[str]:
    """JSON arrays of consecutive items, each at most about MAX_DOCUMENT_CHARS."""
    docs, chunk, size = [], [], 0
    for item in items:
        if chunk and size + len(item) > MAX_DOCUMENT_CHARS:
            docs.append("[" + ",".join(chunk) + "]")
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    return docs + ["[" + ",".join(chunk) + "]"]


def _utc_iso(at: datetime) -> str:
    """A naive time is UTC, as the column type reads it (the server would read it in its session time zone)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def _insert_events_generic(session: Session, rows: list[dict]) -> list[int | None]:
    """Plain rows in parameter order, keyed ones (in key order, one lock order for all) skipping stored keys."""
    out: list[int | None] = [None] * len(rows)
    plain = [n for n, r in enumerate(rows) if not r["idempotency_key"]]
    keyed = sorted((n for n, r in enumerate(rows) if r["idempotency_key"]), key=lambda n: rows[n]["idempotency_key"])
    if plain:
        ids = (
            session.execute(
                insert_for(session, EVENTS).returning(EVENTS.c.id, sort_by_parameter_order=True),
                [rows[n] for n in plain],
            )
            .scalars()
            .all()
        )
        for n, event_id in zip(plain, ids):
            out[n] = event_id
    if keyed:
        inserted = dict(
            (key, event_id)
            for event_id, key in session.execute(
                insert_for(session, EVENTS)
                .on_conflict_do_nothing(
                    index_elements=["unit_id", "idempotency_key"], index_where=EVENTS.c.idempotency_key.isnot(None)
                )
                .returning(EVENTS.c.id, EVENTS.c.idempotency_key),
                [rows[n] for n in keyed],
            ).all()
        )
        for n in keyed:
            out[n] = inserted.get(rows[n]["idempotency_key"])
    return out


def _existing_keys(session: Session, unit_id: str, keys: list[str]) -> dict[str, tuple[int, str]]:
    if not keys:
        return {}
    rows = session.execute(
        select(EVENTS.c.idempotency_key, EVENTS.c.id, LEADS.c.lead_id)
        .join(LEADS, LEADS.c.pk == EVENTS.c.lead_pk)
        .where(EVENTS.c.unit_id == unit_id, EVENTS.c.idempotency_key.in_(keys))
    ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def resolve_lead(
    session: Session, org_id: str, unit_id: str, lead_id: str | None, aliases: list[tuple[str, str]]
) -> tuple[int, str]:
    """Find one lead by lead_id or any alias, creating it on first sight."""
    ev = IncomingEvent(event_type="", occurred_at=utcnow(), lead_id=lead_id, aliases=aliases)
    return resolve_leads(session, org_id, unit_id, [ev])[0]


def resolve_leads(session: Session, org_id: str, unit_id: str, events: list[IncomingEvent]) -> list[tuple[int, str]]:
    """(pk, lead_id) for each event, as if the events came one at a time in order.

    An event's lead is its lead_id, else the owner of its first known alias, else a new lead; its unowned
    aliases then belong to that lead (an alias owned by another lead stays where it is). First sight of
    an alias is serialized across transactions by an advisory lock, so two web processes seeing a new
    visitor at once agree on one lead.
    """
    all_aliases = sorted({a for ev in events for a in ev.aliases})
    lock_aliases(session, unit_id, all_aliases)
    owners = _alias_owners(session, unit_id, set(all_aliases))
    by_id = _ensure_lead_ids(session, org_id, unit_id, {ev.lead_id for ev in events if ev.lead_id})

    owner: dict[tuple[str, str], object] = dict(owners)  # alias -> (pk, lead_id) or a new lead's index
    new_leads: list[str] = []
    chosen: list[object] = []
    for ev in events:
        if ev.lead_id:
            lead = by_id[ev.lead_id]
        else:
            lead = next((owner[a] for a in ev.aliases if a in owner), None)
            if lead is None:
                lead = len(new_leads)
                new_leads.append("ld_" + uuid.uuid4().hex)
        for a in ev.aliases:
            owner.setdefault(a, lead)
        chosen.append(lead)

    now = utcnow()
    created: dict[int, tuple[int, str]] = {}
    if new_leads:
        pks = dict(
            session.execute(
                insert_for(session, LEADS).returning(LEADS.c.lead_id, LEADS.c.pk),
                _new_lead_rows(org_id, unit_id, new_leads, now),
            ).all()
        )
        created = {i: (pks[lid], lid) for i, lid in enumerate(new_leads)}

    def final(lead):
        return created[lead] if isinstance(lead, int) else lead

    claimed = sorted((a, final(lead)[0]) for a, lead in owner.items() if a not in owners)
    if claimed:
        session.execute(
            insert_for(session, ALIASES).on_conflict_do_nothing(index_elements=["unit_id", "kind", "value"]),
            [dict(unit_id=unit_id, lead_pk=pk, kind=k, value=v, created_at=now) for (k, v), pk in claimed],
        )
    return [final(lead) for lead in chosen]


def lock_aliases(session: Session, unit_id: str, aliases: list[tuple[str, str]]) -> None:
    """Advisory locks on the aliases (in one fixed order, so batches never deadlock) until commit."""
    if not aliases or session.get_bind().dialect.name != "postgresql":
        return  # SQLite serializes writers already
    keys = sorted({_alias_lock_key(unit_id, a) for a in aliases})
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(:space, k)) FROM (SELECT unnest(CAST(:keys AS int[])) AS k ORDER BY 1) AS ordered"
        ),
        {"space": ALIAS_LOCK_SPACE, "keys": keys},
    )


def _alias_lock_key(unit_id: str, alias: tuple[str, str]) -> int:
    digest = hashlib.blake2b(f"{unit_id}\x1f{alias[0]}\x1f{alias[1]}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


# One round trip for the usual case: the known leads, plus the new ones inserted in one fixed order (C collation, as
# Python sorts) so concurrent batches never deadlock. A lead created meanwhile by another transaction is neither
# seen nor inserted here; the caller finds it among the missing and retries those the generic way.
# Each id is its own index probe (a LATERAL subquery with LIMIT is never flattened into a join): as a plain join the
# planner could hash every lead of the OU to find a few (seen at 3 ms a batch with 10,000 leads), a cost that grows
# with the OU instead of the batch.
FIND_OR_CREATE_LEADS_PG = text("""
WITH ids AS (SELECT value AS lead_id FROM jsonb_array_elements_text(CAST(:ids AS jsonb))),
     found AS (SELECT l.lead_id, l.pk, l.merged_into FROM ids CROSS JOIN LATERAL (
                 SELECT lead_id, pk, merged_into FROM leads WHERE unit_id = :unit AND lead_id = ids.lead_id LIMIT 1) AS l),
     created AS (
       INSERT INTO leads (org_id, unit_id, lead_id, metadata, score, created_at, updated_at)
       SELECT :org, :unit, ids.lead_id, '{}', 0, :now, :now FROM ids
        WHERE NOT EXISTS (SELECT 1 FROM found WHERE found.lead_id = ids.lead_id)
        ORDER BY ids.lead_id COLLATE "C"
           ON CONFLICT (unit_id, lead_id) DO NOTHING
       RETURNING lead_id, pk, merged_into)
SELECT lead_id, pk, merged_into FROM found UNION ALL SELECT lead_id, pk, merged_into FROM created
""")


def _ensure_lead_ids(session: Session, org_id: str, unit_id: str, lead_ids: set[str]) -> dict[str, tuple[int, str]]:
    """(pk, lead_id) that receives each lead_id's events, inserting the missing leads (ON CONFLICT: a concurrent
    creator wins harmlessly). A merged lead's events go to the lead that survives it (_survivors)."""
    if not lead_ids:
        return {}

    def lookup(ids):
        return {
            r.lead_id: r
            for r in session.execute(
                select(LEADS.c.lead_id, LEADS.c.pk, LEADS.c.merged_into).where(
                    LEADS.c.unit_id == unit_id, LEADS.c.lead_id.in_(ids)
                )
            )
        }

    if session.get_bind().dialect.name == "postgresql":
        rows = {
            r.lead_id: r
            for r in psycopg_rows(
                session,
                FIND_OR_CREATE_LEADS_PG,
                {
                    "org": org_id,
                    "unit": unit_id,
                    "now": utcnow(),
                    "ids": json.dumps(sorted(lead_ids), ensure_ascii=False),
                },
            )
        }
    else:
        rows = lookup(list(lead_ids))
    found = {lid: (r.pk, lid) for lid, r in rows.items()}
    merged = {lid: r.merged_into for lid, r in rows.items() if r.merged_into}
    if merged:
        survivors = _survivors(lookup, set(merged.values()))
        found.update({lid: survivors[t] for lid, t in merged.items() if t in survivors})
    missing = sorted(lead_ids - found.keys())
    if missing:
        now = utcnow()
        found.update(
            {
                lid: (pk, lid)
                for lid, pk in session.execute(
                    insert_for(session, LEADS)
                    .on_conflict_do_nothing(index_elements=["unit_id", "lead_id"])
                    .returning(LEADS.c.lead_id, LEADS.c.pk),
                    _new_lead_rows(org_id, unit_id, missing, now),
                ).all()
            }
        )
        raced = [lid for lid in missing if lid not in found]
        if raced:
            found.update({lid: (r.pk, lid) for lid, r in lookup(raced).items()})
    return found


MAX_MERGE_HOPS = 64  # merged into a lead that was itself merged, and so on; a longer chain is left unresolved


def _survivors(lookup, lead_ids: set[str]) -> dict[str, tuple[int, str]]:
    """Each lead id followed through the leads it was merged into to the one that survives: (pk, lead_id), one
    lookup per step of the longest chain (merge c1 into c2, then c2 into c3: c1's events belong to c3)."""
    out: dict[str, tuple[int, str]] = {}
    at = {lid: lid for lid in lead_ids}  # where each chain has got to
    for _ in range(MAX_MERGE_HOPS):
        if not at:
            break
        rows = lookup(list(set(at.values())))
        onward = {}
        for start, lid in at.items():
            row = rows.get(lid)
            if row is None:  # deleted meanwhile: nothing to follow
                continue
            if row.merged_into:
                onward[start] = row.merged_into
            else:
                out[start] = (row.pk, lid)
        at = onward
    return out


def _alias_owners(
    session: Session, unit_id: str, aliases: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str]]:
    if not aliases:
        return {}
    rows = session.execute(
        select(ALIASES.c.kind, ALIASES.c.value, ALIASES.c.lead_pk, LEADS.c.lead_id)
        .join(LEADS, LEADS.c.pk == ALIASES.c.lead_pk)
        .where(ALIASES.c.unit_id == unit_id, tuple_(ALIASES.c.kind, ALIASES.c.value).in_(sorted(aliases)))
    ).all()
    return {(r.kind, r.value): (r.lead_pk, r.lead_id) for r in rows}


def _new_lead_rows(org_id: str, unit_id: str, lead_ids, now) -> list[dict]:
    """The row a lead starts as, first seen by an event: no metadata, score 0."""
    return [
        dict(org_id=org_id, unit_id=unit_id, lead_id=lid, metadata={}, score=0, created_at=now, updated_at=now)
        for lid in lead_ids
    ]
