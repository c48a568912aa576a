"""The labels domain's service functions (plain functions over a session; no Flask requests).

Split by topic: `lookup` (the resolver's one query), `keys` (code keys); the application,
batch, range, render, print and counter functions live beside them.
"""
from .lookup import LabelView, lookup_label  # noqa: F401
from .issuing import issue_batch  # noqa: F401
from .applications import apply, approve, get_application, list_applications, reject  # noqa: F401
from .ranges import change_range, get_batch, list_batches, list_labels, state_counts, void_batch  # noqa: F401
from .rendering import enqueue, get_render, request_render, requeue_abandoned  # noqa: F401
from .printing import (  # noqa: F401
    ack_print_job, cancel_print_job, get_print_job, lease_print_job, list_print_jobs, renew_print_job, request_print,
    requeue_print_job,
)
from .counters import label_counters  # noqa: F401
