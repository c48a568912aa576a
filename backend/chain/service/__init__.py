"""Trade-chain logic, by topic: seedling sales, fruit trades (quota, alerts, corrections), peel lots, their
storage and circulation (moves, splits, merges, sales), and the trace back to the fruit.

Every function takes a session and plain values, enforces tenancy (an operator sees and records
only its own rows; another operator's row is "not found"), raises catalogued AppErrors and
flushes; the request commits. Other domains call these functions, never the routes.
"""
from .counters import *  # noqa: F401,F403
from .epcis import *  # noqa: F401,F403
from .lots import *  # noqa: F401,F403
from .seedlings import *  # noqa: F401,F403
from .stock import *  # noqa: F401,F403
from .trace import *  # noqa: F401,F403
from .trades import *  # noqa: F401,F403
