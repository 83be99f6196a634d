"""SQL builders that alembic revisions share.

Revisions run once and must keep producing the same schema, so change these only in
ways that leave existing output unchanged.
"""
from __future__ import annotations

ACTING_USER = "nullif(current_setting('psimem.user_id', true), '')::uuid"


def index_kind(dim: int) -> str:
    """HNSW form for a vector size: pgvector indexes `vector` to 2,000 dims, `halfvec` to 4,000."""
    return "vector" if dim <= 2000 else "halfvec" if dim <= 4000 else "binary"


def hnsw_index(name: str, table: str, column: str, dim: int, kind: str | None = None,
               m: int | None = None, ef_construction: int | None = None) -> str:
    """The HNSW index for an embedding column. Binary quantization indexes the stored
    `<column>_bq` code (see binary_code_column): ranking on it never detoasts the vectors.
    m / ef_construction default to pgvector's (16 / 64)."""
    expr, ops = {
        "vector": (column, "vector_cosine_ops"),
        "halfvec": (f"({column}::halfvec({dim}))", "halfvec_cosine_ops"),
        "binary": (f"{column}_bq", "bit_hamming_ops"),
    }[kind or index_kind(dim)]
    params = ", ".join(f"{k} = {v}" for k, v in (("m", m), ("ef_construction", ef_construction)) if v)
    return f"CREATE INDEX {name} ON {table} USING hnsw ({expr} {ops})" + (f" WITH ({params})" if params else "")


def binary_code_column(table: str, column: str, dim: int, kind: str | None = None) -> str:
    """A stored generated column with the embedding's sign code (dim/8 bytes, kept in the row)
    next to the vector (TOASTed past 2,000 dims). Created with the table only for
    binary-quantized spaces, whose HNSW index is on it; revision 0010 passes kind="binary"
    to give the other spaces one too, for ranking selective recall filters."""
    if (kind or index_kind(dim)) != "binary":
        return ""
    return (f"ALTER TABLE {table} ADD COLUMN {column}_bq bit({dim}) "
            f"GENERATED ALWAYS AS (binary_quantize({column})::bit({dim})) STORED;")


def acting_user_policies(table: str) -> str:
    """Row-level security: writers and readers see the acting user's rows; admins all."""
    short = table.split(".")[-1]
    return f"""
    ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
    CREATE POLICY {short}_acting_user ON {table} TO psimem_writer, psimem_reader
        USING (user_id = {ACTING_USER}) WITH CHECK (user_id = {ACTING_USER});
    CREATE POLICY {short}_admin ON {table} TO psimem_admin USING (true) WITH CHECK (true);
    """


ACTING_USER_VERIFIED = "(SELECT memory._acting_user())"


def user_policies(table: str, acting_roles: tuple[str, ...] = ("psimem_writer", "psimem_reader")) -> str:
    """Row-level security from revision 0011 on: the acting roles see the rows of the user
    memory._acting_user() returns (psimem.user_id, only where this login is bound to that
    user); psimem_admin sees all. The sub-select makes the check one InitPlan per query,
    not one call per row. With no acting roles, only the owner and psimem_admin see rows."""
    short = table.split(".")[-1]
    acting = (f"""
    CREATE POLICY {short}_acting_user ON {table} TO {", ".join(acting_roles)}
        USING (user_id = {ACTING_USER_VERIFIED}) WITH CHECK (user_id = {ACTING_USER_VERIFIED});"""
              if acting_roles else "")
    return f"""
    ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
    DROP POLICY IF EXISTS {short}_acting_user ON {table};
    DROP POLICY IF EXISTS {short}_admin ON {table};{acting}
    CREATE POLICY {short}_admin ON {table} TO psimem_admin USING (true) WITH CHECK (true);
    """
