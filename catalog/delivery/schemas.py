"""Bodies of the delivery API: the structured query and its answer, files, the ε budget."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from catalog.orgs.schemas import Body
from catalog.products.schemas import Identifier

Op = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "between", "is_null", "not_null"]
Fn = Literal["count", "count_distinct", "sum", "avg", "min", "max"]
Scalar = str | int | float | bool
MAX_ROWS = 10_000
MAX_GROUPS = 10_000


class Condition(Body):
    field: Identifier
    op: Op
    value: Scalar | Annotated[list[Scalar], Meta(min_length=1, max_length=1000)] | None = None


class Aggregate(Body):
    fn: Fn
    field: Identifier | None = None


class OrderBy(Body):
    field: Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,80}$")]
    direction: Literal["asc", "desc"] = "asc"


class QueryRequest(Body):
    """Rows (select), aggregates (group_by + aggregates), or differentially private aggregates (+ epsilon)."""

    table: Identifier
    release: Annotated[str, Meta(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]{0,39}$")] | None = None
    select: Annotated[list[Identifier], Meta(min_length=1, max_length=200)] | None = None
    where: Annotated[list[Condition], Meta(max_length=50)] = []
    group_by: Annotated[list[Identifier], Meta(max_length=5)] = []
    aggregates: Annotated[list[Aggregate], Meta(max_length=20)] = []
    order_by: Annotated[list[OrderBy], Meta(max_length=10)] = []
    limit: Annotated[int, Meta(ge=1, le=MAX_ROWS)] | None = None
    cursor: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,16384}$")] | None = None
    epsilon: Annotated[float, Meta(gt=0, le=10)] | None = None


class Suppressed(Struct, kw_only=True):
    group: dict[str, Any]
    columns: list[str]
    reason: Literal["small_cell", "secondary", "dominance"]


class LowEffect(Struct, kw_only=True):
    """A condition (or one value of an in / not_in list) the answer treats as absent in some cells:
    with it, those cells would have changed by too few persons to be told apart from noise."""

    condition: str  # where it was written: "where.2", or "where.2.value.1" for a value of a list
    field: str
    value: Any = None  # the value of a list the note is about
    cells: list[dict[str, Any]] | None = None  # the cells (group values) it was dropped from; None: all


class Snapped(Struct, kw_only=True):
    """A range as it was read: the grid bucket [low, high) that covers the between that was asked."""

    condition: str
    low: Any
    high: Any


class QueryAnswer(Struct, kw_only=True):
    """``truncated``: more rows match than ``rows`` holds; ``next_cursor`` (rows answers) continues
    the same query on the same release from the last row: send it back as ``cursor``."""

    release: str
    mode: Literal["rows", "aggregate", "dp_aggregate"]
    columns: list[str]
    rows: list[dict[str, Any]]
    suppressed: list[Suppressed]
    perturbed: bool
    epsilon_spent: float
    # Anonymised aggregates (L4) only: per row, the noise SD of each released value; what was read.
    noise_sd: Annotated[
        list[dict[str, float | None]] | None,
        Meta(
            description="Anonymised answers (L4): for each row, the noise SD of each released value "
            "(null where withheld). Null for other answers."
        ),
    ] = None
    low_effect: Annotated[
        list[LowEffect],
        Meta(description="Anonymised answers (L4): conditions answered as absent, because they moved too few persons"),
    ] = []
    snapped: Annotated[
        list[Snapped],
        Meta(description="Anonymised answers (L4): each between range as read, the grid bucket [low, high)"),
    ] = []
    truncated: bool = False
    next_cursor: str | None = None


class QueryFile(Struct, kw_only=True):
    """A rows answer as a file (CSV or Parquet) and what the JSON answer says beside its rows."""

    media_type: str
    filename: str
    content: bytes
    release: str
    rows: int
    truncated: bool
    next_cursor: str | None


class FileEntry(Struct, kw_only=True):
    name: str
    release: str
    table: str
    format: str
    bytes: int
    sha256: str
    rows: int


class Download(Struct, kw_only=True):
    """What a download's response headers say: the file, and the bytes ``start``–``end`` being sent."""

    name: str
    sha256: str
    size: int
    media_type: str
    start: int
    end: int


class FileList(Struct, kw_only=True):
    items: list[FileEntry]


class BudgetRead(Struct, kw_only=True):
    """ε as decimals (as query answers give ``epsilon_spent``), and the same in micro-ε, the integer
    unit the budget and usage events are kept in."""

    consumer_org_id: str
    product_id: str
    total: float
    spent: float
    left: float
    per_query_max: float
    total_micro: int
    spent_micro: int
    left_micro: int
    per_query_max_micro: int
    updated_at: datetime | None
