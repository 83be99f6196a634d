"""kernel.export_patch: an idempotent SQL patch of every kernel change since a point. Applied
to an empty psimem database on a second server, or twice, it gives the same kernel rows table
by table; a later patch applied there brings it to the new state, deletes and a swap of two
cards' facts included. The patches are applied by a psimem_admin login, as an operator would."""
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from conftest import migrated_database, server
from helpers import card, journal, kernel_rows

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def target():
    """An empty psimem database on a server of its own, and a psimem_admin login there."""
    with server("psimem_target") as executor:
        url = migrated_database(executor, "psimem_target")
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE ROLE patch_admin LOGIN IN ROLE psimem_admin")
        yield url, url.replace("postgres@", "patch_admin@", 1)


@pytest.fixture
def copy(target):
    """The target, emptied of this test's user afterwards."""
    yield target
    with psycopg.connect(target[0], autocommit=True) as c:
        c.execute("DELETE FROM memory.users WHERE external_ref = 'kernel-patch'")


def apply(url: str, patch: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:  # the patch brings its own BEGIN and COMMIT
        c.execute(patch)


def snapshot(url: str, user) -> dict:
    with psycopg.connect(url) as c:
        return kernel_rows(c, user)


@pytest.fixture
def source(db_url):
    """A user whose kernel holds a bit of everything, committed."""
    rng = np.random.default_rng(3)
    with psycopg.connect(db_url) as c:
        user = c.execute("SELECT memory.ensure_user('kernel-patch')").fetchone()[0]
        for day in range(5):  # five notes on one subject: a summary card, reflects_on edges, a centroid
            card(c, user, f"The allotment needs {day + 1} hours of work a week", subject="allotment",
                 embedding=rng.standard_normal(6), provider="test", model="toy", at=NOW - timedelta(days=20 - day))
        blue = card(c, user, "User's car is blue", tags=["key:car_colour"], at=NOW)["card_id"]
        card(c, user, "User's car is red", tags=["key:car_colour"], at=NOW)
        gone = card(c, user, "User is moving to Ghent", at=NOW)["card_id"]
        c.execute("SELECT kernel.attach(%s, %s, 'url', 'https://example.org/car', 'the car')", (user, blue))
        c.execute("SELECT kernel.set_config(%s, 'recall_weights', '{\"recency\": 0.5}')", (user,))
        c.execute("SELECT * FROM kernel.recall(%s, 'car allotment', p_now => %s)", (user, NOW))
        journal(c, user, "Ideation", "Talked about the car and the allotment.", conclusion="keep both", at=NOW)
        journal(c, user, "Data Acquisition", "What colour is the car?", evidence={"unknowns": ["colour", "age"]}, at=NOW)
        c.execute("SELECT kernel.delete_card(%s, %s)", (user, gone))
        c.commit()
    yield user
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("DELETE FROM memory.users WHERE user_id = %s", (user,))


def test_a_full_patch_rebuilds_the_same_kernel_on_an_empty_database_and_twice_changes_nothing(db_url, copy, source):
    owner, admin = copy
    with psycopg.connect(db_url) as c:
        patch = c.execute("SELECT kernel.export_patch(%s)", (source,)).fetchone()[0]
    expected = snapshot(db_url, source)
    assert all(expected[t] for t in ("card", "edge", "journal", "config", "usage", "attachment", "embedding",
                                     "contradiction", "stage_transition", "tombstone")), "the source lacks a table's rows"
    apply(admin, patch)
    assert snapshot(owner, source) == expected
    apply(admin, patch)
    assert snapshot(owner, source) == expected


def test_a_patch_since_a_point_brings_a_copy_from_that_point_to_now(db_url, copy, source):
    owner, admin = copy
    with psycopg.connect(db_url) as c:
        apply(admin, c.execute("SELECT kernel.export_patch(%s)", (source,)).fetchone()[0])
        since = c.execute("SELECT now()").fetchone()[0]
        c.commit()
        # Swap two cards' facts (each content key moves to the other card), delete one, add one,
        # resolve the contradiction, recall (usage), journal (a transition), compress further.
        a = card(c, source, "User likes jazz", at=NOW)["card_id"]
        b = card(c, source, "User likes blues", at=NOW)["card_id"]
        c.commit()
        since_ab = c.execute("SELECT now()").fetchone()[0]
        c.commit()
        apply(admin, c.execute("SELECT kernel.export_patch(%s, %s)", (source, since)).fetchone()[0])
        card(c, source, "User likes swing", card_id=a)
        card(c, source, "User likes jazz", card_id=b)
        card(c, source, "User likes blues", card_id=a)
        [(pair,)] = c.execute("SELECT contradiction_id FROM kernel.contradictions(%s)", (source,)).fetchall()
        c.execute("SELECT * FROM kernel.resolve_contradiction(%s, %s, (SELECT card_a FROM kernel.contradiction "
                  "WHERE id = %s))", (source, pair, pair))
        c.execute("SELECT * FROM kernel.recall(%s, 'jazz blues')", (source,))
        journal(c, source, "Data Acquisition", "More about music.")
        card(c, source, "The allotment needs a new shed", subject="allotment")
        c.commit()
        patch = c.execute("SELECT kernel.export_patch(%s, %s)", (source, since_ab)).fetchone()[0]
    apply(admin, patch)
    assert snapshot(owner, source) == snapshot(db_url, source)
    assert "DELETE FROM kernel.card" in patch
    apply(admin, patch)
    assert snapshot(owner, source) == snapshot(db_url, source)


def test_a_writer_cannot_replay_a_patch_to_forge_history(db_url, source):
    """psimem.kernel_replay is believed only for the owner and psimem_admin: a writer setting it
    still gets content keys computed and changed_at stamped by the triggers."""
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("DROP ROLE IF EXISTS patch_writer")
        c.execute("CREATE ROLE patch_writer LOGIN IN ROLE psimem_writer")
        c.execute("SELECT memory.bind_user(%s, 'patch_writer')", (source,))
    try:
        with psycopg.connect(db_url.replace("postgres@", "patch_writer@", 1)) as w:
            w.execute("SELECT memory.act_for(%s)", (source,))
            w.execute("SET psimem.kernel_replay = on")
            w.execute("INSERT INTO kernel.card (user_id, summary, source, content_key, ts_config, changed_at) "
                      "VALUES (%s, 'Forged', 'msc', 'chosen', 'english', '2001-01-01')", (source,))
            key, changed = w.execute("SELECT content_key, changed_at FROM kernel.card WHERE summary = 'Forged'").fetchone()
            assert key != "chosen" and changed.year > 2001
            w.rollback()
    finally:
        with psycopg.connect(db_url, autocommit=True) as c:
            c.execute("SELECT memory.unbind_user(%s, 'patch_writer')", (source,))
            c.execute("DROP ROLE patch_writer")
