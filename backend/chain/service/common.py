"""Shared helpers of the chain services: tenancy, idempotency, row locks, errors."""
from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ...errors import AppError
from ...http import Actor
from ...registry.models import Operator
from ..models import FruitTrade, TradeCorrection


def _not_found(what: str, value) -> AppError:
    return AppError("chain.not_found", f"No such {what}.", {"id": [f"No {what} with id {value}."]})


def _bad_ref(field: str, what: str, value) -> AppError:
    return AppError("chain.invalid_reference", errors={field: [f"No {what} with id {value}."]})


def _rule(field: str, message: str, reason: str = "chain.rule_violation") -> AppError:
    return AppError(reason, errors={field: [message]})


def _nested(prefix: str | None, field: str) -> str:
    return f"{prefix}.{field}" if prefix else field


def _lock(session: Session, model, ids) -> None:
    """Lock rows (in id order, so two writers never deadlock) until the request commits."""
    ids = sorted(set(ids))
    if ids and session.get_bind().dialect.name == "postgresql":
        session.execute(select(model.id).where(model.id.in_(ids)).order_by(model.id).with_for_update(key_share=True))


def resolve_operator(session: Session, actor: Actor, operator_id: int | None) -> int:
    """The operator a write is for: an operator user's own, or the one an admin names."""
    if actor.role == "operator":
        if operator_id is not None and operator_id != actor.operator_id:
            raise AppError("chain.other_operator", errors={"operator_id": ["You may record only for your own operator."]})
        return actor.operator_id
    if operator_id is None:
        raise AppError("request.invalid", errors={"operator_id": ["Required when an admin records."]})
    if session.get(Operator, operator_id) is None:
        raise _bad_ref("operator_id", "operator", operator_id)
    return operator_id


def _replay(session: Session, model, client_uuid: str, digest: str, actor: Actor, owner):
    """The earlier answer to a retried client UUID, None if new, 409 if it meant something else."""
    row = session.scalar(select(model).where(model.client_uuid == client_uuid))
    if row is None:
        return None
    if row.content_hash != digest or not actor.sees_operator(owner(row)):
        raise AppError("chain.uuid_conflict", errors={"client_uuid": ["Already used with different content."]})
    return row


def current_trade(trade_id_column=FruitTrade.id):
    """SQL condition: the trade has not been corrected (voided or superseded)."""
    return ~exists(select(TradeCorrection.id).where(TradeCorrection.trade_id == trade_id_column))
