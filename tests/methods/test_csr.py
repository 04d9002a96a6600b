"""CSR: pair selection on fixed scores (worked by hand), parameter checks, the sentence search's tree."""
from __future__ import annotations

import pytest

from matrix.methods.csr import CSR, select_pair


def node(parent, text, score, clip, final):
    return {"parent": parent, "text": text, "score": score, "clip": clip, "final": final}


# The tree: prompt -> A (self 0.9, clip 1.0), B (self 0.5, clip 3.0); A -> A1 (final; self 0.8, clip 2.0),
# A2 (final; self 0.7, clip 5.0); B -> B1 (final; self 0.4, clip 0.5).
TREE = [
    node(None, "", 0.0, None, False),
    node(0, "A.", 0.9, 1.0, False),
    node(0, "B.", 0.5, 3.0, False),
    node(1, "A1.", 0.8, 2.0, True),
    node(1, "A2.", 0.7, 5.0, True),
    node(2, "B1.", 0.4, 0.5, True),
]


def test_pair_selection_equals_the_hand_computed_choice():
    # Ranks among siblings, (i+1)/n with 1/n the best:
    #   A: self 1/2, clip 2/2   B: self 2/2, clip 1/2   A1: self 1/2, clip 2/2   A2: self 2/2, clip 1/2
    #   B1: self 1/1, clip 1/1
    # alpha 0.9, per sentence 0.1*self + 0.9*clip: A 0.95, B 0.55, A1 0.95, A2 0.55, B1 1.0
    # Path means (length counts the prompt node, 3): A-A1 1.90/3 = 0.633, A-A2 1.50/3 = 0.500,
    # B-B1 1.55/3 = 0.517 -> chosen A-A2 (lowest), rejected A-A1 (highest).
    assert select_pair(TREE, alpha=0.9) == ("A. A2.", "A. A1.")
    # alpha 0 (self-reward alone): A 0.5, B 1.0, A1 0.5, A2 1.0, B1 1.0 -> A-A1 1/3, A-A2 1.5/3, B-B1 2/3
    assert select_pair(TREE, alpha=0.0) == ("A. A1.", "B. B1.")


def test_a_sentence_too_short_to_score_takes_its_self_rank():
    tree = [node(None, "", 0.0, None, False), node(0, "Yes.", 0.2, 9.0, True), node(0, "", 0.9, None, True)]
    # "" (final, no clip): clip rank := self rank 1/2 -> 0.5; "Yes.": self 2/2, clip 1/2 -> 0.1 + 0.45 = 0.55.
    assert select_pair(tree, alpha=0.9) == ("", "Yes.")


def test_no_pair_without_two_distinct_complete_paths():
    one = [node(None, "", 0.0, None, False), node(0, "A.", 0.1, 1.0, True), node(0, "B.", 0.0, 2.0, False)]
    assert select_pair(one) is None  # B is open (pruned): only one complete path
    same = [node(None, "", 0.0, None, False), node(0, "A.", 0.1, 1.0, True), node(0, "A.", 0.0, 2.0, True)]
    assert select_pair(same) is None


@pytest.mark.parametrize("params, fragment", [
    ({"alpha": 2}, "alpha"),
    ({"search": {"branch": 0}}, "positive integers"),
    ({"search": {"keep": 3}}, "at least 4"),
    ({"search": {"width": 3}}, "search takes"),
    ({"beams": 3}, "unknown params"),
])
def test_bad_params_are_named(params, fragment):
    assert any(fragment in p for p in CSR.check_params(params))


def test_sentence_search_tree_shape():
    """On the shipped tiny model: every node but the prompt has a parent earlier in the list, each
    expanded node has `branch` children, and at most 3 nodes of a level stay open (keep 4: the best one
    and the worst two)."""
    from PIL import Image

    from matrix.models.families.tiny import SHIPPED
    from matrix.models.handle import load
    from matrix.methods.csr import sentence_trees

    handle = load(SHIPPED)
    img = Image.new("RGB", (48, 48), (240, 240, 240))
    tree = sentence_trees(handle, [img], ["Describe the image in detail."],
                          {"branch": 3, "keep": 4, "step_tokens": 24, "max_chars": 400, "max_levels": 4})[0]
    assert tree[0]["parent"] is None
    kids: dict[int, int] = {}
    for i, n in enumerate(tree[1:], 1):
        assert 0 <= n["parent"] < i
        kids[n["parent"]] = kids.get(n["parent"], 0) + 1
    assert set(kids.values()) == {3}
    assert len(kids) <= 1 + 3 * 3  # the prompt, then at most 3 open nodes on each of 3 further levels
    assert any(n["final"] for n in tree)


def test_sentence_search_stops_at_csrs_character_rule_and_continues_a_cut_step():
    """CSR (inference_csr/sample.py:69): a path ends at EOS or when its decoded text, prompt included,
    reaches max_chars; a step cut at step_tokens without a full stop is continued, not ended."""
    from PIL import Image

    from matrix.models.families.tiny import SHIPPED
    from matrix.models.handle import load
    from matrix.methods.csr import sentence_trees

    handle = load(SHIPPED)
    img = Image.new("RGB", (48, 48), (240, 240, 240))
    question = "Describe the image in detail."
    prompt_chars = len(handle.template.prompt("<image>\n" + question))
    # Any text at all reaches prompt + 1 characters: every first step is final, the tree one level deep.
    tree = sentence_trees(handle, [img], [question], {"branch": 3, "keep": 4, "step_tokens": 24,
                                                     "max_chars": prompt_chars + 1, "max_levels": 8})[0]
    assert len(tree) == 1 + 3 and all(n["final"] for n in tree[1:])
    # One token per step: the steps rarely end a sentence, yet the search goes on below them.
    tree = sentence_trees(handle, [img], [question], {"branch": 3, "keep": 4, "step_tokens": 1,
                                                     "max_chars": 10_000, "max_levels": 3})[0]
    cut = [i for i, n in enumerate(tree) if n["parent"] == 0 and not n["text"].endswith(".") and not n["final"]]
    assert cut and any(n["parent"] in cut for n in tree)
