"""The demo's real parts: conversation picking and the offline models with their cache."""
import copy
from collections import defaultdict
from datetime import timedelta

import numpy as np
import torch
from chitchat_dataset import Dataset

from loaders.chitchat import pick_turns
from loaders.models import Cache, SmolScorer, UniversalEmbedder


def conv(a, b, day, n=3):
    return {"messages": [[{"text": f"m{i}", "timestamp": f"2018-05-{day:02d}T10:{i:02d}:00Z",
                           "sender": a if i % 2 == 0 else b}] for i in range(n)]}


def test_pick_turns_takes_repeat_pairs_as_users_with_sessions():
    data = {"c1": conv("ann", "bob", 1), "c2": conv("bob", "ann", 2), "c3": conv("ann", "bob", 3),
            "c4": conv("cat", "dan", 1), "c5": conv("cat", "dan", 2)}  # cat and dan: only two
    turns = pick_turns(100, min_conversations=3, data=data)
    assert {t.user for t in turns} == {"chitchat:ann"}
    assert [t.session for t in turns[::3]] == ["chitchat:c1", "chitchat:c2", "chitchat:c3"]
    c2 = [t for t in turns if t.session == "chitchat:c2"]
    assert [(t.role, t.turn_number) for t in c2] == [("assistant", 1), ("user", 2), ("assistant", 3)]


def sessions_of(turns):
    return list(dict.fromkeys(t.session.removeprefix("chitchat:") for t in turns))


def test_pick_turns_adds_the_long_history_of_the_most_talkative_pairs_user():
    data = {"c1": conv("ann", "bob", 1), "c2": conv("bob", "ann", 2, n=4), "c3": conv("ann", "bob", 3, n=2),
            "c4": conv("ann", "bob", 4, n=9), "c5": conv("bob", "ann", 9, n=5),
            "e1": conv("ann", "eve", 5, n=4), "e2": conv("eve", "ann", 6), "e3": conv("ann", "eve", 7, n=3),
            "d1": conv("cat", "dan", 1), "d2": conv("dan", "cat", 2), "d3": conv("cat", "dan", 8, n=5)}
    short = pick_turns(100, per_pair=2, data=data, long_history=None)
    turns = pick_turns(100, per_pair=2, data=data, long_history=(3, 5))
    assert sessions_of(short) == ["c1", "c2", "e1", "e2", "d1", "d2"]  # two of each pair, most talkative first
    assert turns[:len(short)] == short
    # then the rest of ann's conversations (ann opened both her pairs) of 3-5 turns, in time order:
    # not c3 (2 turns) nor c4 (9), and nothing more of cat's
    extra = turns[len(short):]
    assert sessions_of(extra) == ["e3", "c5"]
    assert {t.user for t in extra} == {"chitchat:ann"}
    assert [(t.role, t.turn_number) for t in extra if t.session == "chitchat:c5"] == \
        [("assistant", 1), ("user", 2), ("assistant", 3), ("user", 4), ("assistant", 5)]


def test_demo_conversations_give_one_user_a_history_long_enough_for_a_cortex_tree():
    """The Cortex's RAPTOR tree is per user and HDBSCAN found branches here from about 35 of one
    user's blocks: the demo needs one user with dozens of conversations that can hold a flux arc,
    most of them more than 7 days older than the newest turn (the elder's blocks reach the Cortex
    only then), without changing the other users' picks."""
    data = Dataset()
    turns, others = pick_turns(data=data), pick_turns(data=data, long_history=None)
    assert turns[:len(others)] == others
    newest = max(t.created_at for t in turns)
    sessions = defaultdict(list)
    for t in turns:
        sessions[t.user, t.session].append(t)
    by_user = defaultdict(list)
    for (user, _), ts in sessions.items():
        by_user[user].append(ts)
    long_user = max(by_user, key=lambda u: len(by_user[u]))
    mine = by_user[long_user]
    assert turns[0].user == long_user  # first user: the demo makes them elder
    days = (max(t.created_at for ts in mine for t in ts) - min(t.created_at for ts in mine for t in ts)).days
    old_with_room_for_an_arc = [ts for ts in mine if len(ts) >= 11 and ts[-1].created_at < newest - timedelta(days=7)]
    assert len(mine) >= 50 and days >= 21
    assert len(old_with_room_for_an_arc) >= 40
    assert len(turns) <= 2400  # scoring them all is what a fresh `make demo` waits for


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


def test_bfloat16_scoring_stays_close_to_float32():
    """Where the CPU has native bfloat16 the scorer runs in it (twice as fast here); its
    perplexities and native embeddings must stay those of the float32 model, near enough that
    the demo's flux spikes do not move."""
    texts = ["hey, how was your weekend?", "pretty good, I went hiking with my sister up north",
             "oh nice! was it cold up there?", "freezing, but the view from the top was worth it",
             "I have never been hiking, I get tired just walking to class lol",
             "haha you should try it, start with something short", "quantum toaster banana regulation",
             "what are you studying anyway?", "information technology, mostly user experience design",
             "that sounds fun, do you like it?"]
    contexts = [""] + texts[:-1]
    f32, b16 = SmolScorer(Cache(None)), SmolScorer(Cache(None))
    f32.dtype = "float32"
    p32, n32 = f32.score(texts, contexts, progress=False)
    # one model load: the bfloat16 scorer gets a converted copy of the float32 model
    b16.dtype, b16._tok, b16._model = "bfloat16", f32._tok, copy.deepcopy(f32._model).to(torch.bfloat16)
    p16, n16 = b16.score(texts, contexts, progress=False)
    rel = np.abs(p16 - p32) / p32
    assert np.median(rel) < 0.03 and rel.max() < 0.5
    assert np.corrcoef(np.log(p16), np.log(p32))[0, 1] > 0.99
    cos = (n16 * n32).sum(1) / np.linalg.norm(n16, axis=1) / np.linalg.norm(n32, axis=1)
    assert cos.min() > 0.99
