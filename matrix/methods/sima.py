"""`sima`: DPO on the model's own greedy and sampled answers, ranked by the model itself (REFERENCE §1.3).

Step 1 is two shared generate stages: `greedy` (the same one GT-DPO, nSFT and SeVa's chosen use) and
`sampled` (temperature 0.8, top-p 0.9). Step 2 is the self-critic, run here inside construct: the
BASE MODEL ITSELF (never a rule) reads the image and a critic prompt holding the question, the ground
truth and both answers (response 1 = the sampled one, response 2 = the greedy one, as SIMA orders
them), judges object, relation and attribute accuracy and ends with a verdict `[[1]]` or `[[2]]`,
parsed as SIMA does (the last `[[...]]`). "1" -> chosen = sampled, rejected = greedy; "2" -> the
reverse; anything else drops the sample, counted. Identical answers are kept, as SIMA keeps them
(`params.drop_equal: true` drops them instead).

The critic prompt has SIMA's structure (instruction, three criteria, two in-context examples, the task)
in our own words (`params.critic_examples`, default true). The tiny world's base model cannot read it
(512 positions): it learns a short zero-shot form from `critic_examples` (the bootstrap mix), which
the tiny specs ask for with `critic_examples: false`. That short form and the reply format live in
`matrix.world.critic`, beside the conversations that teach them, so the synthetic world needs no method.
"""
from __future__ import annotations

import copy

from matrix.benchmarks.replies import parse_verdict
from matrix.world.critic import critic_prompt as short_prompt
from matrix.methods.base import METHODS, Env, Item, Method, Responses, preference_example, question_items

# SIMA's critic prompt (llava/sima/prompt_for_critic.py) is: an instruction, three numbered criteria
# (objects, relationships, attributes, each judged against the ground truth), two worked examples (question,
# ground truth, two responses, a reason, the verdict in [[k]], one example per verdict), then the task in
# the same fields; every field has its newlines removed. Ours has that structure in our own words.
ICL_CRITERIA = (
    ("Objects", "does the answer mention objects the ground truth does not have, or describe the ones it has "
                "wrongly? Prefer the answer with fewer such mistakes."),
    ("Relations", "does the answer place the objects relative to each other as the ground truth does? Prefer "
                  "the answer that misstates fewer relations."),
    ("Attributes", "does the answer give the objects' colours, sizes, counts and other properties as the ground "
                   "truth does? Prefer the answer with fewer wrong attributes."),
)
ICL_EXAMPLES = (
    ("What is the man holding?",
     "The man is holding a red umbrella over his head while he walks along a wet street.",
     "He is holding a red umbrella to keep the rain off while walking down the street.",
     "He is holding a black briefcase and a folded newspaper under his arm.",
     "Answer 1 names the red umbrella that the ground truth describes. Answer 2 invents a briefcase and a "
     "newspaper, which the ground truth does not mention, and misses the umbrella.", 1),
    ("Describe the scene in detail.",
     "Two dogs lie on a green sofa next to a window, and a tall lamp stands on the left of the sofa.",
     "Three cats sit on a red sofa by the window, and a lamp stands to the right of the sofa.",
     "Two dogs are resting on a green couch beside a window, with a tall lamp to the left of the couch.",
     "Answer 1 has the wrong animals and count, the wrong colour of the sofa and the lamp on the wrong side. "
     "Answer 2 agrees with the ground truth on the objects, their colours and their positions.", 2),
)


def _field(text: str) -> str:
    return text.replace("\n", "")  # as SIMA's prompt_for_critic.py does to every field


def _icl_case(question: str, truth: str, answer1: str, answer2: str) -> str:
    return (f"Question: [{_field(question)}]\nGround truth: [{_field(truth)}]\n"
            f"Answer 1: [{_field(answer1)}]\nAnswer 2: [{_field(answer2)}]\nJudgement:\n")


def critic_prompt(question: str, ground_truth: str, answer1: str, answer2: str, examples: bool = False) -> str:
    """The self-critic's user text (the image placeholder is added by the model handle). `examples`: SIMA's
    structure with two in-context examples (the method's default); without: a short zero-shot prompt (the
    one the tiny world's base model learns in its bootstrap mix, `critic_qa`)."""
    if examples:
        criteria = " ".join(f"{i}. {name}: {what}" for i, (name, what) in enumerate(ICL_CRITERIA, 1))
        shots = "".join(f"Example {i}:\n" + _icl_case(q, t, a1, a2) + f"Reason: {why} Better answer: [[{k}]].\n"
                        for i, (q, t, a1, a2, why, k) in enumerate(ICL_EXAMPLES, 1))
        return ("You are given a question about the image, its ground-truth answer and two answers an AI "
                "assistant wrote while looking at the image. Read both answers closely, check each against the "
                "ground truth, and pick the one that agrees with it better. Weigh these points: "
                f"{criteria}\n{shots}Your task:\n" + _icl_case(question, ground_truth, answer1, answer2))
    return short_prompt(question, ground_truth, answer1, answer2)



def parse_critic(text: str | None) -> int | None:
    """1 or 2 from the last `[[...]]` of the critic's reply; None for anything else."""
    return parse_verdict(text, (1, 2))



@METHODS.register("sima")
class SIMA(Method):
    id = "sima"
    objective = "dpo"
    responses = ("greedy", "sampled")
    needs = ("model",)
    version = "2"  # the critic prompt carries SIMA's in-context examples
    # scripts/run_dpo.sh: LoRA 128/256, lr 1e-7, 3 epochs, cosine, warmup 0.03, per-device bs 1 on
    # 8 GPUs (global 8), ZeRO-2, bf16, length 2048, beta 0.1 (trl default); the projector at its own lr
    # 2e-5 (--mm_projector_lr, run_dpo.sh:8, a parameter group in llava/train/llava_trainer.py).
    defaults = {
        "lr": 1e-7, "epochs": 3, "batch_size": 8, "micro_batch_size": 1, "warmup_ratio": 0.03,
        "weight_decay": 0.0, "max_grad_norm": 1.0, "scheduler": "cosine", "max_length": 2048, "seed": 42,
        "bf16": True, "lora": {"r": 128, "alpha": 256, "dropout": 0.05}, "train_projector": True,
        "deepspeed": {"stage": 2}, "beta": 0.1, "projector_lr": 2e-5, "reference": "adapters_off",
        # tool/dpo_trainer.py (its patched trl DPOTrainer): rejected answers scored by _get_noisy_batch_logps
        "rejected_logps": "top_other_token",
    }
    # llava/sima/generate_samples.py: greedy and sampled decodes both with max_new_tokens=1024.
    generation_defaults = {"max_new_tokens": 1024}

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
        examples = bool(params.get("critic_examples", True))  # SIMA's two in-context examples
        replies: list[str] = []
        for start in range(0, len(ready), 256):
            chunk = ready[start : start + 256]
            prompts = [critic_prompt(it.question, it.answer, sampled[it.item_id], greedy[it.item_id], examples)
                       for it in chunk]
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
