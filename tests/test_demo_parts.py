"""The demo's real parts: conversation picking and the offline models with their cache."""
import numpy as np

from loaders.chitchat import pick_turns
from loaders.models import Cache, SmolScorer, UniversalEmbedder


def conv(a, b, day, n=3):
    return {"messages": [[{"text": f"m{i}", "timestamp": f"2018-05-0{day}T10:0{i}:00Z",
                           "sender": a if i % 2 == 0 else b}] for i in range(n)]}


def test_pick_turns_takes_repeat_pairs_as_users_with_sessions():
    data = {"c1": conv("ann", "bob", 1), "c2": conv("bob", "ann", 2), "c3": conv("ann", "bob", 3),
            "c4": conv("cat", "dan", 1), "c5": conv("cat", "dan", 2)}  # cat and dan: only two
    turns = pick_turns(100, min_conversations=3, data=data)
    assert {t.user for t in turns} == {"chitchat:ann"}
    assert [t.session for t in turns[::3]] == ["chitchat:c1", "chitchat:c2", "chitchat:c3"]
    c2 = [t for t in turns if t.session == "chitchat:c2"]
    assert [(t.role, t.turn_number) for t in c2] == [("assistant", 1), ("user", 2), ("assistant", 3)]


def test_offline_models_give_sizes_sensible_perplexity_and_cache(tmp_path):
    cache = Cache(tmp_path / "cache.npz")
    texts = ["I went to the store to buy some bread and milk.",
             "bread store the milk I to some went and buy to."]
    u = UniversalEmbedder(cache).embed(texts, progress=False)
    ppl, native = SmolScorer(cache).score(texts, progress=False)
    assert u.shape == (2, 384) and np.allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)
    assert native.shape == (2, 576) and np.isfinite(native).all()
    assert ppl[0] < ppl[1] / 3  # fluent text is far less surprising than its scramble
    cache.save()
    again = Cache(tmp_path / "cache.npz")
    scorer = SmolScorer(again)
    ppl2, native2 = scorer.score(texts, progress=False)
    assert scorer._model is None  # answered from the cache, no model load
    assert np.array_equal(native2, native) and np.allclose(ppl2, ppl)
