"""Creating tenants and credentials, and checking secrets and passwords."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from models.client_ids import id_key, new_client_id
from models.db import session_factory
from models.tenancy import ApiCredential, InstanceSetting, Member, Membership, Organization, OrgUnit

_hasher = PasswordHasher()
_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash to verify against when the email is unknown, so timing does not reveal which emails exist.

    Made on first use: argon2 costs 64 MiB and ~100 ms, which workers that never log anyone in should not pay.
    """
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


def hash_secret(secret: str) -> str:
    """Client secrets are 256 random bits: SHA-256 is as safe as a slow hash here and keeps ingest fast.

    Slow hashes (argon2, bcrypt) protect low-entropy passwords from guessing; nobody can enumerate
    2**256 candidates, so a single SHA-256 per request costs microseconds and gives nothing away.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password: str, stored_hash: str | None) -> bool:
    try:
        return _hasher.verify(stored_hash or _dummy(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


SLUG_BASE_MAX = 190  # OrgUnit.slug holds 200: room for a "-N" that makes it unique


def slugify(name: str) -> str:
    """Lowercase ASCII words joined by '-', never longer than SLUG_BASE_MAX (lowercasing may lengthen a name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower())[:SLUG_BASE_MAX].strip("-") or "unit"


def unique_slug(session: Session, org_id: str, name: str, exclude_id: str | None = None) -> str:
    base = slugify(name)
    taken = set(
        session.execute(
            select(OrgUnit.slug).where(
                OrgUnit.org_id == org_id, OrgUnit.slug.like(f"{base}%"), OrgUnit.id != (exclude_id or "")
            )
        ).scalars()
    )
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def create_unit(session: Session, org_id: str, name: str) -> OrgUnit:
    unit = OrgUnit(org_id=org_id, name=name, slug=unique_slug(session, org_id, name))
    session.add(unit)
    session.flush()
    return unit


SCOPES = ("ingest", "read", "admin")  # what a credential may be given; webapp/access.py says what each allows
WRITE_KEY = "write_key"  # the public, ingest-only credential kind a web page carries


def create_credential(
    session: Session,
    org_id: str,
    unit_id: str,
    name: str,
    created_by: str | None = None,
    scopes: tuple[str, ...] = SCOPES,
    expires_at=None,
    allowed_origins: list[str] | None = None,
):
    """Returns (row, plaintext secret); the plaintext exists only in this response. With allowed_origins the
    credential is a write key: ingest only, no secret (None is returned for it), honoured from those origins only."""
    write_key = allowed_origins is not None
    secret = None if write_key else "lps_" + secrets.token_urlsafe(32)
    cred = ApiCredential(
        org_id=org_id,
        unit_id=unit_id,
        name=name,
        client_id=new_client_id(id_key(session), write_key),
        secret_hash=hash_secret(secret) if secret else "",  # no SHA-256 hex digest equals "": nothing matches it
        kind=WRITE_KEY if write_key else "secret",
        scopes="ingest" if write_key else " ".join(s for s in SCOPES if s in scopes),
        allowed_origins=allowed_origins,
        expires_at=expires_at,
        created_by=created_by,
    )
    session.add(cred)
    session.flush()
    return cred, secret


def email_taken(session: Session, email: str) -> bool:
    return session.execute(select(func.count()).select_from(Member).where(Member.email == email)).scalar() > 0


ROLES = ("Owner", "Operator", "Viewer")
PASSWORD_MIN, PASSWORD_MAX = 8, 1024  # POST /auth/login reads up to 1024 characters
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class AccountError(ValueError):
    """A member cannot be added as asked; the message says why (and never contains the password), field what it is
    about when one field is (the API's 400 and the console's form name it)."""

    field: str | None = None

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field or self.field


class EmailTaken(AccountError):
    """Another member has this email (emails are unique across the instance: they are the login)."""

    field = "email"


def password_problem(password: str | None, email: str) -> str | None:
    """Why a new member's password is refused, or None."""
    if not password or not password.strip():
        return "the password is empty"
    if len(password) < PASSWORD_MIN:
        return f"the password is too short (at least {PASSWORD_MIN} characters)"
    if len(password) > PASSWORD_MAX:
        return f"the password is too long (at most {PASSWORD_MAX} characters)"
    if password.strip().lower() in (email, email.partition("@")[0]):
        return "the password must not be the email address"
    return None


def create_member(
    session: Session, org_id: str, email: str, password: str | None, units: list[tuple[str, str]]
) -> Member:
    """A member of the organization with a role in each (unit_id, role); checks the email and password first."""
    email = email.strip().lower()
    if len(email) > 320 or not EMAIL.fullmatch(email):
        raise AccountError(f"{email!r} is not an email address", "email")
    if email_taken(session, email):
        raise EmailTaken(f"a member with email {email} already exists")
    problem = password_problem(password, email)
    if problem:
        raise AccountError(problem, "password")
    member = Member(org_id=org_id, email=email, password_hash=hash_password(password), role="admin")
    session.add(member)
    try:
        session.flush()
    except IntegrityError:  # the same email added at the same moment: never show the statement (it holds the hash)
        raise EmailTaken(f"a member with email {email} already exists") from None
    session.add_all([Membership(member_id=member.id, unit_id=unit_id, role=role) for unit_id, role in units])
    session.flush()
    return member


def add_member(
    session: Session, org: str, email: str, password: str | None, units: list[str] | None = None, role: str = "Owner"
) -> dict:
    """A login for an existing organization (found by id or exact name) with `role` in the named OUs (by id or
    name; all of its OUs by default), so someone can manage what needs a member: webhook sources, /secrets."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    organization = session.get(Organization, org) if len(org) <= 36 else None
    if organization is None:
        named = session.execute(select(Organization).where(Organization.name == org).limit(2)).scalars().all()
        if len(named) > 1:
            raise AccountError(f"several organizations are named {org!r}: give its id")
        if not named:
            raise AccountError(f"no organization has the id or name {org!r}")
        organization = named[0]
    ous = (
        session.execute(select(OrgUnit).where(OrgUnit.org_id == organization.id).order_by(OrgUnit.created_at))
        .scalars()
        .all()
    )
    chosen = ous
    if units:
        chosen = []
        for wanted in dict.fromkeys(units):
            match = [u for u in ous if u.id == wanted] or [u for u in ous if u.name == wanted]
            if len(match) != 1:
                raise AccountError(
                    f"organization {organization.name!r} has {'several' if match else 'no'} OUs "
                    f"with the id or name {wanted!r}" + (": give its id" if match else "")
                )
            if match[0] not in chosen:
                chosen.append(match[0])
    if not chosen:
        raise AccountError(f"organization {organization.name!r} has no OU")
    member = create_member(session, organization.id, email, password, [(u.id, role) for u in chosen])
    return {
        "member_id": member.id,
        "org_id": organization.id,
        "email": member.email,
        "units": [{"unit_id": u.id, "name": u.name, "role": role} for u in chosen],
    }


def bootstrap(session: Session, org: str, unit: str, email: str | None = None, password: str | None = None) -> dict:
    """Org, OU, credential and optional owner in one transaction: the first thing an installer runs."""
    organization = Organization(name=org)
    session.add(organization)
    session.flush()
    ou = create_unit(session, organization.id, unit)
    cred, secret = create_credential(session, organization.id, ou.id, "bootstrap")
    out = {"org_id": organization.id, "unit_id": ou.id, "client_id": cred.client_id, "client_secret": secret}
    if email:
        create_member(session, organization.id, email, password, [(ou.id, "Owner")])
    return out  # the command line prints this, as the README documents


def bootstrap_tenant(
    database_url: str, org: str, unit: str, email: str | None = None, password: str | None = None
) -> dict:
    """bootstrap in a transaction of its own, for the command line, the first start and the demo."""
    with session_factory(database_url, writer=True)() as s, s.begin():
        return bootstrap(s, org, unit, email, password)


def load_or_create_secret(Session) -> str:
    """SECRET_KEY generated once and stored, so every web and worker process signs and encrypts alike."""
    try:
        with Session() as s, s.begin():
            s.connection(execution_options={"sqlite_immediate": True})  # SQLite: read-then-write takes the lock first
            value = s.execute(select(InstanceSetting.value).where(InstanceSetting.key == "secret_key")).scalar()
            if value:
                return value
            s.add(InstanceSetting(key="secret_key", value=secrets.token_urlsafe(48)))
    except IntegrityError:
        pass  # another process stored one first
    except (OperationalError, ProgrammingError) as exc:
        if "instance_settings" in str(exc.orig):  # no such table / relation does not exist
            raise RuntimeError("the database is not migrated: run `leadpulse db upgrade`") from exc
        raise
    with Session() as s:
        return s.execute(select(InstanceSetting.value).where(InstanceSetting.key == "secret_key")).scalar_one()
