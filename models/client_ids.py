"""Client ids that carry a tag only this instance can make, so a made-up id is refused without a database query.

The tag is an HMAC under an instance key stored in the database (not SECRET_KEY, so rotating that breaks no
credential). It is not what secures a credential (the secret is); it only lets every web process tell a client id
it never issued from one it did, as cheaply as it recognises a cached one. Ids issued before tags existed ("lp_"
and 24 hex digits) are still looked up, and only while such credentials exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.dialect import insert_for
from models.tenancy import ApiCredential, InstanceSetting

ID_KEY_SETTING = "client_id_key"
SECRET_PREFIX, WRITE_KEY_PREFIX, LEGACY_PREFIX = "lpk_", "lpw_", "lp_"
RANDOM_HEX, TAG_HEX = 20, 12


def id_key(session: Session) -> bytes:
    """The instance's tag key, made on first use (by whichever process gets there first)."""
    stored = session.execute(select(InstanceSetting.value).where(InstanceSetting.key == ID_KEY_SETTING)).scalar()
    if stored:
        return bytes.fromhex(stored)
    session.execute(
        insert_for(session, InstanceSetting)
        .values(key=ID_KEY_SETTING, value=secrets.token_hex(32))
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return bytes.fromhex(
        session.execute(select(InstanceSetting.value).where(InstanceSetting.key == ID_KEY_SETTING)).scalar_one()
    )


def _tag(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:TAG_HEX]


def new_client_id(key: bytes, write_key: bool) -> str:
    body = (WRITE_KEY_PREFIX if write_key else SECRET_PREFIX) + secrets.token_hex(RANDOM_HEX // 2)
    return body + _tag(key, body)


def issued_here(client_id: str, key: bytes) -> bool:
    """Whether the id has the shape and tag of one this instance issued (it may since have been deleted)."""
    if len(client_id) != 4 + RANDOM_HEX + TAG_HEX or not client_id.startswith((SECRET_PREFIX, WRITE_KEY_PREFIX)):
        return False
    body, tag = client_id[:-TAG_HEX], client_id[-TAG_HEX:]
    return hmac.compare_digest(tag, _tag(key, body))


def legacy_shape(client_id: str) -> bool:
    return len(client_id) == len(LEGACY_PREFIX) + 24 and client_id.startswith(LEGACY_PREFIX)


def legacy_ids_exist(session: Session) -> bool:
    """Whether any credential still has an untagged id (from before tags); none are issued any more."""
    return (
        session.execute(
            select(ApiCredential.id)
            .where(ApiCredential.client_id.like(LEGACY_PREFIX.replace("_", r"\_") + "%", escape="\\"))
            .limit(1)
        ).first()
        is not None
    )
