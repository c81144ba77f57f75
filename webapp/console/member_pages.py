"""Members of the OU and their roles, Owners only as /org-members is: add a new login or a member of another OU the
Owner owns, change a role, take a member out of the OU, each through the API's own schemas and
webapp/services/members.py (the last Owner stays, with the API's message beside the control that tried)."""

from __future__ import annotations

from flask import request

from webapp.console.base import FormErrors, attempt, form_values, load, page, principal, render, see_other
from webapp.errors import not_found
from webapp.resources.members import MemberInSchema, MembershipInSchema, RoleSchema
from webapp.services import members

ROLE_NAMES = {
    "Viewer": "Viewer: reads leads, scores and settings",
    "Operator": "Operator: also sends events and configures",
    "Owner": "Owner: also manages members and credentials",
}
MEMBER_FIELDS = ("first_name", "last_name", "email", "password", "role")
DONE = ("added", "removed", "changed")


def _members_page(status=200, *, errors=None, posted=None, values=None):
    """The OU's members; posted names the form that was sent ("new", "existing", or a member's id), values what was
    typed in it (never a password: a refused form comes back without it)."""
    p = principal()
    return render(
        "members.html",
        status,
        rows=members.listing(p.unit_id),
        addable={m["org_member_id"]: m["email"] for m in members.addable(p.unit_id, p.member_id)},
        roles=ROLE_NAMES,
        errors=errors,
        posted=posted,
        values={k: v for k, v in (values or {}).items() if k != "password"},
        done={k: request.args[k] for k in DONE if request.args.get(k)},
        tab="members",
        active="access",
    )


@page("/members", need="own")
def members_page():
    return _members_page()


@page("/members", methods=("POST",), need="own")
def create_member():
    """A new login with a role in this OU, as POST /org-members makes it: the password is the one typed, never shown."""
    p = principal()
    values = form_values(MEMBER_FIELDS)
    made, errors = attempt(lambda: members.create(p.org_id, p.unit_id, load(MemberInSchema(), values)))
    if errors:
        return _members_page(errors.status, errors=errors, posted="new", values=values)
    return see_other("members_page", added=made["email"])


@page("/members/existing", methods=("POST",), need="own")
def add_existing_member():
    """A member of another OU this Owner owns given a role here, as POST /org-units/{id}/memberships does; any other
    id (another organization's, a member already here) is the 404 page."""
    p = principal()
    values = form_values(("org_member_id", "role"))

    data, errors = attempt(lambda: load(MembershipInSchema(), values))
    if not errors:
        if data["org_member_id"] not in {m["org_member_id"] for m in members.addable(p.unit_id, p.member_id)}:
            raise not_found("member")
        made, errors = attempt(lambda: members.add_membership(p.org_id, p.unit_id, data["org_member_id"], data["role"]))
    if errors:
        return _members_page(errors.status, errors=errors, posted="existing", values=values)
    return see_other("members_page", added=made["email"])


@page("/members/<member_id>/role", methods=("POST",), need="own")
def change_role(member_id):
    """A member's role here, as PUT /org-units/{id}/memberships/{member} changes it."""
    p = principal()
    members.member(p.unit_id, member_id)  # another OU's member, like none, is the 404 page before any form check
    values = form_values(("role",))
    changed, errors = attempt(lambda: members.change_role(p.unit_id, member_id, load(RoleSchema(), values)["role"]))
    if errors:
        return _members_page(errors.status, errors=_on_row(errors), posted=member_id, values=values)
    if member_id == p.member_id and changed["role"] != "Owner":
        return see_other("index")  # no longer an Owner here: this page is not theirs any more
    return see_other("members_page", changed=f"{changed['email']} is now {changed['role']}")


@page("/members/<member_id>/remove", methods=("POST",), need="own")
def remove_member(member_id):
    """Out of this OU, as DELETE /org-units/{id}/memberships/{member} does: its login stays for its other OUs."""
    p = principal()
    gone = members.member(p.unit_id, member_id)
    _, errors = attempt(lambda: members.remove_membership(p.unit_id, member_id))
    if errors:
        return _members_page(errors.status, errors=_on_row(errors), posted=member_id)
    if member_id == p.member_id:
        return see_other("index")
    return see_other("members_page", removed=gone["email"])


def _on_row(errors: FormErrors) -> FormErrors:
    """A row has one control, its role: whatever the rules said about the change is shown beside it."""
    said = [m for messages in errors.fields.values() for m in messages]
    return FormErrors({"role": said or [errors.message]}, errors.message, errors.status)
