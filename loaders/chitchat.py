"""Real conversations from chitchat-dataset, picked so users and sessions are real.

Conversations are grouped by the unordered pair of people in them; pairs that talked in
several conversations become one psimem user (the person who opened first) whose
sessions are those conversations, with the other person in the assistant's role. A
turn is one speaker's run of consecutive messages.

The demo takes the first few conversations of the most talkative pairs and, for the
Cortex's RAPTOR tree, one long history: the tree is built per user, the Night Cycle forms
about one block per conversation, and HDBSCAN (min_cluster_size 5, min_samples 2) finds
branches only among a few dozen of one user's blocks.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

# The long history's conversations, by length in turns. Measured with the demo's models on
# this user: conversations of 6-20 turns held a flux arc one time in five, those of 21-60
# turns gave a block per 35-40 turns, longer ones (of other users) a block or two per
# 100-200 turns, and scoring turns is what a fresh demo waits for. With 11-60 the user's
# Cortex tree had two branches whatever the hour the demo runs (it decides which of an
# elder's blocks are a week old) and in any order of the blocks; with 16-60 or 1-55 it had
# none at some hours.
LONG_HISTORY_TURNS = (11, 60)


@dataclass(frozen=True)
class DemoTurn:
    user: str
    session: str
    role: str
    content: str
    created_at: datetime
    turn_number: int


def _load():
    from chitchat_dataset import Dataset

    return Dataset()


def _start(conv: dict) -> str:
    return conv["messages"][0][0]["timestamp"]


def _turns(conv_id: str, conv: dict, user: str) -> list[DemoTurn]:
    return [DemoTurn(user=f"chitchat:{user}", session=f"chitchat:{conv_id}",
                     role="user" if group[0]["sender"] == user else "assistant",
                     content=" ".join(m["text"].strip() for m in group if m["text"].strip()) or "…",
                     created_at=datetime.fromisoformat(group[0]["timestamp"].replace("Z", "+00:00")),
                     turn_number=n)
            for n, group in enumerate(conv["messages"], start=1)]


def pick_turns(max_turns: int = 400, min_conversations: int = 3, per_pair: int = 4, data=None,
               long_history: tuple[int, int] | None = LONG_HISTORY_TURNS) -> list[DemoTurn]:
    """About max_turns turns: the first per_pair conversations of the most talkative pairs.

    Then, unless long_history is None, a long history for the user of the most talkative
    pair: their other conversations, in every pair they opened, whose length in turns is
    within long_history (low, high), whole and in time order, after the rest. With the
    demo's data that is 1,766 more turns in 55 sessions over three weeks; the Night Cycle
    makes 45 blocks of the user's 63 sessions, 35-38 of them a week old and so for the Cortex.
    """
    data = data if data is not None else _load()
    by_pair: dict[frozenset, list[str]] = defaultdict(list)
    for conv_id, conv in sorted(data.items()):
        senders = {m["sender"] for group in conv["messages"] for m in group}
        if len(senders) == 2:
            by_pair[frozenset(senders)].append(conv_id)
    pairs = sorted((p for p, convs in by_pair.items() if len(convs) >= min_conversations),
                   key=lambda p: (-len(by_pair[p]), sorted(p)))
    # Each pair's conversations in time order; its user is who opened the first one.
    convs_of = {p: sorted(by_pair[p], key=lambda c: (_start(data[c]), c)) for p in pairs}
    user_of = {p: data[convs_of[p][0]]["messages"][0][0]["sender"] for p in pairs}
    turns: list[DemoTurn] = []
    for pair in pairs:
        for conv_id in convs_of[pair][:per_pair]:
            if len(turns) >= max_turns:
                break
            turns += _turns(conv_id, data[conv_id], user_of[pair])
        if len(turns) >= max_turns:
            break
    if long_history is None or not pairs:
        return turns
    low, high = long_history
    user = user_of[pairs[0]]
    taken = {t.session for t in turns}
    history = sorted((c for p in pairs if user_of[p] == user for c in convs_of[p]
                      if f"chitchat:{c}" not in taken and low <= len(data[c]["messages"]) <= high),
                     key=lambda c: (_start(data[c]), c))
    return turns + [t for c in history for t in _turns(c, data[c], user)]
