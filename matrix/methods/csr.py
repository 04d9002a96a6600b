"""`csr`: Calibrated Self-Rewarding (CSR, Zhou et al. 2024), iterative DPO on the model's own sentences.

One iteration (REFERENCE §1.4; the repository's step1-3 scripts, reimplemented):

1. Sampling (`sentences` generation mode, `sentence_trees`): for each prompt, a sentence-level search
   tree. Every open node is extended by `branch` candidate next sentences (beam search over tokens,
   `branch` beams and `branch` returned, each ending at "." or the end of the answer, at most
   `step_tokens` new tokens: a step cut there continues at the next level, as CSR's); a candidate's
   self-reward is its parent's plus its beam score (the length-normalised log-likelihood). Of the new open nodes, the best `keep // 2 - 1` and the worst
   `keep // 2` by self-reward stay open when there are at least `keep` of them, else all of them (CSR
   keeps best and worst, so the tree holds both kinds of path). A node is final when it ended the
   answer, or the prompt and answer reached `max_chars` characters (CSR's length rule), or the tree
   `max_levels` levels.
2. Calibration (construct): every sentence of at least 4 characters is scored by an image-text
   similarity model (`clip`: a local CLIP directory; `tiny` is the shapes world's, `matrix.models.tiny_clip`).
3. Pairs (`select_pair`): among each node's children, ranks by self-reward and by CLIP score,
   normalised `(i + 1) / n` (1/n = best); a path's score is the sum over its sentences of
   `(1 - alpha) * rank + alpha * clip_rank`, divided by its length counting the prompt node; the
   lowest-scoring complete path is chosen, the highest rejected. A sentence too short to score takes its
   self-reward rank as its CLIP rank (decided here; CSR skips such sentences when scoring).
4. DPO on the pairs (standard summed log-probabilities, beta 0.1), then the next iteration starts from
   the merged model: a spec row with `iterations: k` gives k rows, chained in the stage graph.

Deviation: CSR's token-level search is group beam search (5 groups, diversity penalty 3.0); group beam
search is not in transformers 5's core, so candidates come from plain beam search (`branch` beams).
"""
from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Any

from matrix.models.conversation import IMAGE_PLACEHOLDER
from matrix.methods.base import METHODS, Env, Method, Responses, preference_example, question_items

MIN_SCORED_CHARS = 4  # CSR's step 2 leaves shorter sentences unscored
# inference_csr/sample.py: 5 beams, keep 5, 70 new tokens per step, and a path ends at EOS or when the
# decoded text, prompt included, reaches --max_length 1024 characters (`len(tokenizer.decode(sequence))`,
# sample.py:69). CSR has no level limit; ours (`max_levels`) cannot bind before the character rule does,
# since every open step adds at least one character.
SEARCH_DEFAULTS = {"branch": 5, "keep": 5, "step_tokens": 70, "max_chars": 1024, "max_levels": 1024}
PARAM_DEFAULTS = {"alpha": 0.9, "clip": "tiny", "search": SEARCH_DEFAULTS}

# CSR's DPO schedule (scripts/run_train.sh, REFERENCE §1.4): LoRA 128/256 with the projector trained at
# its own lr 2e-5 (:5 --mm_projector_lr), ZeRO-2, lr 1e-7, one epoch, length 1024, beta 0.1; batch 1 per
# GPU on 8 GPUs (a global batch of 8).
CSR_SCHEDULE: dict[str, Any] = {
    "lr": 1e-7, "epochs": 1, "batch_size": 8, "micro_batch_size": 1, "warmup_ratio": 0.03,
    "weight_decay": 0.0, "max_grad_norm": 1.0, "scheduler": "cosine", "max_length": 1024, "seed": 42,
    "bf16": True, "lora": {"r": 128, "alpha": 256, "dropout": 0.05}, "train_projector": True,
    "deepspeed": {"stage": 2}, "beta": 0.1, "projector_lr": 2e-5, "reference": "adapters_off",
}


# ---- 1. sampling ---------------------------------------------------------------------------------
def sentence_trees(handle, images: list, questions: list[str], search: dict, seed: int | None = None) -> list[list[dict]]:
    """One search tree per (image, question): a list of nodes `{"parent", "text", "score", "final"}`,
    node 0 the prompt (parent None), every other node one sentence (`text` without the ones before)."""
    import torch

    s = {**SEARCH_DEFAULTS, **search}
    tok = handle.tokenizer
    period = tok.convert_tokens_to_ids(".")
    if period is None or period == tok.unk_token_id:
        raise ValueError("CSR's sentence search needs a '.' token in the tokenizer")
    stop = [tok.eos_token_id, period]
    if seed is not None:
        torch.manual_seed(seed)
    handle.model.eval()
    trees = []
    for image, question in zip(images, questions):
        vision = {k: v.to(handle.model.device) for k, v in handle.vision_inputs([image]).items()}
        nodes: list[dict] = [{"parent": None, "text": "", "score": 0.0, "final": False}]
        shown = question if IMAGE_PLACEHOLDER in question else f"{IMAGE_PLACEHOLDER}\n{question}"
        prompt_chars = len(handle.template.prompt(shown))  # the prompt as CSR decodes it: one image placeholder
        open_nodes = [0]
        for level in range(s["max_levels"]):
            new_open = []
            for parent in open_nodes:
                prefix = _path_text(nodes, parent)
                ids = handle.encode_prompt(question, image.size, answer_start=prefix)
                for text, score, ended in _continue(handle, ids, vision, s["branch"], s["step_tokens"], stop):
                    chars = prompt_chars + len(" " + " ".join(p for p in (prefix, text) if p))
                    # CSR's rule (sample.py:69): final at EOS or at max_chars decoded characters; a step that
                    # reached step_tokens without a full stop is NOT final: the next level continues it.
                    final = ended or chars >= s["max_chars"] or level == s["max_levels"] - 1 or not text
                    nodes.append({"parent": parent, "text": text, "score": nodes[parent]["score"] + score,
                                  "final": final})
                    if not final:
                        new_open.append(len(nodes) - 1)
            new_open.sort(key=lambda i: nodes[i]["score"], reverse=True)
            k = s["keep"]
            open_nodes = new_open[: k // 2 - 1] + new_open[-(k // 2):] if len(new_open) >= k else new_open
            if not open_nodes:
                break
        trees.append([{key: n[key] for key in ("parent", "text", "score", "final")} for n in nodes])
    return trees


def _continue(handle, ids: list[int], vision: dict, branch: int, max_new: int, stop: list[int]):
    """`branch` beam-search continuations of `ids` up to the next sentence end or `max_new` tokens:
    (text, score, ended), `ended` when the model ended its answer (EOS)."""
    import torch

    tok = handle.tokenizer
    x = torch.tensor([ids], device=handle.model.device)
    with torch.no_grad():
        out = handle.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **vision,
                                    do_sample=False, num_beams=branch, num_return_sequences=branch,
                                    max_new_tokens=max_new, eos_token_id=stop, pad_token_id=tok.pad_token_id,
                                    output_scores=True, return_dict_in_generate=True)
    result = []
    for seq, score in zip(out.sequences[:, x.shape[1]:].tolist(), out.sequences_scores.tolist()):
        while seq and seq[-1] == tok.pad_token_id:
            seq.pop()
        ended = tok.eos_token_id in seq
        text = tok.decode([t for t in seq if t != tok.eos_token_id], skip_special_tokens=True).strip()
        result.append((text, float(score), ended))
    return result


def _path_text(nodes: list[dict], i: int) -> str:
    parts = []
    while nodes[i]["parent"] is not None:
        parts.append(nodes[i]["text"])
        i = nodes[i]["parent"]
    return " ".join(p for p in reversed(parts) if p)


# ---- 3. pairs ------------------------------------------------------------------------------------
def select_pair(nodes: list[dict], alpha: float = 0.9) -> tuple[str, str] | None:
    """(chosen, rejected) answer texts of a scored tree (nodes with `clip`: a score or None), or None
    when it has fewer than two distinct complete paths. See the module doc for the rule."""
    children: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        if n["parent"] is not None:
            children[n["parent"]].append(i)
    rank: dict[int, float] = {}
    clip_rank: dict[int, float] = {}
    for kids in children.values():
        m = len(kids)
        for pos, i in enumerate(sorted(kids, key=lambda i: -nodes[i]["score"])):
            rank[i] = (pos + 1) / m
        scored = [i for i in kids if nodes[i].get("clip") is not None]
        for pos, i in enumerate(sorted(scored, key=lambda i: -nodes[i]["clip"])):
            clip_rank[i] = (pos + 1) / m
        for i in kids:
            clip_rank.setdefault(i, rank[i])
    paths: list[tuple[float, int]] = []  # (mean score, final node), in depth-first order

    def walk(i: int, total: float, length: int) -> None:
        if i != 0:
            total += (1 - alpha) * rank[i] + alpha * clip_rank[i]
        if nodes[i]["final"]:
            paths.append((total / length, i))
            return
        for c in children.get(i, []):
            walk(c, total, length + 1)

    walk(0, 0.0, 1)
    if len(paths) < 2:
        return None
    ordered = sorted(paths, key=lambda p: p[0])
    chosen, rejected = _path_text(nodes, ordered[0][1]), _path_text(nodes, ordered[-1][1])
    return None if chosen == rejected else (chosen, rejected)


# ---- the plug-in ---------------------------------------------------------------------------------
def clip_path(name: str) -> Path:
    from matrix.models.tiny_clip import ASSET

    return ASSET if name == "tiny" else Path(name).expanduser()


@METHODS.register("csr")
class CSR(Method):
    id = "csr"
    objective = "dpo"
    responses = ("sentences",)
    defaults = copy.deepcopy(CSR_SCHEDULE)
    version = "1"

    @classmethod
    def check_params(cls, params: dict) -> list[str]:
        problems = [f"csr: unknown params {sorted(set(params) - set(PARAM_DEFAULTS))}; known: "
                    f"{', '.join(PARAM_DEFAULTS)}"] if set(params) - set(PARAM_DEFAULTS) else []
        search = params.get("search", {})
        if not isinstance(search, dict) or set(search) - set(SEARCH_DEFAULTS):
            problems.append(f"csr: search takes {', '.join(SEARCH_DEFAULTS)}")
        elif any(not isinstance(v, int) or v < 1 for v in search.values()):
            problems.append("csr: search settings are positive integers")
        elif {**SEARCH_DEFAULTS, **search}["keep"] < 4:
            problems.append("csr: search.keep must be at least 4 (keep // 2 - 1 best and keep // 2 worst paths stay "
                            "open: fewer keeps no best path)")
        if not 0 <= float(params.get("alpha", 0.9)) <= 1:
            problems.append("csr: alpha (the CLIP score's weight) must be in [0, 1]")
        return problems

    def generation_params(self, mode: str, params: dict, base_model: str) -> dict:
        return {"search": {**SEARCH_DEFAULTS, **params.get("search", {})}}

    def input_files(self, params: dict) -> dict[str, Path]:
        return {"clip": clip_path(params.get("clip", "tiny"))}

    def construct(self, records: list[dict], responses: Responses, params: dict, env: Env | None = None):
        from matrix.models.tiny_clip import load, similarity

        if env is None or "clip" not in env.files:
            raise ValueError("csr: construction needs the CLIP model (env.files['clip'])")
        clip = load(env.files["clip"])
        alpha = float(params.get("alpha", PARAM_DEFAULTS["alpha"]))
        trees = responses.get("sentences", {})
        items = question_items(records)
        pairs, missing, no_pair, sentences = [], 0, 0, 0
        for item in items:
            tree = copy.deepcopy(trees.get(item.item_id))
            if not tree:
                missing += 1
                continue
            scored = [i for i, n in enumerate(tree) if i and len(n["text"]) >= MIN_SCORED_CHARS]
            values = similarity(clip, env.image(item.image), [tree[i]["text"] for i in scored]) if item.image else []
            for i, v in zip(scored, values):
                tree[i]["clip"] = v
            sentences += len(scored)
            pair = select_pair(tree, alpha)
            if pair is None:
                no_pair += 1
                continue
            pairs.append(preference_example(item, *pair))
        stats = {"records": len(records), "items": len(items), "pairs": len(pairs), "examples": len(pairs),
                 "no_pair": no_pair, "missing_response": missing, "clip_scored_sentences": sentences}
        return pairs, stats
