"""Page through a select() statement; pages past any real data are simply empty."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

MAX_OFFSET = 10**9


def paginate(session: Session, stmt, page: int, page_size: int):
    """Return (items, total) for one page of `stmt` (an ORM select with an ORDER BY)."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    offset = (page - 1) * page_size
    if offset >= MAX_OFFSET or offset >= total:
        return [], total
    return list(session.scalars(stmt.limit(page_size).offset(offset))), total
