"""Keys that distribute by user: user_id in every key of a user's data, no reference across users.

A distributed PostgreSQL (Citus) that shards by user_id keeps one user's rows of every table
on the same node only if each of those tables is distributed by user_id; it can then enforce
a primary key or a unique constraint only if the constraint contains user_id (it is checked
on one shard), and a foreign key between two such tables only if both sides contain user_id
(the referenced row is on the same shard). These are also facts worth having on a single
server: a composite key says in the schema that a turn, an arc or a block belongs to one
user, and that nothing of one user refers to anything of another.

So for every table holding user_id (tests/test_distributable_schema.py lists the exceptions
and why):

- The primary key and every unique constraint and unique index gain user_id, as their LAST
  column: every existing lookup, ON CONFLICT or foreign key that reads the old key can still
  use the index by its prefix (day_table_session_turn_unique still leads with session_id, the
  blocks' primary key with block_id, as revision 0015's index choices assume). Where a table already had
  a unique (id, user_id) beside its primary key (id) only for composite foreign keys (cards,
  journal entries, reflexes, utterances), that pair becomes the primary key and the duplicate
  index goes.
- Every foreign key between two such tables becomes (col, user_id) REFERENCES t(key, user_id)
  with its ON DELETE action; a nullable reference that was ON DELETE SET NULL becomes
  ON DELETE SET NULL (col) (PostgreSQL 15), so deleting the referenced row clears the
  reference and leaves the row's user_id alone.

The old single-column keys are not kept: a unique constraint without user_id is what a
distributed table cannot have. Ids stay unique in practice (gen_random_uuid, identities, the
ψ utterance hash of entry id and text); where an id comes from outside (an imported block),
the importing function still refuses one that another user holds.

Adding the foreign keys validates them, so on a populated database the upgrade fails, and
changes nothing, if some row already refers to another user's row: such a row was always a
bug, and is named in the error. The downgrade restores the single-column keys; it fails if
two users have meanwhile come to hold the same id.

Revision ID: 0018
Revises: 0017
"""
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# (table, constraint, column, referenced table, referenced key column, on delete) for every
# foreign key between two tables holding user_id that named a single column (or, in the
# kernel, procedural and psi schemas, referenced the (id, user_id) unique that is replaced).
# on delete: 'CASCADE' or 'SET NULL'.
FOREIGN_KEYS = (
    ("memory.sessions", "sessions_continues_session_id_fkey", "continues_session_id", "memory.sessions", "session_id", "SET NULL"),
    ("memory.day_table", "day_table_session_id_fkey", "session_id", "memory.sessions", "session_id", "CASCADE"),
    ("memory.consolidations", "consolidations_session_id_fkey", "session_id", "memory.sessions", "session_id", "CASCADE"),
    ("memory.flux_arcs", "flux_arcs_session_id_fkey", "session_id", "memory.sessions", "session_id", "CASCADE"),
    ("memory.flux_arcs", "flux_arcs_continued_by_arc_id_fkey", "continued_by_arc_id", "memory.flux_arcs", "arc_id", "SET NULL"),
    ("memory.holographic_blocks", "holographic_blocks_session_id_fkey", "session_id", "memory.sessions", "session_id", "CASCADE"),
    ("memory.holographic_blocks", "holographic_blocks_arc_id_fkey", "arc_id", "memory.flux_arcs", "arc_id", "SET NULL"),
    ("memory.holographic_blocks", "holographic_blocks_continued_by_fkey", "continued_by", "memory.holographic_blocks", "block_id", "SET NULL"),
    ("memory.holographic_blocks", "holographic_blocks_continues_from_fkey", "continues_from", "memory.holographic_blocks", "block_id", "SET NULL"),
    ("memory.holographic_blocks", "holographic_blocks_derived_from_fkey", "derived_from", "memory.holographic_blocks", "block_id", "SET NULL"),
    ("memory.holographic_blocks", "holographic_blocks_parent_metablock_id_fkey", "parent_metablock_id", "memory.holographic_blocks", "block_id", "SET NULL"),
    ("memory.block_relationships", "block_relationships_source_block_id_fkey", "source_block_id", "memory.holographic_blocks", "block_id", "CASCADE"),
    ("memory.block_relationships", "block_relationships_target_block_id_fkey", "target_block_id", "memory.holographic_blocks", "block_id", "CASCADE"),
    ("memory.block_turns", "block_turns_block_id_fkey", "block_id", "memory.holographic_blocks", "block_id", "CASCADE"),
    ("memory.block_turns", "block_turns_session_id_fkey", "session_id", "memory.sessions", "session_id", "CASCADE"),
    ("memory.block_zones", "block_zones_block_id_fkey", "block_id", "memory.holographic_blocks", "block_id", "CASCADE"),
    ("psi.utterances", "utterances_entry_id_fkey", "entry_id", "memory.day_table", "entry_id", "SET NULL"),
    ("psi.psi_frames", "psi_frames_utterance_fk", "uttr_hash", "psi.utterances", "uttr_hash", "CASCADE"),
    ("psi.surprise_events", "surprise_events_utterance_fk", "uttr_hash", "psi.utterances", "uttr_hash", "CASCADE"),
    ("psi.band_centroids", "band_centroids_utterance_fk", "uttr_hash", "psi.utterances", "uttr_hash", "CASCADE"),
    ("procedural.causal_edges", "causal_edges_source_same_user", "source_reflex_id", "procedural.procedural_memory", "reflex_id", "CASCADE"),
    ("procedural.causal_edges", "causal_edges_target_same_user", "target_reflex_id", "procedural.procedural_memory", "reflex_id", "CASCADE"),
    ("kernel.card", "card_rolled_into_same_user", "rolled_into", "kernel.card", "id", "SET NULL"),
    ("kernel.attachment", "attachment_card_same_user", "mem_id", "kernel.card", "id", "CASCADE"),
    ("kernel.contradiction", "contradiction_a_same_user", "card_a", "kernel.card", "id", "CASCADE"),
    ("kernel.contradiction", "contradiction_b_same_user", "card_b", "kernel.card", "id", "CASCADE"),
    ("kernel.edge", "edge_src_same_user", "src_id", "kernel.card", "id", "CASCADE"),
    ("kernel.edge", "edge_dst_same_user", "dst_id", "kernel.card", "id", "CASCADE"),
    ("kernel.embedding", "embedding_card_same_user", "mem_id", "kernel.card", "id", "CASCADE"),
    ("kernel.usage", "usage_card_same_user", "mem_id", "kernel.card", "id", "CASCADE"),
    ("kernel.stage_transition", "stage_transition_journal_same_user", "journal_id", "kernel.journal", "id", "SET NULL"),
)

# Foreign keys that were composite before this revision (the downgrade puts them back as such).
COMPOSITE_BEFORE = {"psi_frames_utterance_fk", "surprise_events_utterance_fk", "band_centroids_utterance_fk",
                    "causal_edges_source_same_user", "causal_edges_target_same_user", "card_rolled_into_same_user",
                    "attachment_card_same_user", "contradiction_a_same_user", "contradiction_b_same_user",
                    "edge_src_same_user", "edge_dst_same_user", "embedding_card_same_user", "usage_card_same_user",
                    "stage_transition_journal_same_user"}

# (table, constraint, old columns, kind): primary keys and unique constraints that gain user_id.
CONSTRAINTS = (
    ("memory.sessions", "sessions_pkey", "session_id", "PRIMARY KEY"),
    ("memory.day_table", "day_table_pkey", "entry_id", "PRIMARY KEY"),
    ("memory.day_table", "day_table_session_turn_unique", "session_id, turn_number", "UNIQUE"),
    ("memory.consolidations", "consolidations_pkey", "session_id, first_turn", "PRIMARY KEY"),
    ("memory.flux_arcs", "flux_arcs_pkey", "arc_id", "PRIMARY KEY"),
    ("memory.flux_arcs", "flux_arcs_session_start_unique", "session_id, start_turn", "UNIQUE"),
    ("memory.holographic_blocks", "holographic_blocks_pkey", "block_id", "PRIMARY KEY"),
    ("memory.block_relationships", "block_relationships_pkey", "relationship_id", "PRIMARY KEY"),
    ("memory.block_relationships", "block_relationships_unique", "source_block_id, target_block_id, relationship_type", "UNIQUE"),
    ("memory.block_zones", "block_zones_pkey", "block_id, zone_no", "PRIMARY KEY"),
    ("memory.preoccupation_centroids", "preoccupation_centroids_pkey", "centroid_id", "PRIMARY KEY"),
    ("psi.utterances", "utterances_pkey", "uttr_hash", "PRIMARY KEY"),
    ("psi.psi_frames", "psi_frames_pkey", "id", "PRIMARY KEY"),
    ("psi.psi_frames", "psi_frames_natural_key", "uttr_hash, band, ts_epoch_ms", "UNIQUE"),
    ("psi.surprise_events", "surprise_events_pkey", "uttr_hash, band, ts_epoch_ms", "PRIMARY KEY"),
    ("psi.band_centroids", "band_centroids_pkey", "uttr_hash, band, ts_epoch_ms", "PRIMARY KEY"),
    ("procedural.procedural_memory", "procedural_memory_pkey", "reflex_id", "PRIMARY KEY"),
    ("procedural.causal_edges", "causal_edges_pkey", "edge_id", "PRIMARY KEY"),
    ("procedural.causal_edges", "causal_edges_pair_unique", "source_reflex_id, target_reflex_id", "UNIQUE"),
    ("procedural.frustration_ledger", "frustration_ledger_pkey", "entry_id", "PRIMARY KEY"),
    ("kernel.card", "card_pkey", "id", "PRIMARY KEY"),
    ("kernel.journal", "journal_pkey", "id", "PRIMARY KEY"),
    ("kernel.attachment", "attachment_pkey", "id", "PRIMARY KEY"),
    ("kernel.contradiction", "contradiction_pkey", "id", "PRIMARY KEY"),
    ("kernel.contradiction", "contradiction_pair_unique", "card_a, card_b", "UNIQUE"),
    ("kernel.edge", "edge_pkey", "id", "PRIMARY KEY"),
    ("kernel.edge", "edge_unique", "src_id, dst_id, type", "UNIQUE"),
    ("kernel.embedding", "embedding_pkey", "id", "PRIMARY KEY"),
    ("kernel.embedding", "embedding_one_per_model", "mem_id, provider, model", "UNIQUE"),
    ("kernel.stage_transition", "stage_transition_pkey", "id", "PRIMARY KEY"),
    ("kernel.tombstone", "tombstone_pkey", "id", "PRIMARY KEY"),
    ("kernel.usage", "usage_pkey", "mem_id", "PRIMARY KEY"),
)

# (table, constraint, columns): the (id, user_id) uniques that existed only for composite
# foreign keys; the new primary key is the same pair, so they go (and come back on downgrade).
PAIR_UNIQUES = (
    ("psi.utterances", "utterances_hash_user_unique", "uttr_hash, user_id"),
    ("procedural.procedural_memory", "procedural_memory_reflex_user_unique", "reflex_id, user_id"),
    ("kernel.card", "card_id_user_unique", "id, user_id"),
    ("kernel.journal", "journal_id_user_unique", "id, user_id"),
)

# (index, table, old definition, new definition): unique indexes that are not constraints.
UNIQUE_INDEXES = (
    ("idx_day_table_session_external_ref", "memory.day_table",
     "(session_id, external_ref) WHERE external_ref IS NOT NULL",
     "(session_id, external_ref, user_id) WHERE external_ref IS NOT NULL"),
    ("idx_blocks_arc_unique", "memory.holographic_blocks",
     "(arc_id) WHERE block_kind = 'arc'",
     "(arc_id, user_id) WHERE block_kind = 'arc'"),
    ("idx_kernel_attachment_unique", "kernel.attachment",
     "(mem_id, kind, md5(ref))",
     "(mem_id, kind, md5(ref), user_id)"),
)


def _fk(table: str, name: str, col: str, ref: str, key: str, action: str, composite: bool) -> str:
    if not composite:
        return (f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({col}) "
                f"REFERENCES {ref} ({key}) ON DELETE {action};")
    # SET NULL (col): clearing a reference must not clear the row's owner.
    on_delete = f"SET NULL ({col})" if action == "SET NULL" else action
    return (f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({col}, user_id) "
            f"REFERENCES {ref} ({key}, user_id) ON DELETE {on_delete};")


def upgrade() -> None:
    sql = [f"ALTER TABLE {t} DROP CONSTRAINT {n};" for t, n, *_ in FOREIGN_KEYS]
    # The one user_id that was nullable: every block is some user's (the Night Cycle and
    # import_block always set it), and a primary key column must be NOT NULL anyway; said
    # here so that the downgrade can give it back.
    sql += ["ALTER TABLE memory.holographic_blocks ALTER COLUMN user_id SET NOT NULL;"]
    sql += [f"ALTER TABLE {t} DROP CONSTRAINT {n};" for t, n, _ in PAIR_UNIQUES]
    sql += [f"ALTER TABLE {t} DROP CONSTRAINT {n}, ADD CONSTRAINT {n} {kind} ({cols}, user_id);"
            for t, n, cols, kind in CONSTRAINTS]
    for name, table, _, new in UNIQUE_INDEXES:
        schema = table.split(".")[0]
        sql += [f"DROP INDEX {schema}.{name};", f"CREATE UNIQUE INDEX {name} ON {table} {new};"]
    sql += [_fk(t, n, c, r, k, a, True) for t, n, c, r, k, a in FOREIGN_KEYS]
    op.execute("\n".join(sql))


def downgrade() -> None:
    sql = [f"ALTER TABLE {t} DROP CONSTRAINT {n};" for t, n, *_ in FOREIGN_KEYS]
    sql += [f"ALTER TABLE {t} DROP CONSTRAINT {n}, ADD CONSTRAINT {n} {kind} ({cols});"
            for t, n, cols, kind in CONSTRAINTS]
    sql += [f"ALTER TABLE {t} ADD CONSTRAINT {n} UNIQUE ({cols});" for t, n, cols in PAIR_UNIQUES]
    for name, table, old, _ in UNIQUE_INDEXES:
        schema = table.split(".")[0]
        sql += [f"DROP INDEX {schema}.{name};", f"CREATE UNIQUE INDEX {name} ON {table} {old};"]
    sql += ["ALTER TABLE memory.holographic_blocks ALTER COLUMN user_id DROP NOT NULL;"]
    sql += [_fk(t, n, c, r, k, a, n in COMPOSITE_BEFORE) for t, n, c, r, k, a in FOREIGN_KEYS]
    op.execute("\n".join(sql))
