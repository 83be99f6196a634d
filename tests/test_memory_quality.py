"""bench/memory_quality.py's code path on a small synthetic conversation in LoCoMo's format,
whose answers are known: loaded as an agent would load it, consolidated by the Night Cycle
once per session date with retention on, moved to the Cortex by the worker, and asked
through memory.recall and the whole chain. The benchmark itself needs LoCoMo's data; this
needs none, so CI runs the same path."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cortex_data import Committed
from helpers import UDIM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import memory_quality as mq  # noqa: E402
from locomo import conversations  # noqa: E402

FILLER = ["Hey, how are you doing?", "Good, thanks! And you?", "Pretty busy lately, you know.", "Haha, same here.",
          "Anyway, talk soon!", "Sure, bye for now."]
FACTS = {  # (session, turn): a fact only that turn holds
    (1, 3): "I adopted a beagle named Biscuit from the shelter on Saturday.",
    (2, 4): "My sister Priya moved to Lisbon for a job at a bakery.",
    (3, 2): "I finally ran the Porto half marathon in 1:52, my best time.",
    (3, 5): "Biscuit chewed through the garden hose again this morning.",
}
QUESTIONS = [("What is the name of the beagle that was adopted?", [(1, 3)]),
             ("What did Biscuit chew through?", [(3, 5)]),
             ("Where did Priya move to?", [(2, 4)]),
             ("What was the half marathon time in Porto?", [(3, 2)])]


def conversation_json() -> dict:
    doc = {"speaker_a": "Ana", "speaker_b": "Ben", "qa": [
        {"question": q, "answer": "", "category": 4, "evidence": [f"D{s}:{t}" for s, t in ev]} for q, ev in QUESTIONS]
        + [{"question": "Adversarial?", "answer": "", "category": 5, "evidence": ["D1:1"]}]}
    for s, date in ((1, "10:00 am on 3 March, 2023"), (2, "4:30 pm on 20 April, 2023"), (3, "9:15 am on 2 June, 2023")):
        doc[f"session_{s}_date_time"] = date
        doc[f"session_{s}"] = [{"speaker": "Ana" if t % 2 else "Ben", "dia_id": f"D{s}:{t}",
                                "text": FACTS.get((s, t), FILLER[(t + s) % len(FILLER)])} for t in range(1, 7)]
    return doc


def embed(texts: list[str]) -> np.ndarray:
    """A bag of hashed words: texts sharing rare words are near, as with a sentence embedder."""
    out = np.zeros((len(texts), UDIM), np.float32)
    for i, text in enumerate(texts):
        for w in text.lower().replace("?", " ").replace(".", " ").replace(",", " ").split():
            out[i, int(hashlib.sha256(w.encode()).hexdigest(), 16) % UDIM] += 1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def data(db_url):
    d = Committed(db_url)
    yield d
    d.cleanup()


def test_the_benchmarks_path_finds_known_answers_after_consolidation_and_retention(data, db_url, tmp_path):
    (tmp_path / "1.json").write_text(json.dumps(conversation_json()))
    convs = conversations(tmp_path)
    assert [len(c.questions) for c in convs] == [4]  # category 5 left out
    c = data.conn
    universal = embed([t.content for t in convs[0].turns])
    questions = embed([q.text for q in convs[0].questions])
    ppl = np.array([30.0 if (t.session_no, t.turn_no) in FACTS else 10.0 for t in convs[0].turns])
    mq.load(c, convs, universal, ppl, None)
    c.commit()
    user = c.execute("SELECT memory.find_user('locomo:conv-1')").fetchone()[0]
    data.users.append(user)

    flat = mq.flat(convs, universal, questions).table()
    raw, _ = mq.evaluate(c, convs, questions, mq.sql_path(c))
    assert raw.table()["recall@5"] == 1.0 and flat["recall@20"] == 1.0

    runs = mq.night_cycles(c)
    data.runs += [r for r, in c.execute("SELECT run_id FROM ops.cycle_runs WHERE user_id IS NULL AND run_id > %s",
                                        (max(data.runs or [0]),))]
    assert len(runs) == 3  # one per session date
    kept = mq.survival(c, convs)
    assert kept["evidence lost"] == 0 and kept["turns in a zone"] == 18
    # the two old sessions are older than recall.window: retention deleted their raw turns
    assert kept["turns left raw"] == 6 and kept["evidence still raw"] == 0.5

    sql, _ = mq.evaluate(c, convs, questions, mq.sql_path(c))
    assert sql.table()["recall@5"] == 1.0
    from loaders.cortex import Cortex
    from loaders.worker import Worker

    Worker(db_url, cortex_uri=str(tmp_path / "cortex"), say=lambda m: None).run(once=True)
    cortex = Cortex.for_database(c, str(tmp_path / "cortex"))
    assert cortex.count(f"user_id = '{user}'") > 0
    chain, _ = mq.evaluate(c, convs, questions, mq.chain_path(c, cortex))
    assert chain.table()["recall@5"] == 1.0
