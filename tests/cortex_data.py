"""Committed data for the Cortex tests: the worker commits, so its inputs must be committed.

Each builder makes a user with a unique reference, and `Committed.cleanup` removes every
row it made (users cascade to sessions, turns, arcs and blocks; jobs and cycle runs are
removed by id) so the rolled-back tests elsewhere see the database as they expect.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

import night_script


class Committed:
    def __init__(self, url: str):
        self.url = url
        self.conn = psycopg.connect(url)
        register_vector(self.conn)
        self.users: list = []
        self.runs: list = []
        self.workers_before = {r[0] for r in self.conn.execute("SELECT worker_id FROM ops.workers")}
        self.jobs_before = self.conn.execute("SELECT coalesce(max(job_id), 0) FROM ops.jobs").fetchone()[0]
        self.settings: dict = {}
        self.conn.commit()

    def night(self, tier: str = "normal", start: datetime | None = None, cycles: int = 1) -> tuple:
        """The scripted conversation of night_script for a new user (from start: default eight
        hours ago), consolidated by Night Cycles for its date and the cycles - 1 dates after."""
        ref = f"cortex-{uuid.uuid4()}"
        user, sessions = night_script.build(self.conn, tier=tier, ref=ref, start=start)
        self.users.append(user)
        day = (start or datetime.now(timezone.utc)).date()
        for n in range(cycles):
            self.runs.append(self.conn.execute("SELECT memory.run_night_cycle(%s, %s)",
                                               (day + timedelta(days=n), user)).fetchone()[0])
        self.conn.commit()
        return user, sessions

    def queued_blocks(self, users: int, per_user: int, seed: int = 0, dim: int = 768) -> dict:
        """Blocks written straight into memory.holographic_blocks for new users and queued for the
        Cortex as stage 7 queues them (a cortex_migrate job per block, then one cluster_update):
        many blocks without a Night Cycle for each. Returns {user_id: [block_id, ...]}."""
        rng = np.random.default_rng(seed)
        out, t0 = {}, datetime.now(timezone.utc) - timedelta(days=3)
        for u in range(users):
            user = self.conn.execute("SELECT memory.ensure_user(%s, 'normal')", (f"cortex-{uuid.uuid4()}",)).fetchone()[0]
            session = self.conn.execute("SELECT memory.start_session(%s, %s)", (user, f"s-{uuid.uuid4()}")).fetchone()[0]
            self.users.append(user)
            ids = [uuid.uuid4() for _ in range(per_user)]
            for i, bid in enumerate(ids):
                at = t0 + timedelta(minutes=10 * i)
                v = rng.standard_normal(dim).astype(np.float32)
                prose = {"anterior_margin": f"user: before {i}.", "posterior_margin": f"assistant: after {i}.",
                         "live_zones": [{"start": 1, "end": 1, "content": f"user: live zone {i} of user {u}"}],
                         "dead_zone_summaries": [{"start": 2, "end": 2, "summary": f"A summary {i}. More."}]}
                self.conn.execute(
                    "INSERT INTO memory.holographic_blocks (block_id, prose, universal_embedding, flux_metrics, "
                    "salience_scores, coherence_gain, ties_merge_weight, session_id, user_id, user_tier, arc_start_time, "
                    "arc_end_time, cycle_date, first_turn, last_turn) VALUES "
                    "(%s, %s, %s, '{}', '{\"composite\": 0.5}', 0.4, 0.5, %s, %s, 'normal', %s, %s, %s, %s, %s)",
                    (bid, psycopg.types.json.Jsonb(prose), v / np.linalg.norm(v), session, user, at,
                     at + timedelta(minutes=5), date.today(), 2 * i, 2 * i + 1))
                self.conn.execute("SELECT ops.queue_job('cortex_migrate', jsonb_build_object('block_id', %s::text), "
                                  "'cortex_migrate:' || %s::text)", (bid, bid))
            out[str(user)] = [str(b) for b in ids]
        self.conn.execute("SELECT ops.queue_job('cluster_update', '{}', %s)", (f"cluster_update:{uuid.uuid4()}",))
        self.conn.commit()
        return out

    def set(self, key: str, value) -> None:
        old = self.conn.execute("SELECT ops.set_setting(%s, %s::jsonb)", (key, psycopg.types.json.Jsonb(value))).fetchone()[0]
        self.settings.setdefault(key, old)
        self.conn.commit()

    def blocks(self, user) -> list[dict]:
        with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            rows = cur.execute("SELECT * FROM memory.holographic_blocks WHERE user_id = %s ORDER BY arc_start_time, block_id",
                               (user,)).fetchall()
        self.conn.commit()
        return rows

    def jobs(self) -> list[dict]:
        with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            rows = cur.execute("SELECT * FROM ops.jobs WHERE job_id > %s ORDER BY job_id", (self.jobs_before,)).fetchall()
        self.conn.commit()
        return rows

    def cleanup(self) -> None:
        c = self.conn
        c.rollback()
        for key, old in self.settings.items():
            c.execute("SELECT ops.set_setting(%s, %s::jsonb)", (key, psycopg.types.json.Jsonb(old)))
        c.execute("DELETE FROM ops.jobs WHERE job_id > %s", (self.jobs_before,))
        c.execute("DELETE FROM ops.workers WHERE NOT (worker_id = ANY(%s))", (list(self.workers_before),))
        c.execute("DELETE FROM ops.cycle_runs WHERE run_id = ANY(%s)", (self.runs,))
        c.execute("DELETE FROM memory.users WHERE user_id = ANY(%s)", (self.users,))
        c.commit()
        c.close()
