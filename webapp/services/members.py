"""Members of an OU and their roles, for the API (/org-members, /org-units/{id}/memberships) and the console alike: each
change committed whole, the rules' refusals (the last Owner, an email taken, a bad password) as the API's errors."""

from __future__ import annotations

from models.accounts import AccountError, EmailTaken
from models.members import (
    LastOwner,
    NotFound,
    add_to_unit,
    assign,
    delete_member,
    members_to_add,
    remove_from_unit,
    set_role,
    unit_member,
    unit_members,
    units_not_owned_by,
    update_member,
)
from webapp.app_state import db
from webapp.errors import ApiError, bad_request, not_found


def dump(member, role: str) -> dict:
    """A member as the API answers it: never its password hash."""
    return {
        "org_member_id": member.id,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "email": member.email,
        "role": role,
    }


def _answer(change):
    """Run a membership change and commit it; the rules' refusals become the API's errors, naming their field."""
    session = db()
    try:
        out = change(session)
        session.commit()
    except NotFound:
        session.rollback()
        raise not_found("member") from None
    except AccountError as exc:
        session.rollback()
        status = 409 if isinstance(exc, (LastOwner, EmailTaken)) else 400
        details = {exc.field: [str(exc)]} if exc.field else None
        raise ApiError(status, "conflict" if status == 409 else "validation_error", str(exc), details) from None
    return out


def _member_and_role(session, unit_id: str, member_id: str) -> dict:
    member, membership = unit_member(session, unit_id, member_id)
    return dump(member, membership.role)


def listing(unit_id: str) -> list[dict]:
    """Everyone with a role in the OU, oldest first."""
    return [dump(m, role) for m, role in unit_members(db(), unit_id)]


def member(unit_id: str, member_id: str) -> dict:
    """One member of the OU; anyone else (another OU's, or nobody) is the same 404."""
    return _answer(lambda s: _member_and_role(s, unit_id, member_id))


def create(org_id: str, unit_id: str, data: dict) -> dict:
    """A new login of the organization with a role in this OU; the password is the one given (nothing is generated,
    nothing echoed back)."""
    return _answer(lambda s: dump(*add_to_unit(s, org_id, data, unit_id)))


def _owns_all_units_of(session, member_id: str, owner_id: str) -> bool:
    return units_not_owned_by(session, member_id, owner_id) == 0


def update(unit_id: str, member_id: str, data: dict, owner_id: str) -> dict:
    """Names, email and role; names and email only of a member whose every OU the caller owns."""
    return _answer(
        lambda s: dump(*update_member(s, unit_id, member_id, data, _owns_all_units_of(s, member_id, owner_id)))
    )


def delete(unit_id: str, member_id: str, owner_id: str) -> None:
    """The login itself, with its sessions and memberships; never the caller's own."""
    if member_id == owner_id:
        raise bad_request("you cannot delete your own login: another Owner can")
    _answer(lambda s: delete_member(s, unit_id, member_id, _owns_all_units_of(s, member_id, owner_id)))


def add_membership(org_id: str, unit_id: str, member_id: str, role: str) -> dict:
    """A role in the OU for a member of the organization (again: only the role changes)."""

    def change(session):
        assign(session, org_id, unit_id, member_id, role)
        return _member_and_role(session, unit_id, member_id)

    return _answer(change)


def change_role(unit_id: str, member_id: str, role: str) -> dict:
    def change(session):
        set_role(session, unit_id, member_id, role)
        return _member_and_role(session, unit_id, member_id)

    return _answer(change)


def remove_membership(unit_id: str, member_id: str) -> None:
    """Out of the OU (its login stays, for its other OUs); the last Owner stays."""
    _answer(lambda s: remove_from_unit(s, unit_id, member_id))


def addable(unit_id: str, owner_id: str) -> list[dict]:
    """Members of the OUs the caller owns who have no role in this one: those it may add by id, knowing them."""
    return [dump(m, "") for m in members_to_add(db(), unit_id, owner_id)]
