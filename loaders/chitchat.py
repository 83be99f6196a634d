"""Real conversations from chitchat-dataset, picked so users and sessions are real.

Conversations are grouped by the unordered pair of people in them; pairs that talked in
several conversations become one psimem user (the person who opened first) whose
sessions are those conversations, with the other person in the assistant's role. A
turn is one speaker's run of consecutive messages.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime


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


def pick_turns(max_turns: int = 400, min_conversations: int = 3, per_pair: int = 4, data=None) -> list[DemoTurn]:
    """About max_turns turns: the first per_pair conversations of the most talkative pairs."""
    data = data if data is not None else _load()
    by_pair: dict[frozenset, list[str]] = defaultdict(list)
    for conv_id, conv in sorted(data.items()):
        senders = {m["sender"] for group in conv["messages"] for m in group}
        if len(senders) == 2:
            by_pair[frozenset(senders)].append(conv_id)
    pairs = sorted((p for p, convs in by_pair.items() if len(convs) >= min_conversations),
                   key=lambda p: (-len(by_pair[p]), sorted(p)))
    turns: list[DemoTurn] = []
    for pair in pairs:
        convs = sorted(by_pair[pair], key=lambda c: data[c]["messages"][0][0]["timestamp"])[:per_pair]
        user = data[convs[0]]["messages"][0][0]["sender"]
        for conv_id in convs:
            if len(turns) >= max_turns:
                break
            for n, group in enumerate(data[conv_id]["messages"], start=1):
                turns.append(DemoTurn(
                    user=f"chitchat:{user}",
                    session=f"chitchat:{conv_id}",
                    role="user" if group[0]["sender"] == user else "assistant",
                    content=" ".join(m["text"].strip() for m in group if m["text"].strip()) or "…",
                    created_at=datetime.fromisoformat(group[0]["timestamp"].replace("Z", "+00:00")),
                    turn_number=n,
                ))
        if len(turns) >= max_turns:
            break
    return turns
