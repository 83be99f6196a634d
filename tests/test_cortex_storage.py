"""Where an S3 Cortex's endpoint, region and credentials come from, and several writers on one
Cortex (local and S3) at the same instant: the same new blocks, compactions, index builds."""
from __future__ import annotations

import multiprocessing
import uuid

import numpy as np
import pytest

from loaders.cortex import Cortex
from loaders.storage import CortexConfigError, storage_options


def test_endpoint_region_and_credentials_come_from_the_aws_variables():
    assert storage_options("/var/lib/psimem/cortex", env={"AWS_ENDPOINT_URL": "http://x:1"}) is None
    assert storage_options("s3://b/p", env={}) == {}  # AWS itself: LanceDB's credential chain and region lookup
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000/", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    assert storage_options("s3://b/p", env) == {
        "aws_endpoint": "http://127.0.0.1:9000", "allow_http": "true", "aws_region": "us-east-1",
        "aws_access_key_id": "k", "aws_secret_access_key": "s"}
    assert storage_options("s3://b/p", {"AWS_ENDPOINT_URL_S3": "https://s3.example.net", "AWS_REGION": "eu-central-1",
                                        "AWS_ENDPOINT_URL": "http://ignored"}) == {
        "aws_endpoint": "https://s3.example.net", "aws_region": "eu-central-1"}
    with pytest.raises(CortexConfigError, match=r"^AWS_ENDPOINT_URL: must be an http:// or https:// URL, got 'ftp://x'$"):
        storage_options("s3://b/p", {"AWS_ENDPOINT_URL": "ftp://x"})
    with pytest.raises(CortexConfigError, match="an S3 Cortex is s3://bucket/prefix"):
        storage_options("s3://", {})


def _writer(uri: str, n: int, barrier, keys: list[str], own: list[str], rounds: int) -> tuple[int, str | None]:
    """One writer process: each round, at the same instant as the others, merge the shared new
    keys and its own, then compact the table. Returns the conflicts it retried and any error."""
    cx = Cortex(uri, 8, 8)
    rng = np.random.default_rng(n)
    try:
        for r in range(rounds):
            barrier.wait(60)
            batch = keys[r::rounds] + own[r::rounds]
            cx.upsert_blocks([{"block_id": b, "user_id": "u", "universal_embedding": rng.standard_normal(8)}
                              for b in batch])
            cx.optimize()
        return cx.conflicts, None
    except Exception as e:
        return cx.conflicts, f"{type(e).__name__}: {e}"


def test_four_writers_at_the_same_instant_neither_lose_nor_duplicate_nor_fail(cortex_uri):
    writers, rounds = 4, 4
    shared = [str(uuid.uuid4()) for _ in range(6 * rounds)]   # every writer inserts these, at the same time
    own = [[str(uuid.uuid4()) for _ in range(10 * rounds)] for _ in range(writers)]
    Cortex(cortex_uri, 8, 8).blocks(create=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as m:
        barrier = m.Barrier(writers)
        with ctx.Pool(writers) as pool:
            results = pool.starmap(_writer, [(cortex_uri, n, barrier, shared, own[n], rounds) for n in range(writers)])
    assert [err for _, err in results] == [None] * writers
    ids = Cortex(cortex_uri, 8, 8).block_ids()
    assert sorted(ids) == sorted(shared + [b for o in own for b in o])  # each block exactly once
