"""Recall and consolidation defaults chosen on LoCoMo's development split.

bench/memory_quality.py on the five development conversations (760 questions), evidence
recall@10 at a 10-turn budget, memory.recall after the Night Cycles and retention:

- recall.rrf_k 10 -> 3 and recall.weight_vector 1.0 -> 1.2: the fusion trusts each leg's
  top hits more (0.640 -> 0.647; rrf_k 30 and 60 fell to 0.567 and 0.543);
- night.summary_ratio 0.5 -> 0.7: dead-zone summaries keep 71% of the text instead of 56%;
  the evidence turns that no summary sentence kept fell from 11% to 3%, and recall after
  consolidation rose to that on the raw turns (0.664 both).

A setting an operator has changed (not at its old default) keeps its value; the
descriptions are updated either way.

Revision ID: 0019
Revises: 0018
"""
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# key: (old default, new default, description before, description after)
CHANGES = {
    "recall.rrf_k": ("10", "3", "reciprocal rank fusion: an item scores, from each leg, is weight / (rrf_k + rank)",
                     "reciprocal rank fusion: an item scores, from each leg, is weight / (rrf_k + rank) (3 chosen on "
                     "LoCoMo's development split)"),
    "recall.weight_vector": ("1.0", "1.2", "weight of the vector leg (cosine over the same turns)",
                             "weight of the vector leg (cosine over the same turns; 1.2 chosen on LoCoMo's development "
                             "split)"),
    "night.summary_ratio": ("0.5", "0.7", "share of a dead zone's characters its summary keeps (memory.summarise_facts)",
                            "share of a dead zone's characters its summary keeps (memory.summarise_facts; 0.7 chosen "
                            "on LoCoMo's development split)"),
}


def _apply(frm: int, to: int) -> None:
    for key, spec in CHANGES.items():
        description = spec[to + 2].replace("'", "''")
        op.execute(f"UPDATE ops.settings SET value = CASE WHEN value = '{spec[frm]}'::jsonb THEN '{spec[to]}'::jsonb "
                   f"ELSE value END, description = '{description}' WHERE key = '{key}'")


def upgrade() -> None:
    _apply(0, 1)


def downgrade() -> None:
    _apply(1, 0)
