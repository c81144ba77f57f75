"""Members of an OU, their roles and their login sessions: the rules that keep every OU with an Owner."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from models.accounts import EMAIL, ROLES, AccountError, EmailTaken, create_member, email_taken
from models.base import utcnow
from models.tenancy import Member, MemberSession, Membership, OrgUnit


class NotFound(LookupError):
    """No such member in the caller's OU (the API answers 404, whether it exists elsewhere or not)."""


class LastOwner(AccountError):
    """The change would leave an OU without an Owner, and nobody could manage it any more."""

    field = "role"


def role_in(session: Session, member_id: str, unit_id: str) -> str | None:
    return session.execute(
        select(Membership.role).where(Membership.member_id == member_id, Membership.unit_id == unit_id)
    ).scalar()


def member_units(session: Session, member_id: str) -> list[tuple[OrgUnit, str]]:
    """(OU, role) for every OU the member has a role in, oldest first: what it may pick as its active OU."""
    rows = session.execute(
        select(OrgUnit, Membership.role)
        .join(Membership, Membership.unit_id == OrgUnit.id)
        .where(Membership.member_id == member_id)
        .order_by(OrgUnit.created_at, OrgUnit.id)
    ).all()
    return [(unit, role) for unit, role in rows]


def unit_members(session: Session, unit_id: str) -> list[tuple[Member, str]]:
    """(member, role) for everyone with a role in the OU, oldest first."""
    rows = session.execute(
        select(Member, Membership.role)
        .join(Membership, Membership.member_id == Member.id)
        .where(Membership.unit_id == unit_id)
        .order_by(Member.created_at, Member.id)
    ).all()
    return [(m, role) for m, role in rows]


def unit_member(session: Session, unit_id: str, member_id: str) -> tuple[Member, Membership]:
    """A member with a role in the OU; anyone else is NotFound."""
    row = session.execute(
        select(Member, Membership)
        .join(Membership, Membership.member_id == Member.id)
        .where(Membership.unit_id == unit_id, Member.id == member_id)
    ).first()
    if row is None:
        raise NotFound(member_id)
    return row[0], row[1]


def add_to_unit(session: Session, org_id: str, data: dict, unit_id: str) -> tuple[Member, str]:
    """A new member of the organization with a role in this OU (the reference's POST /org-members)."""
    role = data.get("role") or "Viewer"
    member = create_member(session, org_id, data["email"], data["password"], [(unit_id, role)])
    member.first_name, member.last_name = data.get("first_name", ""), data.get("last_name", "")
    session.flush()
    return member, role


def update_member(session: Session, unit_id: str, member_id: str, data: dict, other_units_ok: bool) -> tuple:
    """Names, email and role in this OU; a member who also belongs to OUs the caller does not own keeps its
    name and email (they are that OU's business too)."""
    member, membership = unit_member(session, unit_id, member_id)
    if {"email", "first_name", "last_name"} & data.keys() and not other_units_ok:
        raise AccountError("this member also belongs to organization units you do not own: change only its role")
    if "email" in data:
        email = data["email"].strip().lower()
        if len(email) > 320 or not EMAIL.fullmatch(email):
            raise AccountError(f"{email!r} is not an email address", "email")
        if email != member.email and email_taken(session, email):
            raise EmailTaken(f"a member with email {email} already exists")
        member.email = email
    for field in ("first_name", "last_name"):
        if field in data:
            setattr(member, field, data[field])
    if "role" in data:
        set_role(session, unit_id, member_id, data["role"])
    session.flush()
    return member, membership.role


def lock_units(session: Session, unit_ids) -> None:
    """Serialize role changes per OU (in id order, so two never wait on each other): two Owners removing each other
    at once must not both pass the one-Owner check."""
    ids = sorted(set(unit_ids))
    if ids:
        session.execute(select(OrgUnit.id).where(OrgUnit.id.in_(ids)).order_by(OrgUnit.id).with_for_update())


def set_role(session: Session, unit_id: str, member_id: str, role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}", "role")
    lock_units(session, [unit_id])
    _, membership = unit_member(session, unit_id, member_id)
    if membership.role == "Owner" and role != "Owner":
        _keep_an_owner(session, unit_id, member_id)
    membership.role = role
    session.flush()


def assign(session: Session, org_id: str, unit_id: str, member_id: str, role: str) -> Membership:
    """Give an organization member a role in the OU; again with the same member only changes the role."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}", "role")
    member = session.get(Member, member_id)
    if member is None or member.org_id != org_id:
        raise NotFound(member_id)
    existing = session.get(Membership, (member_id, unit_id))
    if existing is not None:
        set_role(session, unit_id, member_id, role)
        return existing
    membership = Membership(member_id=member_id, unit_id=unit_id, role=role)
    session.add(membership)
    session.flush()
    return membership


def remove_from_unit(session: Session, unit_id: str, member_id: str) -> None:
    """Take the member out of the OU; its sessions end with its last membership (it can reach nothing else)."""
    lock_units(session, [unit_id])
    _, membership = unit_member(session, unit_id, member_id)
    if membership.role == "Owner":
        _keep_an_owner(session, unit_id, member_id)
    session.delete(membership)
    session.flush()
    if not session.execute(select(Membership.unit_id).where(Membership.member_id == member_id)).first():
        end_sessions(session, member_id)


def delete_member(session: Session, unit_id: str, member_id: str, other_units_ok: bool) -> None:
    """Delete the login itself; its sessions, memberships and tokens end with it."""
    unit_member(session, unit_id, member_id)
    if not other_units_ok:
        raise AccountError("this member also belongs to organization units you do not own: remove its membership")
    units = session.execute(select(Membership.unit_id).where(Membership.member_id == member_id)).scalars().all()
    lock_units(session, units)
    for unit in units:
        if role_in(session, member_id, unit) == "Owner":
            _keep_an_owner(session, unit, member_id)
    session.execute(delete(MemberSession).where(MemberSession.member_id == member_id))
    session.execute(delete(Membership).where(Membership.member_id == member_id))
    session.execute(delete(Member).where(Member.id == member_id))


def units_not_owned_by(session: Session, member_id: str, owner_id: str) -> int:
    """How many of member_id's OUs owner_id is not an Owner of."""
    owned = select(Membership.unit_id).where(Membership.member_id == owner_id, Membership.role == "Owner")
    return session.execute(
        select(func.count())
        .select_from(Membership)
        .where(Membership.member_id == member_id, Membership.unit_id.not_in(owned))
    ).scalar_one()


def members_to_add(session: Session, unit_id: str, owner_id: str) -> list[Member]:
    """Members of the OUs owner_id owns who have no role in unit_id, by email: whom an Owner may add to it by id."""
    owned = select(Membership.unit_id).where(Membership.member_id == owner_id, Membership.role == "Owner")
    theirs = select(Membership.member_id).where(Membership.unit_id.in_(owned))
    here = select(Membership.member_id).where(Membership.unit_id == unit_id)
    return list(
        session.execute(select(Member).where(Member.id.in_(theirs), Member.id.not_in(here)).order_by(Member.email))
        .scalars()
        .all()
    )


def owns_every_unit(session: Session, org_id: str, member_id: str) -> bool:
    """Whether the member is an Owner of every OU of its organization (organization-wide settings need that)."""
    owned = select(Membership.unit_id).where(Membership.member_id == member_id, Membership.role == "Owner")
    return not session.execute(
        select(OrgUnit.id).where(OrgUnit.org_id == org_id, OrgUnit.id.not_in(owned)).limit(1)
    ).first()


def _keep_an_owner(session: Session, unit_id: str, leaving_id: str) -> None:
    others = session.execute(
        select(func.count())
        .select_from(Membership)
        .where(Membership.unit_id == unit_id, Membership.role == "Owner", Membership.member_id != leaving_id)
    ).scalar_one()
    if not others:
        raise LastOwner("an organization unit needs at least one Owner: make another member Owner first")


def start_session(session: Session, member_id: str, ttl: timedelta) -> MemberSession:
    """A new login; the member's expired ones go now, so the table holds about one row per live login."""
    now = utcnow()
    session.execute(delete(MemberSession).where(MemberSession.member_id == member_id, MemberSession.expires_at < now))
    login = MemberSession(member_id=member_id, expires_at=now + ttl)
    session.add(login)
    session.flush()
    return login


def session_member(session: Session, session_id: str, member_id: str, now: datetime):
    """(member id, org id) of a live session, else None: logged out, ended by removal, or expired."""
    return session.execute(
        select(Member.id, Member.org_id)
        .join(MemberSession, MemberSession.member_id == Member.id)
        .where(
            MemberSession.id == session_id,
            Member.id == member_id,
            MemberSession.ended_at.is_(None),
            MemberSession.expires_at > now,
        )
    ).first()


def end_session(session: Session, session_id: str) -> None:
    session.execute(
        update(MemberSession)
        .where(MemberSession.id == session_id, MemberSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def end_sessions(session: Session, member_id: str) -> None:
    session.execute(
        update(MemberSession)
        .where(MemberSession.member_id == member_id, MemberSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
