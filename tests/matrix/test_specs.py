"""Every shipped spec validates and plans without its data present; the paper-experiment specs plan
to the stage counts worked out by hand from their grids (which stages are shared, which are not)."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix import api
from matrix.errors import SpecError, UserError
from matrix.specfile import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"

# kind -> count, by hand. SeVa asks its own greedy questions (short-answer instruction stripped, llava_v1
# template: matrix/methods/seva.py), so its greedy stage is its own, not the one GT-DPO and nSFT share.
# table6: 1 base model; data = 1 dataset + 4 benchmarks; one 10k subset; the three nSFT variants share
#   one greedy generation but construct differently; 4 cells (baseline + 3) x 4 benchmarks.
# table7: data = 1 + 3; generation greedy (nSFT) + SeVa's greedy and augmented; five trained
#   methods; 6 cells x 3 benchmarks.
# fig4: data = 1 + 9; four nested subsets; greedy at 512 new tokens (GT-DPO, nSFT), SeVa's greedy and
#   augmented, greedy and sampled at 1024 (SIMA's generate_samples.py), once each on 10k; 5 trained methods x
#   4 scales; 21 cells (baseline once) x (9 benchmarks + an answer stage for each judged one, MMVet and
#   MMHal) = 231.
# table8: 4 cells; data = 1 dataset + 1 MMHal (both entries name the one plug-in); generation greedy
#   (GT-DPO, nSFT) + SeVa's greedy and augmented; per cell one answer stage shared by the two
#   entries and one scoring stage per judge: 4 x 3 = 12.
# table2: models = base + SeVa-7B + SIMA-7B (external); data = 3 sources + the mixture + the 665k SFT
#   mix (nSFT's sft_mix, a construct input) + 10 benchmarks
#   (MMB and MMB-CN are two plug-ins); subsets: each source's 5k (the mixture's parts) + the mixture's
#   15k; one nSFT cell (the sources themselves are excluded from the grid); 4 cells x 10 benchmarks +
#   an answer stage per cell for each judged one (MM-Vet, SHR): 40 + 8.
# table3: data = 3 datasets + 3 held-out slices (one per in-domain entry); 3 subsets; greedy (GT-DPO,
#   nSFT) + SeVa's greedy and augmented per dataset; 3 x 3 trained cells; each cell answers and is scored on its own
#   source's slice only (2 stages), the baseline on all three: 9 x 2 + 3 x 2 = 24.
# table5: models = base + PPO (external, a whole model); data = 1 + 4; CSR's three iterations each
#   sample sentence trees from their own start model (base, merge 1, merge 2) + nSFT's greedy = 4
#   generate; construct/train 3 + 1; 2 merges (iterations 1 and 2 into the start of 2 and 3);
#   6 cells (baseline, PPO, CSR x 3, nSFT) x 4 benchmarks.
# table4: 2 base models; generate greedy (nSFT) + SeVa's greedy and augmented per model; cont-SFT's construction reads no model
#   answers, so both models share it: construct 1 + 2 (SeVa) + 2 (nSFT); train 3 x 2; 8 cells x 4.
EXPECTED = {
    "table2": {"model": 3, "data": 15, "subset": 4, "generate": 1, "construct": 1, "train": 1, "evaluate": 48},
    "table4": {"model": 2, "data": 5, "subset": 1, "generate": 6, "construct": 5, "train": 6, "evaluate": 32},
    "table3": {"model": 1, "data": 6, "subset": 3, "generate": 9, "construct": 9, "train": 9, "evaluate": 24},
    "table5": {"model": 2, "data": 5, "subset": 1, "generate": 4, "construct": 4, "train": 4, "merge": 2,
               "evaluate": 24},
    "table8": {"model": 1, "data": 2, "subset": 1, "generate": 3, "construct": 3, "train": 3, "evaluate": 12},
    "table6": {"model": 1, "data": 5, "subset": 1, "generate": 1, "construct": 3, "train": 3, "evaluate": 16},
    "table7": {"model": 1, "data": 4, "subset": 1, "generate": 3, "construct": 5, "train": 5, "evaluate": 18},
    "fig4": {"model": 1, "data": 10, "subset": 4, "generate": 5, "construct": 20, "train": 20, "evaluate": 231},
}


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_plans(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative run folders (outputs, `from_run` sources) do not exist here
    spec = load_spec(path)
    if any(m.params.get("from_run") for m in spec.methods):
        # An external row read from another run plans once that run exists; until then a clear error.
        with pytest.raises(UserError, match="holds no run .* run its spec first"):
            api.plan(spec)
        return
    planned = api.plan(spec)
    assert planned.graph.stages
    if path.stem in EXPECTED:
        assert dict(planned.graph.counts()) == EXPECTED[path.stem]


def test_another_judge_scores_the_stored_answers(tmp_path):
    """Judged benchmarks answer in a stage of their own that the judge is not part of: switching the
    MMHal judge (ChatGPT-3.5 -> GPT-4, the paper's Table 8) re-plans only MMHal's scoring stages, and
    nothing that nSFT's construction judge (the spec's `judge`) feeds."""
    first = api.plan(load_spec(SPECS / "table9.yaml"))
    text = (SPECS / "table9.yaml").read_text()
    assert "judge: {model: gpt-3.5-turbo}" in text
    (tmp_path / "t9.yaml").write_text(text.replace("judge: {model: gpt-3.5-turbo}", "judge: {model: gpt-4-0613}"))
    second = api.plan(load_spec(tmp_path / "t9.yaml"))
    changed = [s for s in first.graph.stages.values() if s.key not in second.graph.stages]
    assert {s.params.get("benchmark") for s in changed} == {"mmhal"}
    assert all(s.kind == "evaluate" and "shards" in s.params for s in changed)
    assert len(changed) == len(first.graph.cells)  # one scoring stage per cell; no answer stage re-planned
    # The construction judge is another matter: it writes nSFT's data, so nSFT retrains.
    third = api.plan(load_spec(SPECS / "table9.yaml", ["judge.model=gpt-4o"]))
    retrained = {s.label for s in first.graph.stages.values() if s.key not in third.graph.stages and s.kind == "train"}
    assert retrained and all(" nsft/" in f" {label}" for label in retrained)


def test_a_grading_template_file_rescores_without_regenerating(tmp_path):
    """`benchmarks[].template` swaps the judge's grading template: part of the scoring stage's key (its
    content), not of the answer stage's; a benchmark without a template to replace refuses one."""
    text = (SPECS / "table9.yaml").read_text()
    template = tmp_path / "mmhal-official.txt"
    template.write_text("Contents: {}\\nQuestion: {}\\nStandard: {}\\nResponse: {}\\nRating:")
    (tmp_path / "a.yaml").write_text(text.replace("judge: {model: gpt-3.5-turbo}}",
                                                  f"judge: {{model: gpt-3.5-turbo}}, template: {template}}}"))
    first = api.plan(load_spec(SPECS / "table9.yaml"))
    with_template = api.plan(load_spec(tmp_path / "a.yaml"))
    changed = [s for s in with_template.graph.stages.values() if s.key not in first.graph.stages]
    assert changed and all(s.params.get("benchmark") == "mmhal" and "shards" in s.params for s in changed)
    assert all(s.params["template"]["path"] == str(template) for s in changed)
    template.write_text("Another template: {} {} {} {}")
    edited = api.plan(load_spec(tmp_path / "a.yaml"))
    assert {s.key for s in changed}.isdisjoint(edited.graph.stages)  # new content, new scoring stages
    (tmp_path / "b.yaml").write_text(text.replace("{id: sqa, path: /data/llava/eval/scienceqa}",
                                                  f"{{id: sqa, path: /data/llava/eval/scienceqa, template: {template}}}"))
    with pytest.raises(SpecError, match="has no grading template"):
        load_spec(tmp_path / "b.yaml")
