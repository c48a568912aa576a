"""The labels domain's service functions (plain functions over a session; no Flask requests).

Split by topic: `lookup` (the resolver's one query), `keys` (code keys); the application,
batch, range, render, print and counter functions live beside them.
"""
from .lookup import LabelView, lookup_label  # noqa: F401
from .issuing import issue_batch  # noqa: F401
