import pytest

from matrix.methods.base import METHODS, Item, question_items

RECORD = {
    "id": "b7",
    "image": "ocr/7.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nWho wrote this book?\nAnswer the question using a single word or phrase."},
        {"from": "gpt", "value": "Ann Lee"},
        {"from": "human", "value": "Is this a cookbook?"},
        {"from": "gpt", "value": "No"},
        {"from": "human", "value": "What is the title?\n<image>"},
        {"from": "gpt", "value": "Soup"},
    ],
}


def test_question_items_flattens_a_multi_turn_record():
    items = question_items([RECORD, {"id": 3, "image": "x.png", "conversations": [{"from": "human", "value": "<image>\nQ?"}]}])
    assert items == [
        Item("b7:0", "b7", "ocr/7.jpg", "Who wrote this book?\nAnswer the question using a single word or phrase.", "Ann Lee"),
        Item("b7:1", "b7", "ocr/7.jpg", "Is this a cookbook?", "No"),
        Item("b7:2", "b7", "ocr/7.jpg", "What is the title?", "Soup"),
    ]  # a question without an answer gives no item


def test_question_items_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="duplicate record id"):
        question_items([RECORD, RECORD])


def test_registry_and_paper_defaults():
    assert {"baseline", "cont-sft", "gt-dpo"} <= set(METHODS.names())
    gt = METHODS.get("gt-dpo")
    assert (gt.objective, gt.responses) == ("dpo", ("greedy",))
    assert gt.defaults["beta"] == 0.1 and gt.defaults["lr"] == 2e-6 and gt.defaults["batch_size"] == 128
    assert gt.defaults["lora"] == {"r": 1024, "alpha": 2048, "dropout": 0.05}
    assert gt.defaults["deepspeed"] == {"stage": 3} and gt.defaults["bf16"] is True
    assert METHODS.get("cont-sft").objective == "sft" and "beta" not in METHODS.get("cont-sft").defaults
    assert METHODS.get("baseline").objective == "none"
    assert METHODS.get("baseline")().construct([RECORD], {}, {}) == ([], {"records": 1, "examples": 0})


def test_gt_dpo_pairs_ground_truth_with_greedy_and_drops_equal_pairs():
    greedy = {"b7:0": "Bob Ray", "b7:1": " No\n", "b7:2": "Stew"}  # b7:1 equals the truth after stripping
    other = {"id": "c1", "image": "c.png", "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]}
    examples, stats = METHODS.get("gt-dpo")().construct([RECORD, other], {"greedy": greedy}, {})
    # "The same setting as SeVa": its pair list twice over (SeVa's train_dpo_ours.py:213,218)
    assert stats == {"records": 2, "items": 4, "pairs": 2, "examples": 4, "dropped_equal": 1, "missing_response": 1}
    assert examples[2:] == examples[:2]
    assert examples[0] == {
        "id": "b7:0",
        "image": "ocr/7.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWho wrote this book?\nAnswer the question using a single word or phrase."},
            {"from": "gpt", "value": "Ann Lee"},
        ],
        "rejected_conversations": [
            {"from": "human", "value": "<image>\nWho wrote this book?\nAnswer the question using a single word or phrase."},
            {"from": "gpt", "value": "Bob Ray"},
        ],
    }
    assert examples[1]["conversations"][0]["value"] == "<image>\nWhat is the title?"
    kept, stats = METHODS.get("gt-dpo")().construct([RECORD], {"greedy": greedy}, {"drop_equal": False, "repeat": 1})
    assert stats["dropped_equal"] == 0 and len(kept) == 3


def test_cont_sft_keeps_whole_records():
    examples, stats = METHODS.get("cont-sft")().construct([RECORD, {"id": "e", "conversations": []}], {}, {})
    assert examples == [{"id": "b7", "image": "ocr/7.jpg", "conversations": RECORD["conversations"]}]
    assert examples[0]["conversations"] is not RECORD["conversations"]
    assert stats == {"records": 2, "examples": 1, "dropped_no_answer": 1}
