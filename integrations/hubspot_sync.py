"""Bringing HubSpot up to date with an OU: which token serves it, and the level options of engagement_level."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from integrations import redis_keys as keys
from integrations.hubspot import BATCH, ENSURE_PROPERTIES_CALLS, HubSpotAdapter, HubSpotAuthError, HubSpotError
from integrations.leases import Lease
from integrations.rate_limit import RateLimited, RollingLimiter
from integrations.secretbox import decrypt
from integrations.timeouts import timed_out
from models.base import utcnow
from models.dialect import insert_for
from models.explain import why
from models.hubspot import HubSpotConnection, HubSpotContact, HubSpotPendingCreation
from models.hubspot_sync_state import link_contacts, pending_contacts, pending_creations
from models.integration_defaults import default_serves
from models.level_queries import level_options, level_table_version
from models.tenancy import OrgUnit

log = logging.getLogger("leadpulse.hubspot")
TOKEN_PURPOSE = "hubspot-token"
# Seconds a caller waits for another OU's options update before it is told to retry: a job waiting holds its worker,
# and a worker's next job may be a scoring slot a dead worker left (docs/guarantees.md).
OPTIONS_WAIT = 2.0


def token_for(session, unit_id: str, conn: HubSpotConnection | None, settings, secret_key: str) -> str | None:
    """The OU's own token, else HUBSPOT_ACCESS_TOKEN where it serves the OU, else None (not configured: work waits,
    nothing is lost)."""
    if conn is not None:
        return decrypt(secret_key, TOKEN_PURPOSE, conn.token_encrypted)
    if settings.hubspot_access_token and default_serves(session, settings, unit_id):
        return settings.hubspot_access_token
    return None


def token_key(token: str) -> str:
    """Redis keys per HubSpot account (token), never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def ensure_options(
    redis,
    adapter: HubSpotAdapter,
    token: str,
    names: list[str],
    others: set[str],
    portal_id: int | None = None,
    limiter: RollingLimiter | None = None,
) -> None:
    """Properties and level options, one OU at a time per portal (per token when the portal is unknown): the options
    are read, merged and written back, and two OUs doing it at once could drop each other's new names. The lock is a
    lease, so a holder killed mid-update frees it within seconds. Busy for OPTIONS_WAIT s: RateLimited (retry later).
    Without Redis, unlocked (a sync meeting a missing option restores them)."""
    lease = None
    if redis is not None:
        account = f"portal:{portal_id}" if portal_id else "token:" + token_key(token)
        lease = Lease(redis, keys.HUBSPOT_OPTIONS_LOCK(account=account))
        try:
            acquired = _take(lease, OPTIONS_WAIT)
        except Exception as exc:  # Redis down: the options still get written
            if timed_out(exc):
                raise
            log.warning("HubSpot options lock unavailable (%s); updating without it", exc.__class__.__name__)
            lease, acquired = None, True
        if not acquired:
            raise RateLimited(OPTIONS_WAIT)
    try:
        if limiter is not None:  # the calls' slots, taken now that they go out at once
            limiter.acquire(ENSURE_PROPERTIES_CALLS)
        adapter.ensure_properties(names, others)
    finally:
        if lease is not None:
            lease.release()


def _take(lease: Lease, wait: float) -> bool:
    """The lease, if its holder lets it go (or dies) within `wait` seconds."""
    deadline = time.monotonic() + wait
    while not lease.acquire():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)  # polling: a release announces nothing
    return True


def sync_level_options(Session, settings, secret_key: str, unit_id: str, redis=None) -> bool:
    """Push the OU's level names as engagement_level's options; True when HubSpot is now current."""
    with Session() as s:
        conn = s.get(HubSpotConnection, unit_id)
        if conn is None or conn.options_synced >= conn.options_wanted:
            return True
        version = conn.options_wanted
        token = token_for(s, unit_id, conn, settings, secret_key)
        names, others = level_options(s, unit_id)
    if token is None:
        _record(
            Session, unit_id, error="the stored HubSpot token cannot be decrypted (SECRET_KEY changed?): connect again"
        )
        return False
    try:
        ensure_options(redis, HubSpotAdapter(token, settings.hubspot_api_base), token, names, others, conn.portal_id)
    except HubSpotError as exc:
        _record(Session, unit_id, error=f"updating engagement_level options failed ({exc.status}): {exc.message}")
        raise
    _record(Session, unit_id, version=version)
    return True


def _record(Session, unit_id: str, version: int | None = None, error: str | None = None) -> None:
    """Store the outcome; a version only moves forward, so a slow older run never hides a newer change."""
    values = {"last_error": error[:500] if error else None}
    stmt = update(HubSpotConnection).where(HubSpotConnection.unit_id == unit_id)
    if version is not None:
        stmt = stmt.where(HubSpotConnection.options_synced < version)
        values["options_synced"] = version
    with Session() as s, s.begin():
        s.execute(stmt.values(**values))


DAILY_RETRY_SECONDS = 3600
TRANSIENT_RETRY_SECONDS = 5.0  # HubSpot 5xx (doubling per attempt) or a 429 without Retry-After
TRANSIENT_BUDGET = 5  # consecutive 5xx on a batch; then its contacts are reported as failed and the sync moves on
MAX_BATCHES_PER_RUN = 50


@dataclass
class SyncOutcome:
    sent: int = 0
    failed: int = 0
    retry_in: float | None = None  # transient (429, 5xx, limiter): run again after this many seconds
    stopped: str | None = None  # needs a person (no token, token refused): waits, nothing is lost


def limiter_for(redis, settings, token: str) -> RollingLimiter:
    """One limiter per HubSpot token, whichever worker or OU uses it."""
    key = keys.HUBSPOT_RATE(account=token_key(token))
    return RollingLimiter(redis, key, settings.hubspot_rate_limit_per_10s, 10.0)


def sync_contacts(Session, settings, secret_key: str, redis, unit_id: str, still_held=lambda: True) -> SyncOutcome:
    """Write every changed lead's latest score and level to its HubSpot contact, 100 per call.

    still_held: asked before each batch's calls; False once this job's lease on the OU is gone (another job syncs
    now): hand over rather than write beside it.
    """
    with Session() as s:
        conn = s.get(HubSpotConnection, unit_id)
        token = token_for(s, unit_id, conn, settings, secret_key)
        create_missing = bool(conn and conn.create_missing_contacts)
        level_names, others = level_options(s, unit_id)
        table = level_table_version(s, unit_id)
    if token is None:
        return SyncOutcome(stopped="HubSpot is not configured for this organization unit")
    adapter = HubSpotAdapter(token, settings.hubspot_api_base)
    limiter = limiter_for(redis, settings, token)
    out, healed, after = SyncOutcome(), False, 0
    for _ in range(MAX_BATCHES_PER_RUN):
        with Session() as s:
            creations = pending_creations(s, unit_id, BATCH)
            rows = [] if creations else pending_contacts(s, unit_id, BATCH, after)
            if not rows and not creations and after:  # to the end of the OU: then from its start, for the leads
                after = 0  # that changed behind this run's walk
                rows = pending_contacts(s, unit_id, BATCH)
            drivers = why(s, unit_id, [r.pk for r in rows])
        if not rows and not creations:
            _connection_ok(Session, unit_id, conn is not None)
            return out
        if not still_held():
            log.warning("OU %s: the HubSpot sync lost its lease to another job; handing over", unit_id)
            out.retry_in = 0.0
            return out
        try:
            if creations:  # contacts announced while no token served the OU: linked first, so their leads sync by id
                _link_creations(
                    Session, adapter, limiter, unit_id, conn.portal_id if conn is not None else None, creations
                )
                redis.delete(_budget_key(unit_id, "creations"))
                continue
            if conn is None:  # served by HUBSPOT_ACCESS_TOKEN: nobody connected, so the properties may not exist yet
                _ensure_properties_once(redis, adapter, limiter, token, unit_id, table, level_names, others)
            sent, failed = _sync_batch(Session, adapter, limiter, unit_id, rows, drivers, create_missing)
        except RateLimited as exc:
            out.retry_in = exc.wait
            return out
        except HubSpotError as exc:
            if (
                not healed
                and _missing_level_option(exc)
                and redis.set(keys.HUBSPOT_HEALED(unit_id=unit_id), 1, nx=True, ex=keys.HUBSPOT_HEALED.ttl)
            ):
                # Someone removed an option in HubSpot, or another OU's update raced ours: put them back, retry once
                # (at most once an hour per OU: a value HubSpot keeps refusing stops the sync as before).
                healed = True
                log.warning("OU %s: HubSpot refused an engagement_level value; restoring the options", unit_id)
                try:
                    ensure_options(
                        redis,
                        adapter,
                        token,
                        level_names,
                        others,
                        conn.portal_id if conn is not None else None,
                        limiter,
                    )
                    continue
                except RateLimited as wait:
                    out.retry_in = wait.wait
                    return out
                except HubSpotError as again:
                    exc = again
            _connection_error(Session, unit_id, f"HubSpot {exc.status}: {exc.message}")
            if isinstance(exc, HubSpotAuthError) or not exc.transient:
                out.stopped = exc.message
            elif exc.policy == "DAILY":  # the daily quota is spent: look again in an hour, not in 10 s
                out.retry_in = DAILY_RETRY_SECONDS
            elif exc.status == 429:  # pacing, not a failure: it spends no retry budget
                out.retry_in = exc.retry_after or TRANSIENT_RETRY_SECONDS
            else:
                attempt = _spend_budget(redis, unit_id, "creations" if creations else "contacts")
                if attempt >= TRANSIENT_BUDGET and creations:  # given up as a delivery failing as often would be: the
                    with Session() as s, s.begin():  # OU's contacts sync on instead of waiting behind them
                        _forget_creations(s, unit_id, creations)
                    log.warning(
                        "OU %s: HubSpot %s reading %d waiting new contacts %d times; dropped",
                        unit_id,
                        exc.status,
                        len(creations),
                        attempt,
                    )
                    out.retry_in = 0.0
                    return out
                if attempt >= TRANSIENT_BUDGET:  # these contacts go to /failures and wait for a later change; move on
                    out.failed += _record_failures(
                        Session, unit_id, rows, f"HubSpot {exc.status} after {attempt} attempts: {exc.message}"
                    )
                    return out
                out.retry_in = exc.retry_after or TRANSIENT_RETRY_SECONDS * 2 ** (attempt - 1)
            return out
        redis.delete(_budget_key(unit_id, "contacts"))
        out.sent += sent
        out.failed += failed
        after = rows[-1].pk  # written or reported: the next batch reads on from here
    out.retry_in = 0.0  # more to do: hand over to a fresh job
    return out


def _link_creations(Session, adapter, limiter, unit_id: str, portal_id: int | None, creations) -> int:
    """Link waiting contact creations as the webhook would have on arrival (another portal's are dropped); HubSpot's
    transient failures and a refused token leave them waiting, any other refusal drops them as a delivery would."""
    ids = [c.hubspot_id for c in creations if not (portal_id and c.portal_id and c.portal_id != str(portal_id))]
    emails: dict[str, str] = {}
    if ids:
        limiter.acquire()
        try:
            emails = adapter.emails_by_id(ids)
        except HubSpotError as exc:
            if exc.transient or isinstance(exc, HubSpotAuthError):
                raise
            log.warning(
                "OU %s: HubSpot refused reading %d waiting new contacts (%s); dropped", unit_id, len(ids), exc.status
            )
    with Session() as s, s.begin():
        org_id = s.execute(select(OrgUnit.org_id).where(OrgUnit.id == unit_id)).scalar_one()
        _forget_creations(s, unit_id, creations)
        return link_contacts(s, org_id, unit_id, [(cid, emails[cid]) for cid in ids if cid in emails])


def _forget_creations(session, unit_id: str, creations) -> None:
    """These waiting creations are done with (linked, dropped or given up on)."""
    session.execute(
        delete(HubSpotPendingCreation).where(
            HubSpotPendingCreation.unit_id == unit_id,
            HubSpotPendingCreation.hubspot_id.in_([c.hubspot_id for c in creations]),
        )
    )


def _missing_level_option(exc: HubSpotError) -> bool:
    """HubSpot refused a batch because an engagement_level value is not among the property's options."""
    return exc.status == 400 and "INVALID_OPTION" in exc.message and "engagement_level" in exc.message


def _ensure_properties_once(
    redis, adapter, limiter, token: str, unit_id: str, table: str | None, level_names: list[str], others: set[str]
) -> None:
    """Create the group and properties (with these level options) once a day per OU and level table: its version,
    as a table changed back to earlier names must write them again (the change in between removed them)."""
    key = keys.HUBSPOT_PROPS(digest=hashlib.sha256(f"{unit_id}:{table}:{level_names}".encode()).hexdigest()[:24])
    if redis.get(key):
        return
    ensure_options(redis, adapter, token, level_names, others, limiter=limiter)
    redis.set(key, 1, ex=keys.HUBSPOT_PROPS.ttl)


def contact_properties(row, level_name: str | None, drivers: str | None) -> dict:
    changed = row.level_changed_at
    return {
        "engagement_score": str(row.score),
        "engagement_level": level_name or "",
        "engagement_level_changed_at": changed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{changed.microsecond // 1000:03d}Z"
        if changed
        else "",
        "engagement_top_drivers": drivers or "",
    }


def _sync_batch(Session, adapter, limiter, unit_id, rows, drivers, create_missing) -> tuple[int, int]:
    found: dict[str, str] = {}
    lookup = [r.email for r in rows if not r.hubspot_id and r.email]
    if lookup:
        limiter.acquire()
        found = adapter.ids_by_email(lookup)
        _remember_ids(Session, unit_id, rows, found)  # kept even if the update below is refused or rate-limited
        missing = [e for e in lookup if e not in found]
        if missing and create_missing:
            limiter.acquire()
            created = adapter.create_contacts([{"email": e} for e in missing])
            _remember_ids(Session, unit_id, rows, created)  # a retry must not create them again
            found.update(created)
    contact = {r.pk: r.hubspot_id or found.get(r.email) for r in rows}
    updates = {contact[r.pk]: contact_properties(r, r.level_name, drivers.get(r.pk)) for r in rows if contact[r.pk]}
    refused: dict[str, str] = {}
    if updates:
        limiter.acquire()
        refused = adapter.update_contacts(updates)
    now = utcnow()
    ok, bad = [], []
    for r in rows:
        cid = contact[r.pk]
        if cid is None:
            bad.append(
                _failure_row(
                    r,
                    unit_id,
                    None,
                    f"no HubSpot contact has the email {r.email} (create_missing_contacts is off)",
                    now,
                )
            )
        elif cid in refused:
            bad.append(_failure_row(r, unit_id, cid, refused[cid], now))
        else:
            ok.append(
                dict(
                    lead_pk=r.pk,
                    unit_id=unit_id,
                    hubspot_id=cid,
                    synced_score=r.score,
                    synced_level=r.level_name,
                    synced_at=now,
                    failed_score=None,
                    failed_level=None,
                    failure=None,
                    failed_at=None,
                )
            )
    _upsert_contacts(Session, ok, bad)
    return len(ok), len(bad)


def _remember_ids(Session, unit_id: str, rows, found: dict[str, str]) -> None:
    """Contact ids from a batch read, stored at once so a later run never spends a call reading them again."""
    known = [
        dict(lead_pk=r.pk, unit_id=unit_id, hubspot_id=found[r.email])
        for r in rows
        if not r.hubspot_id and r.email in found
    ]
    if not known:
        return
    with Session() as s, s.begin():
        stmt = insert_for(s, HubSpotContact)
        s.execute(
            stmt.on_conflict_do_update(index_elements=["lead_pk"], set_={"hubspot_id": stmt.excluded.hubspot_id}), known
        )


def _failure_row(r, unit_id: str, hubspot_id: str | None, message: str, now) -> dict:
    """Not retried for these same values; any later change of the lead retries it."""
    return dict(
        lead_pk=r.pk,
        unit_id=unit_id,
        hubspot_id=hubspot_id,
        failed_score=r.score,
        failed_level=r.level_name,
        failure=message[:500],
        failed_at=now,
    )


def _upsert_contacts(Session, *batches: list[dict]) -> None:
    with Session() as s, s.begin():
        for batch in batches:
            if batch:
                stmt = insert_for(s, HubSpotContact)
                values = {k: getattr(stmt.excluded, k) for k in batch[0] if k != "lead_pk"}
                values["hubspot_id"] = func.coalesce(
                    stmt.excluded.hubspot_id, HubSpotContact.hubspot_id
                )  # never forget a known id
                s.execute(stmt.on_conflict_do_update(index_elements=["lead_pk"], set_=values), batch)


def _budget_key(unit_id: str, batch: str) -> str:
    return keys.HUBSPOT_BUDGET(unit_id=unit_id, batch=batch)


def _spend_budget(redis, unit_id: str, batch: str) -> int:
    """Consecutive 5xx for the OU's current batch of this kind (its success resets it; spent, it starts over)."""
    key = _budget_key(unit_id, batch)
    pipe = redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, keys.HUBSPOT_BUDGET.ttl)
    attempt = pipe.execute()[0]
    if attempt >= TRANSIENT_BUDGET:
        redis.delete(key)
    return attempt


def _record_failures(Session, unit_id: str, rows, message: str) -> int:
    """The retry budget is spent: the batch's contacts go to /integrations/hubspot/failures with HubSpot's message."""
    now = utcnow()
    _upsert_contacts(Session, [_failure_row(r, unit_id, r.hubspot_id, message, now) for r in rows])
    return len(rows)


def _connection_ok(Session, unit_id: str, exists: bool) -> None:
    if exists:
        with Session() as s, s.begin():
            s.execute(
                update(HubSpotConnection)
                .where(HubSpotConnection.unit_id == unit_id)
                .values(last_sync_at=utcnow(), last_error=None)
            )


def _connection_error(Session, unit_id: str, message: str) -> None:
    with Session() as s, s.begin():
        s.execute(
            update(HubSpotConnection).where(HubSpotConnection.unit_id == unit_id).values(last_error=message[:500])
        )
