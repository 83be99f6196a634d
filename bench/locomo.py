"""LoCoMo (snap-research/locomo), read as an agent would record it.

The benchmark's data is never committed or downloaded at run time: fetch the repository
`snap-research/locomo` and point PSIMEM_LOCOMO_DIR (or --data) at `data/locomo10.zip` or at
the folder it unpacks to. Each conversation is between two people over 19-35 sessions with
real dates; psimem records it as one user (the first speaker) whose sessions are the
conversation's, with the second speaker in the assistant's role. A turn's content is
"Speaker: text", and a shared photo adds its caption ("[shares a photo of …]"), as the
conversation's participants saw it. Questions of category 5 (adversarial: no answer in the
conversation) are left out; each other question names the turns holding its answer
(evidence, "D<session>:<turn>").
"""
from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

# The development split: the five conversations with the smallest sample ids. Parameters are
# chosen on these only; the other five are held out (--heldout) and only reported.
DEV = ("conv-26", "conv-30", "conv-41", "conv-42", "conv-43")
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}


@dataclass(frozen=True)
class Turn:
    session_no: int
    turn_no: int
    speaker: str
    content: str
    at: datetime


@dataclass(frozen=True)
class Question:
    text: str
    category: int
    evidence: frozenset[tuple[int, int]]  # (session_no, turn_no)


@dataclass
class Conversation:
    sample_id: str
    speakers: tuple[str, str]
    sessions: dict[int, datetime] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def _date(text: str) -> datetime:
    # "1:56 pm on 8 May, 2023"
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=timezone.utc)


def _raw(data_dir: Path) -> dict[str, dict]:
    """sample id -> the conversation's JSON, from the zip or an unpacked folder, either layout
    (one locomo10.json list, or one <n>.json per conversation)."""
    def parse(name: str, text: str, out: dict) -> None:
        doc = json.loads(text)
        for conv in doc if isinstance(doc, list) else [doc]:
            body = conv.get("conversation", conv)
            sid = conv.get("sample_id") or f"conv-{Path(name).stem}"
            out[sid] = {**body, "qa": conv.get("qa", body.get("qa", []))}

    out: dict[str, dict] = {}
    zips = [data_dir] if data_dir.suffix == ".zip" else sorted(data_dir.rglob("locomo10*.zip"))
    if zips:
        with zipfile.ZipFile(zips[0]) as z:
            for name in sorted(z.namelist()):
                if name.endswith(".json"):
                    parse(name, z.read(name).decode(), out)
    else:
        for f in sorted(data_dir.rglob("*.json")):
            parse(f.name, f.read_text(), out)
    return out


def locate(arg: str | None) -> Path | None:
    path = arg or os.environ.get("PSIMEM_LOCOMO_DIR")
    return Path(path) if path and Path(path).exists() else None


def conversations(data_dir: Path) -> list[Conversation]:
    convs = []
    for sid, c in sorted(_raw(data_dir).items(), key=lambda kv: int(re.sub(r"\D", "", kv[0]) or 0)):
        conv = Conversation(sid, (c["speaker_a"], c["speaker_b"]))
        n = 1
        while f"session_{n}" in c:
            if c[f"session_{n}"]:
                at = conv.sessions[n] = _date(c[f"session_{n}_date_time"])
                for t in c[f"session_{n}"]:
                    s, k = map(int, re.fullmatch(r"D(\d+):(\d+)", t["dia_id"]).groups())
                    text = f"{t['speaker']}: {t['text']}"
                    if t.get("blip_caption"):
                        text += f" [shares {t['blip_caption']}]"
                    conv.turns.append(Turn(s, k, t["speaker"], text, at))
            n += 1
        known = {(t.session_no, t.turn_no) for t in conv.turns}
        for q in c["qa"]:
            if q.get("category") == 5:
                continue
            ev = frozenset((int(a), int(b)) for e in q.get("evidence", []) for a, b in re.findall(r"D(\d+):(\d+)", e))
            ev &= known  # a few evidence ids name no turn
            if ev:
                conv.questions.append(Question(q["question"], int(q["category"]), ev))
        convs.append(conv)
    return convs
