"""`sima`: DPO on the model's own greedy and sampled answers, ranked by the model itself (REFERENCE §1.3).

Step 1 is two shared generate stages: `greedy` (the same one GT-DPO, nSFT and SeVa's chosen use) and
`sampled` (temperature 0.8, top-p 0.9). Step 2 is the self-critic, run here inside construct: the
BASE MODEL ITSELF (never a rule) reads the image and a critic prompt holding the question, the ground
truth and both answers (response 1 = the sampled one, response 2 = the greedy one, as SIMA orders
them), judges object, relation and attribute accuracy and ends with a verdict `[[1]]` or `[[2]]`,
parsed as SIMA does (the last `[[...]]`). "1" -> chosen = sampled, rejected = greedy; "2" -> the
reverse; anything else drops the sample, counted. Identical answers are kept, as SIMA keeps them
(`params.drop_equal: true` drops them instead).

The critic prompt is ours. A real LLaVA follows it zero-shot (SIMA adds two in-context examples; ours
asks for the verdict format directly); the tiny world's base model learns it from the bootstrap mix's
critic task. Prompt and reply formats live in `matrix.world.critic`, beside the conversations that
teach them, so the synthetic world needs no method.
"""
from __future__ import annotations

import copy

from benchmarks.replies import parse_verdict
from matrix.world.critic import critic_prompt
from methods.base import METHODS, Env, Item, Method, Responses, preference_example, question_items


def parse_critic(text: str | None) -> int | None:
    """1 or 2 from the last `[[...]]` of the critic's reply; None for anything else."""
    return parse_verdict(text, (1, 2))



@METHODS.register("sima")
class SIMA(Method):
    id = "sima"
    objective = "dpo"
    responses = ("greedy", "sampled")
    needs = ("model",)
    version = "1"
    # scripts/run_dpo.sh: LoRA 128/256, lr 1e-7, 3 epochs, cosine, warmup 0.03, per-device bs 1 on
    # 8 GPUs (global 8), ZeRO-2, bf16, length 2048, beta 0.1 (trl default). Its projector lr 2e-5 is a
    # separate param group our trainer does not have: the projector trains at lr here (deviation).
    defaults = {
        "lr": 1e-7, "epochs": 3, "batch_size": 8, "micro_batch_size": 1, "warmup_ratio": 0.03,
        "weight_decay": 0.0, "max_grad_norm": 1.0, "scheduler": "cosine", "max_length": 2048, "seed": 42,
        "bf16": True, "lora": {"r": 128, "alpha": 256, "dropout": 0.05}, "train_projector": True,
        "deepspeed": {"stage": 2}, "beta": 0.1,
    }

    def construct(self, records: list[dict], responses: Responses, params: dict, env: Env | None = None):
        greedy, sampled = responses.get("greedy", {}), responses.get("sampled", {})
        items = question_items(records)
        ready: list[Item] = [it for it in items if it.item_id in greedy and it.item_id in sampled]
        stats = {"records": len(records), "items": len(items), "missing_response": len(items) - len(ready),
                 "judged": 0, "verdict_1": 0, "verdict_2": 0, "dropped_unparseable": 0, "identical": 0,
                 "dropped_equal": 0}
        if not ready:
            return [], {**stats, "examples": 0}
        if env is None:
            raise ValueError("sima: the self-critic needs the base model (construct env)")
        handle = env.model()
        # SIMA decodes the critic greedily with max_new_tokens 4096; generation stops at the end of the
        # reply, so the cap only bounds a rambling critic. Images are loaded a chunk at a time.
        max_new = int(params.get("critic_max_new_tokens", 1024))
        batch = params.get("critic_batch_size") or env.batch_size  # default: generation.batch_size (or "auto")
        replies: list[str] = []
        for start in range(0, len(ready), 256):
            chunk = ready[start : start + 256]
            prompts = [critic_prompt(it.question, it.answer, sampled[it.item_id], greedy[it.item_id]) for it in chunk]
            images = [env.image(it.image) for it in chunk]
            replies += handle.generate(images, prompts, max_new_tokens=max_new, batch_size=batch, do_sample=False)
        stats["judged"] = len(replies)
        drop_equal = bool(params.get("drop_equal", False))
        examples, verdicts = [], []
        for it, reply in zip(ready, replies):
            verdict = parse_critic(reply)
            verdicts.append({"id": it.item_id, "reply": reply, "verdict": verdict})
            if verdict is None:
                stats["dropped_unparseable"] += 1
                continue
            stats[f"verdict_{verdict}"] += 1
            s, g = sampled[it.item_id].strip(), greedy[it.item_id].strip()
            chosen, rejected = (s, g) if verdict == 1 else (g, s)
            if chosen == rejected:
                stats["identical"] += 1
                if drop_equal:
                    stats["dropped_equal"] += 1
                    continue
            examples.append(preference_example(it, chosen, rejected))
        stats["examples"] = len(examples)
        self.trace = copy.deepcopy(verdicts)  # the critic replies, kept beside the examples by the stage
        return examples, stats
