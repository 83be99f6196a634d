"""Committed data for the Cortex tests: the worker commits, so its inputs must be committed.

Each builder makes a user with a unique reference, and `Committed.cleanup` removes every
row it made (users cascade to sessions, turns, arcs and blocks; jobs and cycle runs are
removed by id) so the rolled-back tests elsewhere see the database as they expect.
"""
from __future__ import annotations

import uuid

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

    def night(self, tier: str = "normal") -> tuple:
        """The scripted conversation of night_script for a new user, consolidated by a Night Cycle."""
        ref = f"cortex-{uuid.uuid4()}"
        user, sessions = night_script.build(self.conn, tier=tier, ref=ref)
        self.users.append(user)
        self.runs.append(self.conn.execute("SELECT memory.run_night_cycle(p_user_id => %s)", (user,)).fetchone()[0])
        self.conn.commit()
        return user, sessions

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
