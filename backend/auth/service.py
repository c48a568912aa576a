"""Users and tokens: create, authenticate, revoke. Tokens are random; only their SHA-256 is kept."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..errors import AppError
from ..extensions import db
from ..http import ROLES, Actor
from ..timeutil import as_utc, utcnow
from .models import ApiToken, User

TOKEN_PREFIX = "cp_"
# last_used_at is refreshed at most this often, so reads do not write on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_user(session: Session, name: str, role: str, operator_id: int | None = None) -> User:
    from ..registry import service as registry

    if role not in ROLES:
        raise AppError("request.invalid", errors={"role": [f"Must be one of {', '.join(ROLES)}."]})
    if role in ("operator", "agent"):
        if operator_id is None:
            raise AppError("auth.operator_required", errors={"operator_id": ["Required for this role."]})
        registry.get_operator_row(session, operator_id, field="operator_id")
    elif operator_id is not None:
        raise AppError("auth.operator_not_allowed", errors={"operator_id": ["Only operator and agent users have one."]})
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise AppError("auth.user_exists", errors={"name": [f"User {name!r} exists."]})
    user = User(name=name, role=role, operator_id=operator_id, active=True)
    session.add(user)
    session.flush()
    return user


def issue_token(session: Session, user: User) -> str:
    """Make a new token for `user`; the plain token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10]))
    session.flush()
    return token


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise AppError("auth.user_not_found", errors={"user_id": [f"No user {user_id}."]})
    return user


def find_user(session: Session, name_or_id: str) -> User:
    """A user by name, or by id when no user has that name (for the CLI)."""
    user = session.scalar(select(User).where(User.name == str(name_or_id)))
    if user is None and str(name_or_id).isdigit():
        user = session.get(User, int(name_or_id))
    if user is None:
        raise AppError("auth.user_not_found", errors={"user": [f"No user {name_or_id!r}."]})
    return user


def revoke_user(session: Session, user: User) -> int:
    """Deactivate the user and revoke every token; returns how many tokens were revoked."""
    user.active = False
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    session.flush()
    return result.rowcount or 0


def authenticate(session: Session, token: str) -> Actor | None:
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token))
    ).first()
    if row is None:
        return None
    api_token, user = row
    if api_token.revoked_at is not None or not user.active:
        return None
    last = as_utc(api_token.last_used_at)
    if last is None or utcnow() - last > LAST_USED_RESOLUTION:
        record_use(session, api_token.id)
    return Actor(user_id=user.id, name=user.name, role=user.role, operator_id=user.operator_id, token_id=api_token.id)


def record_use(session: Session, token_id: int) -> None:
    """Set a token's last_used_at unless it was set within LAST_USED_RESOLUTION.

    The row is locked with SKIP LOCKED: when another request with the same token is updating it
    already, this one skips (that one records the use), so a phone sending a batch and photos in
    parallel never queues on its own token. Also called after a failed request's rollback: the
    token was used all the same (and a stolen token probing the API is what an admin must see).
    """
    now = utcnow()
    unlocked = (
        select(ApiToken.id)
        .where(ApiToken.id == token_id,
               or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USED_RESOLUTION))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    session.execute(
        update(ApiToken).where(ApiToken.id == unlocked).values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def authenticate_request(header: str | None) -> Actor:
    """Resolve an `Authorization: Bearer …` header to an Actor, or raise 401."""
    if not header:
        raise AppError("auth.unauthenticated")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        raise AppError("auth.unauthenticated", "Use 'Authorization: Bearer <token>'.")
    actor = authenticate(db.session, token)
    if actor is None:
        raise AppError("auth.unauthenticated", "The token is unknown or revoked.")
    return actor


def list_users(session: Session, page: int, page_size: int):
    from ..pagination import paginate

    return paginate(session, select(User).order_by(User.id), page, page_size)
