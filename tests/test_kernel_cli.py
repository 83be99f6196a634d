"""`psimem kernel card | recall | export-patch`: one SQL call each for a shell user, refusals
in one line naming the field, the patch written whole."""
import json
import os
import subprocess
import sys

import psycopg
import pytest

PSIMEM = [sys.executable, "-m", "psimem"]


def run(*args):
    return subprocess.run([*PSIMEM, *args], capture_output=True, text=True, env=os.environ.copy())


@pytest.fixture
def person(env_url):
    with psycopg.connect(env_url) as c:
        c.execute("SELECT memory.ensure_user('kernel-cli')")
    yield "kernel-cli"
    with psycopg.connect(env_url) as c:
        c.execute("DELETE FROM memory.users WHERE external_ref = 'kernel-cli'")


def test_a_card_written_from_the_shell_is_recalled_with_its_score_parts(person):
    first = run("kernel", "card", "--user", person, "User grows chillies on the balcony", "--tag", "garden", "--json")
    assert first.returncode == 0, first.stderr
    written = json.loads(first.stdout)
    assert written["action"] == "inserted"
    again = run("kernel", "card", "--user", person, "user grows chillies on the balcony.")
    assert again.returncode == 0 and again.stdout.split() == [written["card_id"], "updated"]
    r = run("kernel", "recall", "--user", person, "chillies balcony", "--json")
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["card_id"] == written["card_id"] and row["text_rank"] == 1 and row["used_count"] == 1
    assert "vector leg not run" in row["why"]
    plain = run("kernel", "recall", "--user", person, "chillies")
    assert plain.returncode == 0 and "User grows chillies" not in plain.stdout and "chillies on the balcony" in plain.stdout


def test_the_patch_is_written_to_a_file_and_since_a_point(person, tmp_path):
    run("kernel", "card", "--user", person, "User reads crime novels")
    out = tmp_path / "kernel.sql"
    r = run("kernel", "export-patch", "--user", person, "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("-- psimem kernel patch") and "User reads crime novels" in text and "COMMIT;" in text
    assert not (tmp_path / "kernel.sql.part").exists()
    later = run("kernel", "export-patch", "--user", person, "--since", "2999-01-01T00:00:00", "-o", "-")
    assert later.returncode == 0 and later.stdout.rstrip().endswith("-- no change")


@pytest.mark.parametrize("args,message", [
    (("kernel", "card", "--user", "kernel-cli", " "), "psimem: refused: p_summary: must not be empty"),
    (("kernel", "card", "--user", "kernel-cli", "x", "--model", "m"),
     "psimem: refused: p_embedding: required when p_provider or p_model is given"),
    (("kernel", "recall", "--user", "kernel-cli", "x", "-k", "0"), "argument -k: must be a whole number >= 1"),
    (("kernel", "export-patch", "--user", "kernel-cli", "--since", "yesterday", "-o", "-"),
     "argument --since: must be an ISO 8601 time"),
    (("kernel", "card", "--user", "kernel-cli", "x", "--source", "diary"), "argument --source: invalid choice"),
])
def test_bad_arguments_and_refusals_are_one_line_naming_the_field(person, args, message):
    r = run(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_user_this_login_may_not_act_for_is_named(person):
    r = run("kernel", "card", "--user", "nobody-at-all", "x")
    assert r.returncode == 1 and "psimem: --user: no user 'nobody-at-all'" in r.stderr and "Traceback" not in r.stderr
