"""psimem worker / packet / recall / cortex from the command line, as an operator uses them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import night_script
from cortex_data import Committed
from psimem.settings import REPO_ROOT


def psimem(*args, url, cortex):
    env = dict(os.environ, PSIMEM_DATABASE_URL=url, PSIMEM_CORTEX_URI=str(cortex))
    return subprocess.run([sys.executable, "-m", "psimem", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def data(db_url):
    d = Committed(db_url)
    yield d
    d.cleanup()


def test_worker_packets_recall_and_cortex_from_the_command_line(data, db_url, cortex_uri, tmp_path):
    user, sessions = data.night(tier="normal")
    ref = data.conn.execute("SELECT external_ref FROM memory.users WHERE user_id = %s", (user,)).fetchone()[0]
    rng = np.random.default_rng(2)
    ids = [str(b["block_id"]) for b in data.blocks(user)]
    for bid in ids:  # the scripted turns carry no native embedding; give the blocks one
        data.conn.execute("UPDATE memory.holographic_blocks SET native_embedding = %s::real[]::vector WHERE block_id = %s",
                          (rng.standard_normal(4096).astype(np.float32).tolist(), bid))
    data.conn.commit()
    cortex = cortex_uri

    r = psimem("worker", "--once", url=db_url, cortex=cortex)
    assert r.returncode == 0, r.stderr
    r = psimem("cortex", url=db_url, cortex=cortex)
    assert r.returncode == 0 and f"cortex_blocks: {len(ids)} blocks" in r.stdout, r.stderr

    # a block that has moved exports from the Cortex; importing it elsewhere works, a broken copy is refused
    out = tmp_path / "p.json"
    r = psimem("packet", "export", ids[0], "-o", str(out), url=db_url, cortex=cortex)
    assert r.returncode == 0, r.stderr
    packet = json.loads(out.read_text())
    assert packet["prose"]["content_type"] == "summary" and packet["metadata"]["source_block_id"] == ids[0]
    other = f"{cortex_uri}-other"
    r = psimem("packet", "import", str(out), "--into", "cortex", "--user", ref, url=db_url, cortex=other)
    assert r.returncode == 0, r.stderr
    packet["vectors"]["native"]["dimensions"] = 12
    out.write_text(json.dumps([packet]))
    r = psimem("packet", "import", str(out), "--user", ref, url=db_url, cortex=f"{cortex_uri}-third")
    assert r.returncode == 2
    assert "refused, nothing imported: packet 0: vectors.native.dimensions: is 12" in r.stderr

    vec = tmp_path / "q.json"
    vec.write_text(json.dumps(night_script.topic(np.random.default_rng(0), 0).tolist()))
    r = psimem("recall", "--vector", str(vec), "--user", ref, "--json", "--budget", "5", url=db_url, cortex=cortex)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert sum(g["turns"] for g in got) <= 5 and any("cortex" in g["legs"] for g in got) and all(g["reason"] for g in got)

    # re-clustering by hand: nothing changed since the worker's cluster_update, so nobody is rebuilt
    r = psimem("cortex", "cluster", url=db_url, cortex=cortex)
    assert r.returncode == 0 and "0 of 1 users re-clustered" in r.stderr, r.stderr
    r = psimem("cortex", "cluster", "--full", url=db_url, cortex=cortex)
    assert r.returncode == 0 and "1 of 1 users re-clustered" in r.stderr, r.stderr


def test_a_bad_object_store_setting_is_one_line_naming_it(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:9000")
    r = psimem("cortex", url=db_url, cortex="s3://some-bucket/cortex")
    assert r.returncode == 2
    assert r.stderr.strip() == "psimem: AWS_ENDPOINT_URL: must be an http:// or https:// URL, got 'localhost:9000'"
    r = psimem("cortex", url=db_url, cortex="s3:///no-bucket")
    assert r.returncode == 2 and "PSIMEM_CORTEX_URI: an S3 Cortex is s3://bucket/prefix" in r.stderr
