"""Which training and generation settings each method row gets, and from where: library default < the
method's paper default < the spec-wide block (only where the method sets nothing, unless forced) < the
row's own; `matrix plan --settings` shows them; the shipped paper specs train every row as its paper."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from matrix.cli import app
from matrix.errors import SpecError
from matrix.settings import FORCED, LIBRARY, PAPER, ROW, SPEC, resolved_generation, resolved_training
from matrix.specfile import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"
runner = CliRunner()

BASE = """\
name: t
base_models:
  tiny: {family: tiny}
datasets:
  d: {source: synthetic, kind: ocrvqa, size: 50}
scales: [20]
benchmarks:
  - {id: pope, synthetic: 5}
"""


def spec(tmp_path, text):
    p = tmp_path / "spec.yaml"
    p.write_text(BASE + textwrap.dedent(text))
    return load_spec(p)


def value_source(settings: dict, key: str) -> tuple:
    return settings[key]["value"], settings[key]["source"]


def test_a_spec_wide_value_fills_in_only_what_the_method_leaves_unset(tmp_path):
    s = spec(tmp_path, """\
        methods: [sima, {id: seva, overrides: {beta: 0.5}}]
        training: {lr: 0.5, gradient_checkpointing: true, max_length: 99}
        """)
    hp, where = resolved_training(s, "sima")
    assert hp.lr == 1e-7 and value_source(where, "lr") == (1e-7, PAPER)  # SIMA's own lr wins over the spec's
    assert value_source(where, "gradient_checkpointing") == (True, SPEC)  # SIMA sets none: the spec's applies
    assert value_source(where, "max_length") == (2048, PAPER)
    assert value_source(where, "lora.r") == (128, PAPER)
    assert value_source(where, "kl_lambda") == (0.0, LIBRARY)  # set by nobody: TrainingSpec's default
    _, where = resolved_training(s, "seva")
    assert value_source(where, "beta") == (0.5, ROW) and value_source(where, "lr") == (2e-6, PAPER)


def test_force_true_applies_every_key_of_the_block_and_force_list_only_the_named(tmp_path):
    s = spec(tmp_path, """\
        methods: [sima, {id: csr, overrides: {lr: 0.25}}]
        training: {force: true, lr: 0.5, lora: {r: 4}}
        """)
    _, where = resolved_training(s, "sima")
    assert value_source(where, "lr") == (0.5, FORCED)
    assert value_source(where, "lora.r") == (4, FORCED)
    assert value_source(where, "lora.alpha") == (256, PAPER)  # forcing lora.r leaves SIMA's alpha
    assert value_source(resolved_training(s, "csr")[1], "lr") == (0.25, ROW)  # a row's own beats a forced one
    s = spec(tmp_path, """\
        methods: [sima]
        training: {force: [lora.r], lr: 0.5, lora: {r: 4}, gradient_checkpointing: true}
        """)
    _, where = resolved_training(s, "sima")
    assert value_source(where, "lr") == (1e-7, PAPER)  # not forced
    assert value_source(where, "lora.r") == (4, FORCED)
    assert value_source(where, "gradient_checkpointing") == (True, SPEC)


def test_a_spec_that_disables_lora_counts_as_setting_the_methods_lora_keys(tmp_path):
    s = spec(tmp_path, "methods: [seva]\ntraining: {lora: null}\n")
    assert resolved_training(s, "seva")[0].lora.r == 1024  # SeVa sets lora: the unforced null does not apply
    s = spec(tmp_path, "methods: [seva]\ntraining: {lora: null, force: [lora]}\n")
    hp, where = resolved_training(s, "seva")
    assert hp.lora is None and value_source(where, "lora") == (None, FORCED)


def test_generation_follows_the_same_precedence(tmp_path):
    s = spec(tmp_path, """\
        methods: [sima, gt-dpo, nsft, {id: seva, generation: {max_new_tokens: 7}}]
        generation: {max_new_tokens: 64, batch_size: 4}
        """)
    # SIMA's generate_samples.py decodes 1024 new tokens; SeVa's step 2 (GT-DPO reuses it) 512.
    assert value_source(resolved_generation(s, "sima")[1], "max_new_tokens") == (1024, PAPER)
    assert value_source(resolved_generation(s, "gt-dpo")[1], "max_new_tokens") == (512, PAPER)
    assert value_source(resolved_generation(s, "nsft")[1], "max_new_tokens") == (64, SPEC)  # paper silent
    assert value_source(resolved_generation(s, "seva")[1], "max_new_tokens") == (7, ROW)
    assert value_source(resolved_generation(s, "sima")[1], "batch_size") == (4, SPEC)
    s = spec(tmp_path, "methods: [sima]\ngeneration: {force: true, max_new_tokens: 64}\n")
    assert value_source(resolved_generation(s, "sima")[1], "max_new_tokens") == (64, FORCED)


@pytest.mark.parametrize("text, key, says", [
    ("methods: [sima]\ntraining: {force: [lr]}\n", "training", "force names 'lr', which this block does not set"),
    ("methods: [sima]\ntraining: {force: [speed], lr: 1}\n", "training", "'speed', which is not a setting"),
    ("methods: [{id: sima, overrides: {force: true}}]\n", "methods[0].overrides", "'force' belongs in the spec-wide"),
    ("methods: [sima]\ngeneration: {force: [max_new_tokens]}\n", "generation", "does not set"),
])
def test_bad_force_is_a_spec_error_naming_the_key(tmp_path, text, key, says):
    p = tmp_path / "spec.yaml"
    p.write_text(BASE + text)
    with pytest.raises(SpecError) as e:
        load_spec(p)
    (prob,) = e.value.problems
    assert prob.key == key and says in prob.message


def test_set_on_the_command_line_follows_the_same_rule(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text(BASE + "methods: [sima]\n")
    assert resolved_training(load_spec(p, ["training.lr=0.5"]), "sima")[0].lr == 1e-7
    forced = load_spec(p, ["training.lr=0.5", "training.force=true"])
    assert value_source(resolved_training(forced, "sima")[1], "lr") == (0.5, FORCED)


def test_plan_settings_json_shows_every_row_with_sources():
    result = runner.invoke(app, ["plan", str(SPECS / "table1.yaml"), "--no-check-files", "--settings",
                                 "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.output)}
    assert list(rows) == ["baseline", "gt-dpo", "seva", "sima", "cont-sft", "nsft"]
    assert "training" not in rows["baseline"] and "generation" not in rows["baseline"]
    sima = rows["sima"]["training"]
    # umd-huang-lab/SIMA scripts/run_dpo.sh: --learning_rate 1e-7, --num_train_epochs 3, zero2.json,
    # --per_device_train_batch_size 1 with accumulation 1 on 8 GPUs (a global batch of 8).
    assert value_source(sima, "lr") == (1e-7, PAPER) and value_source(sima, "epochs") == (3, PAPER)
    assert value_source(sima, "deepspeed.stage") == (2, PAPER) and value_source(sima, "batch_size") == (8, PAPER)
    assert value_source(sima, "projector_lr") == (2e-5, PAPER)  # run_dpo.sh: --mm_projector_lr 2e-5
    assert value_source(rows["sima"]["generation"], "max_new_tokens") == (1024, PAPER)
    seva = rows["seva"]["training"]
    # Kevinz-code/SeVa run/llava1.5_lora_our_ocr8k_diffu800_text8k_diffu800.sh: lr 2e-6, 8 x 16, zero3,
    # LoRA 1024/2048; the noise step: data/step2/..._diffusion_step800.sh (paper Sec. 4.1: 800 for 7B).
    assert value_source(seva, "lr") == (2e-6, PAPER) and value_source(seva, "batch_size") == (128, PAPER)
    assert value_source(seva, "deepspeed.stage") == (3, PAPER)
    assert value_source(seva, "lora.r") == (1024, PAPER) and value_source(seva, "lora.alpha") == (2048, PAPER)
    gen = rows["seva"]["generation"]
    assert gen["modes"] == ["greedy", "augmented"]
    assert value_source(gen, "augmented.augmentation_params.step") == (800, PAPER)


def test_plan_settings_text_and_bad_format(tmp_path):
    result = runner.invoke(app, ["plan", str(SPECS / "table5.yaml"), "--no-check-files", "--settings"])
    assert result.exit_code == 0, result.output
    assert "csr-iter3 (csr, objective dpo)" in result.output and "method paper default" in result.output
    bad = runner.invoke(app, ["plan", str(SPECS / "table5.yaml"), "--no-check-files", "--format", "json"])
    assert bad.exit_code == 2 and "--format json applies to --settings" in bad.output


# ---- the shipped paper specs: every row trains with its paper's settings ------------------------------
# SeVa's schedule. Kevinz-code/SeVa run/llava1.5_lora_our_ocr8k_diffu800_text8k_diffu800.sh (".sh:N") and
# seva/train_dpo_ours.py ("ours.py:N"); the SeVa paper, Sec. 4.1 "Training details" (SeVa §4.1).
SEVA = {
    "lr": 2e-6,                # .sh:32 --learning_rate 2e-6; SeVa §4.1
    "epochs": 1,               # .sh:24 --num_train_epochs 1; SeVa §4.1
    "batch_size": 128,         # .sh:25,27 16 per device x accumulation 1 x 8 GPUs; SeVa §4.1 "batch size 128"
    "micro_batch_size": 16,    # .sh:25 --per_device_train_batch_size 16
    "warmup_ratio": 0.03,      # .sh:34 --warmup_steps 0, so ours.py:145's default warmup_ratio 0.03 applies
    "weight_decay": 0.0,       # .sh:33; SeVa §4.1
    "scheduler": "cosine",     # .sh:35
    "max_length": 2048,        # .sh:38 --model_max_length 2048
    "seed": 42,                # ours.py:150
    "bf16": True,              # .sh:22
    "lora.r": 1024,            # .sh:7 --lora_r 1024; SeVa §4.1 "lora r ... 1024"
    "lora.alpha": 2048,        # .sh:7 --lora_alpha 2048
    "lora.dropout": 0.05,      # ours.py lora_dropout default 0.05 (not passed by .sh)
    "train_projector": True,   # LLaVA unfreezes the projector after LoRA; .sh:7's --mm_projector_lr 0 is ignored
    "deepspeed.stage": 3,      # .sh:8 zero3.json; SeVa §4.1 "ZeRO stage-3"
    "kl_lambda": 0.0,
    "reference": "precomputed",  # SFT: no reference (the KL variants' top-k reference is precomputed)
    "rejected_logps": "rejected_tokens",  # standard DPO: seva/trainer/llava_dpo_trainer.py _get_batch_logps
    "projector_lr": None,      # .sh:7 --mm_projector_lr 0 is a ScriptArguments field the plain Trainer never
                               # reads (REFERENCE §1.1): the projector trains at lr
}
SEVA_DPO = {**SEVA, "beta": 0.1,  # .sh:44 --beta 0.1; SeVa §4.1 "β ... fixed as 0.1"
            # seva/trainer/llava_dpo_trainer.py:43-50,94-100: the frozen reference LLM reads the embeddings the
            # POLICY's projector makes (prepare_inputs_labels_for_multimodal): LoRA off, current projector
            "reference": "adapters_off"}
# nSFT paper Sec. 4.1 ("Training", papers/000 l.237): continual SFT and nSFT use ZeRO-3, batch size 128,
# lr 2e-6, weight decay 0, cosine; GT-DPO "with the same experiment setting as SeVa". The rest of the
# schedule (LoRA 1024/2048, length 2048) is SeVa's, for parity (REFERENCE §1.5: not stated in the paper).
# The KL variants' lambda 0.1 is ours (the paper gives none; LLaVA-RLHF's KL coefficient).
KL = {**SEVA, "kl_lambda": 0.1}
# SIMA: umd-huang-lab/SIMA scripts/run_dpo.sh (line numbers of that file); beta: trl's DPOTrainer default.
SIMA = {
    "lr": 1e-7,                # :31 --learning_rate 1e-7
    "epochs": 3,               # :23 --num_train_epochs 3
    "batch_size": 8,           # :24,26 1 per device x accumulation 1 x 8 GPUs
    "micro_batch_size": 1,     # :24
    "warmup_ratio": 0.03,      # :33
    "weight_decay": 0.0,       # :32
    "scheduler": "cosine",     # :34
    "max_length": 2048,        # :38
    "seed": 42,                # HF TrainingArguments' default seed
    "bf16": True,              # :21
    "lora.r": 128,             # :8 --lora_r 128
    "lora.alpha": 256,         # :8 --lora_alpha 256
    "lora.dropout": 0.05,      # LLaVA's TrainingArguments default (not passed)
    "train_projector": True,
    "deepspeed.stage": 2,      # :9 zero2.json
    "beta": 0.1,
    "kl_lambda": 0.0,
    "projector_lr": 2e-5,      # :8 --mm_projector_lr 2e-5 (llava/train/llava_trainer.py's parameter groups)
    "reference": "adapters_off",  # tool/dpo_trainer.py: ref_model None, the PEFT model under disable_adapter()
    "rejected_logps": "top_other_token",  # tool/dpo_trainer.py: rejected logps by _get_noisy_batch_logps
}
# CSR: YiyangZhou/CSR scripts/run_train.sh (line numbers of that file).
CSR = {
    **SIMA,
    "epochs": 1,               # :20 --num_train_epochs 1
    "max_length": 1024,        # :35 --model_max_length 1024
    # :5 LoRA 128/256 and --mm_projector_lr 2e-5, :6 zero2.json, :21,23 1 per device x 1 (x 8 GPUs),
    # :28 lr 1e-7, :30 warmup 0.03; train_csr/dpo_trainer.py: the reference under disable_adapter(),
    # standard log-probs for both answers
    "rejected_logps": "rejected_tokens",
}
PAPER_TRAINING = {"seva": SEVA_DPO, "gt-dpo": SEVA_DPO, "cont-sft": SEVA, "nsft": SEVA, "nsft-no-codebook": SEVA,
                  "nsft-no-chosen": SEVA, "cont-sft-kl": KL, "nsft-kl": KL, "sima": SIMA, "csr": CSR}
# Generation: SIMA llava/sima/generate_samples.py max_new_tokens=1024; SeVa data/step2/generate_with_aug.py
# max_new_tokens=512 (GT-DPO is SeVa's step 2 without augmentation). nSFT's paper gives none: the library's 512.
PAPER_GENERATION = {"seva": 512, "gt-dpo": 512, "sima": 1024, "nsft": 512, "nsft-no-codebook": 512,
                    "nsft-no-chosen": 512, "nsft-kl": 512}
PAPER_SPECS = sorted(p for p in SPECS.glob("*.yaml") if "tiny" not in p.name and p.name != "quickstart.yaml")


def test_the_paper_specs_are_the_ones_this_table_covers():
    assert [p.stem for p in PAPER_SPECS] == ["fig4"] + [f"table{k}" for k in range(1, 10)]


@pytest.mark.parametrize("path", PAPER_SPECS, ids=lambda p: p.stem)
def test_every_row_of_a_paper_spec_trains_with_its_papers_settings(path):
    s = load_spec(path)
    checked = 0
    for row in s.method_ids():
        plugin = s.method(row).plugin
        if plugin in ("baseline", "external"):
            continue
        assert plugin in PAPER_TRAINING, f"{path.name}: row {row} ({plugin}) has no entry in the table"
        _, where = resolved_training(s, row)
        got = {k: where[k]["value"] for k in PAPER_TRAINING[plugin]}
        assert got == PAPER_TRAINING[plugin], f"{path.name}: {row}"
        assert all(where[k]["source"] in (PAPER, LIBRARY) for k in PAPER_TRAINING[plugin]), f"{path.name}: {row}"
        if plugin in PAPER_GENERATION:
            assert resolved_generation(s, row)[0].max_new_tokens == PAPER_GENERATION[plugin], f"{path.name}: {row}"
        checked += 1
    assert checked


def test_sevas_generate_stages_ask_bare_questions_with_its_template_and_others_are_untouched():
    from matrix import api

    planned = api.plan(load_spec(SPECS / "table1.yaml"))
    gen = [s for s in planned.graph.stages.values() if s.kind == "generate" and "ocrvqa" in s.label]
    seva = [s.params for s in gen if "strip" in s.params]
    assert {p["mode"] for p in seva} == {"greedy", "augmented"}
    assert all(p["template"] == "llava_v1" and p["strip"] == ["Answer the question using a single word or phrase."]
               for p in seva)
    others = [s.params for s in gen if "strip" not in s.params]
    # GT-DPO and nSFT share a 512-token greedy stage, SIMA has its 1024-token greedy and sampled ones
    assert sorted((p["mode"], p["max_new_tokens"]) for p in others) == [("greedy", 512), ("greedy", 1024),
                                                                        ("sampled", 1024)]
    assert not any("template" in p for p in others)  # the model's own template is not keyed
