"""Import every domain's models so the metadata is complete (for Alembic and the tests)."""
from .auth.models import ApiToken, User  # noqa: F401
from .chain.models import (  # noqa: F401
    Alert, FruitTrade, Lot, LotCorrection, LotInput, LotMove, LotSource, PlotFinding, Sale, SaleCorrection, SeedlingSale,
    TradeCorrection, Warehouse,
)
from .extensions import Base
from .labels.models import (  # noqa: F401
    Label, LabelApplication, LabelBatch, LabelReprint, PrintJob, RenderJob,
)
from .fieldwork.models import Checkin, Finding, FindingCode, Photo, Task  # noqa: F401
from .scans.models import ScanAlert, ScanEvent  # noqa: F401
from .registry.models import Grower, Nursery, Operator, Plot, Town, Village  # noqa: F401

metadata = Base.metadata
