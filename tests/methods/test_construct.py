"""SeVa, nSFT and SIMA construction on small records with known ground truth."""
import random

import pytest

from matrix.methods.base import METHODS, Env
from matrix.methods.nsft import TURNS, balance_yes_no, judge_prompt, parse_conversation
from matrix.world.critic import critic_examples
from matrix.methods.sima import critic_prompt
from matrix.methods.sima import parse_critic

SUFFIX = "\nAnswer the question using a single word or phrase."
OCR = {
    "id": "o1",
    "image": "images/o1.png",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat color is the circle at the top left?" + SUFFIX},
        {"from": "gpt", "value": "red"},
        {"from": "human", "value": "Is there a star in the image?" + SUFFIX},
        {"from": "gpt", "value": "No"},
        {"from": "human", "value": "How many squares are there?" + SUFFIX},
        {"from": "gpt", "value": "2"},
    ],
}
CAP = {
    "id": "c1",
    "image": "images/c1.png",
    "conversations": [
        {"from": "human", "value": "<image>\nDescribe this image in detail."},
        {"from": "gpt", "value": "A red circle at the top left and a blue square in the center of the image."},
    ],
}
GOOD_REPLY = """Errors: the square is blue, not green; there is no star.
User: What color is the square?
GPT: The square is blue.
User: Is there a star in the image?
GPT: No, there is no star.
User: Is there a circle at the top left?
GPT: Yes, a red circle.
User: Where is the square?
GPT: It is in the center.
User: Is the circle red?
GPT: Yes."""


# ---- SeVa --------------------------------------------------------------------------------------------
def test_seva_pairs_clean_with_augmented_and_drops_equal_pairs():
    clean = {"o1:0": "red", "o1:1": "No", "o1:2": "2"}
    noisy = {"o1:0": "blue", "o1:1": "No</s>", "o1:2": "3\n"}  # o1:1 equal after stripping </s>
    examples, stats = METHODS.get("seva")().construct([OCR], {"greedy": clean, "augmented": noisy},
                                                      {"repeat": 1, "questions_per_image": None})
    assert stats == {"records": 1, "items": 3, "pairs": 2, "examples": 2, "dropped_equal": 1, "missing_response": 0}
    assert [e["id"] for e in examples] == ["o1:0", "o1:2"]
    assert examples[0]["conversations"][1]["value"] == "red"
    assert examples[0]["rejected_conversations"][1]["value"] == "blue"
    assert examples[1]["rejected_conversations"][1]["value"] == "3"
    doubled, stats = METHODS.get("seva")().construct([OCR], {"greedy": clean, "augmented": noisy},
                                                     {"questions_per_image": None})
    assert len(doubled) == 4 and stats["pairs"] == 2  # SeVa duplicates its pair list
    # SeVa's step 1 (make_ocrvqa_data.py:26) drops the short-answer instruction: the pairs ask bare questions
    assert examples[0]["conversations"][0]["value"] == "<image>\nWhat color is the circle at the top left?"
    assert examples[0]["rejected_conversations"][0]["value"] == examples[0]["conversations"][0]["value"]
    assert not any("single word" in t["value"] for e in doubled for t in e["conversations"] + e["rejected_conversations"])
    kept, _ = METHODS.get("seva")().construct([OCR], {"greedy": clean, "augmented": noisy},
                                              {"strip_suffix": False, "questions_per_image": None})
    assert kept[0]["conversations"][0]["value"].endswith(SUFFIX)


def test_seva_asks_at_most_two_questions_per_image():
    """make_ocrvqa_data.py:28: `random.sample(questions, min(len(questions), 2))` per image."""
    clean = {"o1:0": "red", "o1:1": "Yes", "o1:2": "2"}
    noisy = {"o1:0": "blue", "o1:1": "No", "o1:2": "3"}  # every pair differs
    other = {**OCR, "id": "o2", "conversations": OCR["conversations"][:2]}
    responses = {"greedy": {**clean, "o2:0": "red"}, "augmented": {**noisy, "o2:0": "pink"}}
    examples, stats = METHODS.get("seva")().construct([OCR, other], responses, {"repeat": 1})
    assert stats["items"] == 3 and stats["pairs"] == 3  # two of o1's three questions, o2's only one
    assert sum(e["id"].startswith("o1:") for e in examples) == 2 and examples[-1]["id"] == "o2:0"
    again, _ = METHODS.get("seva")().construct([OCR, other], responses, {"repeat": 1})
    assert again == examples  # seeded per record
    everything, stats = METHODS.get("seva")().construct([OCR], responses, {"repeat": 1, "questions_per_image": None})
    assert stats["pairs"] == 3


def test_seva_defaults_and_generation_params():
    seva = METHODS.get("seva")
    assert seva.responses == ("greedy", "augmented") and seva.objective == "dpo"
    assert seva.defaults["beta"] == 0.1 and seva.defaults["lr"] == 2e-6
    assert seva.defaults["lora"] == {"r": 1024, "alpha": 2048, "dropout": 0.05}
    assert seva.generation_defaults == {"max_new_tokens": 512, "template": "llava_v1"}  # generate_with_aug.py:90,159
    m = seva()
    strip = {"strip": ["Answer the question using a single word or phrase."]}
    assert m.generation_params("greedy", {}, "tiny") == strip
    assert m.generation_params("greedy", {"strip_suffix": False}, "tiny") == {}
    assert m.generation_params("augmented", {}, "llava-7b") == {**strip, "augmentation": "diffusion",
                                                                "augmentation_params": {"step": 800}}
    assert m.generation_params("augmented", {}, "llava-13b")["augmentation_params"] == {"step": 500}
    assert m.generation_params("augmented", {"augmentation": "flip", "strip_suffix": False}, "x") == {
        "augmentation": "flip", "augmentation_params": {}}
    with pytest.raises(KeyError, match="unknown augmentation"):
        m.generation_params("augmented", {"augmentation": "blur"}, "x")


# ---- nSFT, rule path -----------------------------------------------------------------------------------
def test_nsft_rule_path_two_pairs_per_wrong_answer_none_for_right():
    greedy = {"o1:0": "blue", "o1:1": "no.", "o1:2": "3"}  # wrong, right (case/period), wrong
    examples, stats = METHODS.get("nsft")().construct([OCR], {"greedy": greedy}, {})
    assert stats["rule_records"] == 1 and stats["wrong_answers"] == 2 and stats["rule_turns"] == 4
    assert stats["judge_prompts"] == 0
    (ex,) = examples
    gt, extra = ex["conversations"][:6], ex["conversations"][6:]
    assert gt == OCR["conversations"]  # the ground truth conversation, unchanged, first
    assert [t["value"] for t in extra] == [
        'What color is the circle at the top left? Is the answer "red"? Please answer yes or no.', "Yes",
        'What color is the circle at the top left? Is the answer "blue"? Please answer yes or no.', "No",
        'How many squares are there? Is the answer "2"? Please answer yes or no.', "Yes",
        'How many squares are there? Is the answer "3"? Please answer yes or no.', "No",
    ]
    assert [t["from"] for t in extra] == ["human", "gpt"] * 4


def test_nsft_rule_path_all_right_adds_nothing_and_no_chosen_drops_it():
    right = {"o1:0": "Red", "o1:1": "No", "o1:2": "2"}
    examples, stats = METHODS.get("nsft")().construct([OCR], {"greedy": right}, {})
    assert examples[0]["conversations"] == OCR["conversations"] and stats["rule_turns"] == 0
    examples, stats = METHODS.get("nsft-no-chosen")().construct([OCR], {"greedy": right}, {})
    assert examples == [] and stats["dropped_empty"] == 1
    examples, _ = METHODS.get("nsft-no-chosen")().construct([OCR], {"greedy": {**right, "o1:0": "blue"}}, {})
    turns = examples[0]["conversations"]
    assert len(turns) == 4 and turns[0]["value"].startswith("<image>\nWhat color")  # only G(...), image placeholder first


# ---- nSFT, LLM path ------------------------------------------------------------------------------------
def test_parse_conversation_accepts_five_pairs_and_rejects_malformed():
    pairs = parse_conversation(GOOD_REPLY)
    assert len(pairs) == TURNS == 5
    assert pairs[0] == ("What color is the square?", "The square is blue.")
    assert parse_conversation(GOOD_REPLY.rsplit("\nUser:", 1)[0]) is None  # four pairs
    assert parse_conversation(GOOD_REPLY.replace("GPT: It is in the center.\n", "")) is None  # two questions in a row
    assert parse_conversation(GOOD_REPLY + "\nUser: And?") is None  # a question left unanswered
    assert parse_conversation(GOOD_REPLY.replace("GPT: Yes.", "GPT:")) is None  # empty answer
    assert parse_conversation("I cannot help with that.") is None and parse_conversation(None) is None


def test_balance_erases_no_answers_until_they_do_not_outnumber_yes():
    pairs = [("a", "No."), ("b", "Yes"), ("c", "No, it is red."), ("d", "It is red."), ("e", "no")]
    kept, erased = balance_yes_no(pairs, random.Random(0))
    # 3 No vs 1 Yes: two No pairs erased; order of the rest unchanged
    assert erased == 2 and len(kept) == 3
    assert sum(a.lower().startswith("no") for _, a in kept) == 1 and ("b", "Yes") in kept and ("d", "It is red.") in kept
    assert balance_yes_no(parse_conversation(GOOD_REPLY), random.Random(0))[1] == 0  # 2 Yes, 1 No: kept


def test_judge_prompt_codebook_and_ablation():
    with_q = judge_prompt("Describe.", "GT text", "model text")
    without = judge_prompt("Describe.", "GT text", "model text", codebook=False)
    for words in ("Object identity", "Object attributes", "Object actions", "Object location", "Relative position",
                  "Surroundings", "Scene and events", "Predicted motion", "Reasoning"):
        assert words in with_q and words not in without
    assert "GT text" in without and "model text" in without


class _Judge:
    """A stand-in for matrix.benchmarks.judge.Judge that returns scripted replies (the real client is tested below)."""

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []

    def complete(self, prompts, temperature=0.0, max_tokens=1024, parse=None):
        from matrix.benchmarks.judge import JudgeReply

        self.prompts += prompts
        return [JudgeReply(self.replies.pop(0), 0, 0, False) for _ in prompts]


def test_nsft_llm_path_appends_five_turns_and_drops_malformed():
    cap2 = {**CAP, "id": "c2", "image": "images/c2.png"}
    judge = _Judge([GOOD_REPLY, "Errors: none\nUser: Only one question?\nGPT: Yes."])
    greedy = {"c1:0": "A red circle and a green square and a star.", "c2:0": "A red circle."}
    examples, stats = METHODS.get("nsft")().construct([CAP, cap2], {"greedy": greedy}, {}, Env(judge=judge))
    assert stats["llm_records"] == 2 and stats["judge_prompts"] == 2 and stats["dropped_unparseable"] == 1
    assert "A red circle and a green square and a star." in judge.prompts[0] and "Object identity" in judge.prompts[0]
    c1, c2 = examples
    assert c1["conversations"][:2] == CAP["conversations"] and len(c1["conversations"]) == 2 + 2 * 5
    assert c1["conversations"][2] == {"from": "human", "value": "What color is the square?"}
    assert c2["conversations"] == cap2["conversations"]  # reply dropped: ground truth only
    with pytest.raises(ValueError, match="need the judge"):
        METHODS.get("nsft")().construct([CAP], {"greedy": greedy}, {})
    assert METHODS.get("nsft")().uses_judge({}) and not METHODS.get("nsft")().uses_judge({"path": "rule"})


def test_nsft_judge_cache_makes_a_second_run_call_nothing(tmp_path):
    from matrix.benchmarks.judge import Judge
    from matrix.spec import JudgeSpec
    from tests.judge_server import JudgeServer

    greedy = {"c1:0": "A green square."}
    with JudgeServer(lambda body: GOOD_REPLY) as server:
        spec = JudgeSpec(model="judge-x", base_url=server.url)
        first, s1 = METHODS.get("nsft")().construct([CAP], {"greedy": greedy}, {}, Env(judge=Judge(spec, tmp_path)))
        assert len(server.requests) == 1
        judge = Judge(spec, tmp_path)
        second, s2 = METHODS.get("nsft")().construct([CAP], {"greedy": greedy}, {}, Env(judge=judge))
        assert len(server.requests) == 1 and judge.usage()["calls"] == 0 and judge.usage()["cached_hits"] == 1
    assert first == second and len(first[0]["conversations"]) == 12


# ---- SIMA ----------------------------------------------------------------------------------------------
def test_parse_critic():
    assert parse_critic("Answer 2 is right. [[2]]") == 2
    assert parse_critic("[[2]] no wait [[1]]") == 1  # the last one counts, as SIMA's split does
    for bad in ("[[3]]", "Answer 1", "[[1", "[[one]]", "", None):
        assert parse_critic(bad) is None


class _Handle:
    """Records what the critic was asked; replies are scripted (the real model is exercised in test_sima_real)."""

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def generate(self, images, questions, max_new_tokens, batch_size=16, do_sample=False, **kw):
        self.calls.append((images, questions, do_sample))
        return self.replies[: len(questions)]


def test_sima_orders_by_verdict_and_drops_unparseable(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images/o1.png")
    greedy = {"o1:0": "red", "o1:1": "Yes", "o1:2": "2"}
    sampled = {"o1:0": "blue", "o1:1": "No", "o1:2": "2"}
    handle = _Handle(["blah [[1]]", "I think [[2]]", "no verdict"])
    env = Env(image_root=tmp_path, loaded=handle)
    examples, stats = METHODS.get("sima")().construct([OCR], {"greedy": greedy, "sampled": sampled}, {}, env)
    assert stats["verdict_1"] == 1 and stats["verdict_2"] == 1 and stats["dropped_unparseable"] == 1
    # verdict 1 -> chosen = sampled (response 1); verdict 2 -> chosen = greedy
    assert examples[0]["conversations"][1]["value"] == "blue" and examples[0]["rejected_conversations"][1]["value"] == "red"
    assert examples[1]["conversations"][1]["value"] == "Yes" and examples[1]["rejected_conversations"][1]["value"] == "No"
    images, prompts, do_sample = handle.calls[0]
    assert len(images) == 3 and do_sample is False
    assert prompts[0] == critic_prompt("What color is the circle at the top left?" + SUFFIX, "red", "blue", "red",
                                       examples=True)
    # SIMA's structure: instruction, three criteria, two worked examples (one per verdict), then the task,
    # every field without newlines (prompt_for_critic.py)
    task = prompts[0].split("Your task:\n")[1]
    assert task == ("Question: [What color is the circle at the top left?Answer the question using a single word "
                    "or phrase.]\nGround truth: [red]\nAnswer 1: [blue]\nAnswer 2: [red]\nJudgement:\n")
    head = prompts[0].split("Your task:")[0]
    assert [head.count(f"Example {k}:") for k in (1, 2)] == [1, 1] and "[[1]]" in head and "[[2]]" in head
    assert all(f"{k}. {name}:" in head for k, name in ((1, "Objects"), (2, "Relations"), (3, "Attributes")))
    assert parse_critic(head) == 2  # the examples' verdicts precede the task: only the reply's last one counts
    handle = _Handle(["[[1]]"] * 3)
    METHODS.get("sima")().construct([OCR], {"greedy": greedy, "sampled": sampled}, {"critic_examples": False},
                                    Env(image_root=tmp_path, loaded=handle))
    zero_shot = handle.calls[0][1][0]
    assert "Example 1" not in zero_shot and "Ground truth: red" in zero_shot and "Answer 1: blue" in zero_shot


def test_critic_examples_teach_the_verdict_of_the_right_answer():
    from matrix.world.scene import draw_scene

    rng = random.Random(0)
    scenes = [draw_scene(rng) for _ in range(40)]
    convs = critic_examples(scenes, random.Random(1))
    assert len(convs) == 40
    verdicts = set()
    for conv in convs:
        human, gpt = conv[0]["value"], conv[1]["value"]
        truth = human.split("Ground truth: ")[1].split("\n")[0]
        a1 = human.split("Answer 1: ")[1].split("\n")[0]
        v = parse_critic(gpt)
        verdicts.add(v)
        assert (a1 == truth) == (v == 1) and human.startswith("<image>\n")
    assert verdicts == {1, 2}
    assert any("in detail" in c[0]["value"] for c in convs) and any("one-sentence" in c[0]["value"] for c in convs)
    assert critic_examples([scenes[0].to_json()], random.Random(2))[0][0]["from"] == "human"


def test_nsft_auto_path_by_suffix_or_short_answers():
    long_title = {"id": "b", "image": "b.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is the title of this book?" + SUFFIX},
        {"from": "gpt", "value": "A Very Long Guide To Travelling Europe"}]}
    examples, stats = METHODS.get("nsft")().construct([long_title], {"greedy": {"b:0": "Cooking Soup"}}, {})
    assert stats["rule_records"] == 1 and stats["rule_turns"] == 2  # the suffix marks short-answer data
    with pytest.raises(ValueError, match="need the judge"):
        METHODS.get("nsft")().construct([long_title], {"greedy": {"b:0": "Cooking Soup"}}, {"path": "llm"})
    _, stats = METHODS.get("nsft")().construct([CAP], {"greedy": {"c1:0": "x"}}, {"path": "rule"})
    assert stats["rule_records"] == 1 and stats["judge_prompts"] == 0


def test_registered_methods_and_their_defaults():
    names = set(METHODS.names())
    assert {"seva", "sima", "nsft", "nsft-no-codebook", "nsft-no-chosen", "nsft-kl", "cont-sft-kl", "gt-dpo"} <= names
    sima = METHODS.get("sima")
    assert sima.responses == ("greedy", "sampled") and sima.needs == ("model",)
    assert (sima.defaults["lr"], sima.defaults["epochs"], sima.defaults["lora"]["r"], sima.defaults["beta"]) == (1e-7, 3, 128, 0.1)
    for m in ("nsft", "nsft-no-codebook", "nsft-no-chosen", "nsft-kl"):
        assert METHODS.get(m).objective == "sft" and METHODS.get(m).responses == ("greedy",)
    assert METHODS.get("nsft-kl").defaults["kl_lambda"] == METHODS.get("cont-sft-kl").defaults["kl_lambda"] == 0.1
    assert "kl_lambda" not in METHODS.get("nsft").defaults


def test_nsft_writes_one_conversation_per_image_from_all_its_questions():
    """Appendix B.1 ("5 conversations per image"): a multi-turn LLaVA-150k record gets one judge call
    holding every question, and five constructed turns, not five per question."""
    multi = {"id": "m1", "image": "images/m1.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is on the table?"},
        {"from": "gpt", "value": "A red circle and a blue square."},
        {"from": "human", "value": "Where is the square?"},
        {"from": "gpt", "value": "The blue square is in the center."},
        {"from": "human", "value": "Describe the scene."},
        {"from": "gpt", "value": "A red circle at the top left and a blue square in the center."},
    ]}
    judge = _Judge([GOOD_REPLY])
    greedy = {"m1:0": "A green square.", "m1:1": "At the top.", "m1:2": "A star."}
    examples, stats = METHODS.get("nsft")().construct([multi], {"greedy": greedy}, {}, Env(judge=judge))
    assert stats["judge_prompts"] == 1 and len(judge.prompts) == 1
    prompt = judge.prompts[0]
    for q, truth, said in (("What is on the table?", "A red circle and a blue square.", "A green square."),
                           ("Where is the square?", "The blue square is in the center.", "At the top."),
                           ("Describe the scene.", "A red circle at the top left", "A star.")):
        assert f"QUESTION: {q}" in prompt and truth in prompt and f"MODEL ANSWER: {said}" in prompt
    (ex,) = examples
    assert len(ex["conversations"]) == 6 + 2 * TURNS  # the record's 3 turns + ONE five-pair conversation


def test_reference_judge_reads_every_exchange_of_an_image_prompt():
    from matrix.benchmarks.reference_judge import ReferenceJudge
    from matrix.methods.nsft import image_prompt

    reply = ReferenceJudge()._grade(image_prompt([
        ("What is at the top left?", "A red circle at the top left.", "A red circle."),
        ("What else?", "A blue square in the center.", "A green star."),
    ]))
    pairs = parse_conversation(reply)
    assert pairs is not None and ("Is there a green star in the image?", "No.") in pairs
    assert reply.startswith("Errors: green star")
