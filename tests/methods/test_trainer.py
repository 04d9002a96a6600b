"""Training on a random tiny LLaVA: plain PyTorch (SFT, DPO, full fine-tune) and DeepSpeed ZeRO-2/3 on CPU."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from matrix.models.handle import load
from matrix.methods import checkpoint
from matrix.methods._data import BatchMaker, encode_examples
from matrix.methods.base import METHODS
from matrix.methods.checkpoint import load_trained
from matrix.methods.objectives.losses import sequence_logps, sft_loss
from matrix.methods.trainer import lr_lambda, train, train_model


def _batch(handle, examples, image_root, objective) -> dict:
    """All examples in one padded batch; DPO: the chosen sequences, then the rejected ones."""
    encoded, dropped = encode_examples(handle, examples, objective, 256)
    assert dropped == 0
    seqs = [e[0] for e in encoded] + ([e[1] for e in encoded] if objective == "dpo" else [])
    return BatchMaker(handle, image_root, 256, "cpu", torch.float32)(seqs)


@torch.no_grad()
def _logits(model, batch):
    model.eval()
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"]).logits


def _sft_set_loss(model, handle, examples, image_root) -> float:
    batch = _batch(handle, examples, image_root, "sft")
    return sft_loss(_logits(model, batch), batch["labels"]).item()


def _dpo_margin(model, handle, examples, image_root) -> float:
    """Mean of log p(chosen) − log p(rejected) over the pairs."""
    batch = _batch(handle, examples, image_root, "dpo")
    chosen, rejected = sequence_logps(_logits(model, batch), batch["labels"]).view(2, -1)
    return (chosen - rejected).mean().item()


@pytest.fixture(scope="module")
def sft_run(tiny_world, tmp_path_factory, hp):
    examples, _ = METHODS.get("cont-sft")().construct(tiny_world.records, {}, {})
    out = tmp_path_factory.mktemp("sft")
    result, model = train_model(tiny_world.base, examples, tiny_world.image_root, "sft", hp(), out)
    return examples, out, result, model


def test_sft_lowers_training_loss_and_checkpoint_reloads(tiny_world, sft_run):
    examples, out, result, model = sft_run
    assert result["steps"] == 3 * math.ceil(16 / 8) and result["examples"] == 16
    assert {"wall_s", "peak_mem_mb", "tokens_per_s", "final_loss"} <= set(result) and result["tokens_per_s"] > 0
    log = json.loads((out / checkpoint.TRAIN_LOG).read_text())
    assert len(log["steps"]) == result["steps"] and log["steps"][-1]["loss"] < log["steps"][0]["loss"]
    assert (out / "adapter" / "adapter_config.json").exists()
    saved = load_file(str(out / checkpoint.NON_LORA_FILE))
    assert saved and all(".multi_modal_projector." in k for k in saved)  # LoRA: only the projector

    base = load(tiny_world.base)
    trained = load_trained(tiny_world.base, out)
    before = _sft_set_loss(base.model, base, examples, tiny_world.image_root)
    after = _sft_set_loss(trained.model, trained, examples, tiny_world.image_root)
    assert after < before - 0.3

    batch = _batch(base, examples[:4], tiny_world.image_root, "sft")
    reloaded, in_memory, untouched = _logits(trained.model, batch), _logits(model, batch), _logits(base.model, batch)
    assert torch.allclose(reloaded, in_memory, atol=1e-4)
    assert not torch.allclose(reloaded, untouched, atol=1e-2)
    # the vision tower is frozen; LoRA stays off the CLIP projections
    for (name, p), (_, q) in zip(base.model.named_parameters(), trained.model.named_parameters()):
        if "vision_tower" in name:
            assert torch.equal(p, q), name


def test_dpo_raises_chosen_minus_rejected_margin(tiny_world, tmp_path, hp, wrong_answers):
    examples, stats = METHODS.get("gt-dpo")().construct(tiny_world.records, {"greedy": wrong_answers(tiny_world.records)}, {"repeat": 1})
    assert stats["examples"] == 32
    result = train(tiny_world.base, examples, tiny_world.image_root, "dpo", hp(epochs=2, lr=1e-3), tmp_path)
    assert result["reward_margin_first"] == pytest.approx(0.0, abs=1e-5)  # policy == reference at step 1
    assert result["reward_margin_final"] > 0
    base = load(tiny_world.base)
    trained = load_trained(tiny_world.base, tmp_path)
    before = _dpo_margin(base.model, base, examples, tiny_world.image_root)
    after = _dpo_margin(trained.model, trained, examples, tiny_world.image_root)
    assert after > before + 0.5


def test_full_fine_tune_saves_the_language_model(tiny_world, tmp_path, hp):
    examples, _ = METHODS.get("cont-sft")().construct(tiny_world.records[:8], {}, {})
    train(tiny_world.base, examples, tiny_world.image_root, "sft", hp(lora=None, epochs=1, lr=1e-3), tmp_path)
    assert not (tmp_path / "adapter").exists()
    saved = load_file(str(tmp_path / checkpoint.NON_LORA_FILE))
    assert any(".language_model." in k for k in saved) and any("lm_head" in k for k in saved)
    assert not any("vision_tower" in k for k in saved)
    base, trained = load(tiny_world.base), load_trained(tiny_world.base, tmp_path)
    key = next(k for k in saved if k.endswith("layers.0.mlp.up_proj.weight"))
    assert not torch.equal(base.model.state_dict()[key], trained.model.state_dict()[key])


def test_lr_schedule_warmup_and_decay():
    f = lr_lambda("cosine", warmup=2, total=10)
    assert [f(0), f(1), f(2)] == [0.0, 0.5, 1.0]
    assert f(6) == pytest.approx(0.5) and f(10) == pytest.approx(0.0)
    assert lr_lambda("linear", 0, 4)(2) == 0.5 and lr_lambda("constant", 0, 4)(3) == 1.0


def test_deepspeed_zero2_matches_the_plain_loop(tiny_world, sft_run, tmp_path, hp):
    """Pays DeepSpeed's one-time comm-op compile (~35 s, cached in TORCH_EXTENSIONS_DIR)."""
    examples, plain_out, _, _ = sft_run
    result = train(tiny_world.base, examples, tiny_world.image_root, "sft", hp(deepspeed={"stage": 2}), tmp_path)
    assert result["deepspeed_stage"] == 2
    plain = [s["loss"] for s in json.loads((plain_out / checkpoint.TRAIN_LOG).read_text())["steps"]]
    ds = [s["loss"] for s in json.loads((tmp_path / checkpoint.TRAIN_LOG).read_text())["steps"]]
    assert ds == pytest.approx(plain, abs=1e-3)  # same batches, accumulation, clipping and schedule
    assert not torch.distributed.is_initialized()  # the group is torn down after the run


def test_deepspeed_zero3_bf16_saves_a_loadable_checkpoint(tiny_world, tmp_path, hp, wrong_answers):
    examples, _ = METHODS.get("gt-dpo")().construct(tiny_world.records[:4], {"greedy": wrong_answers(tiny_world.records)}, {"repeat": 1})
    cfg = hp(deepspeed={"stage": 3}, bf16=True, epochs=1, batch_size=4, micro_batch_size=2, lr=1e-3)
    result = train(tiny_world.base, examples, tiny_world.image_root, "dpo", cfg, tmp_path)
    assert result["steps"] == 2 and math.isfinite(result["final_loss"])
    saved = load_file(str(tmp_path / checkpoint.NON_LORA_FILE))
    assert all(v.dtype == torch.float32 and v.numel() > 0 for v in saved.values())  # gathered, not shards
    base, trained = load(tiny_world.base), load_trained(tiny_world.base, tmp_path)
    batch = _batch(base, examples, tiny_world.image_root, "dpo")
    after = _logits(trained.model, batch)
    assert torch.isfinite(after).all() and not torch.allclose(after, _logits(base.model, batch), atol=1e-3)


def test_objective_none_is_refused(tiny_world, tmp_path, hp):
    with pytest.raises(ValueError, match="trains nothing"):
        train(tiny_world.base, [], tiny_world.image_root, "none", hp(), tmp_path)


def test_sft_with_kl_starts_at_zero_and_a_large_lambda_stays_closer_to_the_reference(tiny_world, tmp_path, hp):
    """The top-k KL is precomputed before training (policy = reference then: KL of step 1 is 0), and
    a large λ keeps the trained model closer to the base model than a negligible one."""
    examples, _ = METHODS.get("cont-sft")().construct(tiny_world.records, {}, {})
    loose = train(tiny_world.base, examples, tiny_world.image_root, "sft", hp(kl_lambda=1e-9, epochs=2), tmp_path / "a")
    tight = train(tiny_world.base, examples, tiny_world.image_root, "sft", hp(kl_lambda=50.0, epochs=2), tmp_path / "b")
    for r in (loose, tight):
        assert r["kl_first"] == pytest.approx(0.0, abs=1e-5) and r["kl_topk"] == 16 and r["ref_s"] > 0
    assert loose["kl_final"] > 1e-3
    assert tight["kl_final"] < 0.5 * loose["kl_final"]
    log = json.loads((tmp_path / "b" / checkpoint.TRAIN_LOG).read_text())
    assert all("kl" in step for step in log["steps"])
    with pytest.raises(ValueError, match="applies to SFT"):
        train(tiny_world.base, [], tiny_world.image_root, "dpo", hp(kl_lambda=0.1), tmp_path / "c")


def test_nsft_kl_examples_train_end_to_end(tiny_world, tmp_path, hp, wrong_answers):
    """nSFT's rule path on the tiny world (every answer wrong: 2 yes/no turns per question appended) trains
    with the KL term; the 8-turn conversations are supervised in full."""
    method = METHODS.get("nsft-kl")()
    examples, stats = method.construct(tiny_world.records, {"greedy": wrong_answers(tiny_world.records)}, {"repeat": 1})
    assert stats["wrong_answers"] == 32 and all(len(e["conversations"]) == 4 + 8 for e in examples)
    result = train(tiny_world.base, examples, tiny_world.image_root, "sft",
                   hp(kl_lambda=method.defaults["kl_lambda"], epochs=1), tmp_path)
    assert result["examples"] == 16 and result["dropped_truncated"] == 0 and result["kl_first"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.slow
def test_two_launched_ranks_train_like_one_process(tiny_world, tmp_path, hp):
    """matrix.methods.launch: 2 processes (gloo on CPU), each half of every global batch, DeepSpeed averaging
    their gradients, reach the single process's losses and weights; ranks 0 and 1 of a world of 2."""
    from matrix.methods.launch import launch
    from matrix.methods.trainer import train as train_one

    examples = [{"id": r["id"], "image": r["image"], "conversations": r["conversations"]} for r in tiny_world.records]
    cfg = hp(deepspeed={"stage": 2}, lora={"r": 8, "alpha": 16, "dropout": 0.0}, epochs=1, batch_size=8,
             micro_batch_size=4)
    one = train_one(tiny_world.base, examples, tiny_world.image_root, "sft", cfg, tmp_path / "one")
    args = dict(base_model_dir=str(tiny_world.base), examples=examples, image_root=str(tiny_world.image_root),
                objective="sft", hp=cfg, template=None)
    two = launch(2, args, tmp_path / "two", tmp_path / "scratch")
    assert sorted((r["rank"], r["world_size"]) for r in two["ranks"]) == [(0, 2), (1, 2)]
    assert len({r["pid"] for r in two["ranks"]}) == 2 and not (tmp_path / "scratch").exists()
    losses = lambda d: [s["loss"] for s in json.loads((d / checkpoint.TRAIN_LOG).read_text())["steps"]]  # noqa: E731
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=1e-4)
    a, b = load_file(str(tmp_path / "one" / checkpoint.NON_LORA_FILE)), load_file(str(tmp_path / "two" / checkpoint.NON_LORA_FILE))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert one["world_size"] == 1 and two["world_size"] == 2


def test_a_process_group_listens_on_loopback_only():
    """The ranks meet through a file: torch's default TCPStore would listen on every interface
    (`*:MASTER_PORT`), which a loopback-only node must not do (seen as a `ray::execute_stage` line of
    `ss -ltnp` while a DeepSpeed stage ran). Launched ranks run the same code with the launcher's file."""
    import torch.distributed as dist

    from matrix.methods._dist import process_group
    from tests.sockets import not_on_loopback, own_listeners

    with process_group(on_cuda=False):
        assert dist.is_initialized() and dist.get_world_size() == 1
        t = torch.ones(3)
        dist.all_reduce(t)
        assert t.tolist() == [1.0, 1.0, 1.0]
        lines = own_listeners()
    assert not dist.is_initialized()
    assert not_on_loopback(lines) == [], lines


def test_a_multi_gpu_request_without_deepspeed_is_refused(tmp_path, hp):
    from matrix.methods.launch import launch

    with pytest.raises(ValueError, match="needs training.deepspeed"):
        launch(2, {"hp": hp()}, tmp_path / "o", tmp_path / "s")


def test_bf16_weights_train_on_the_plain_path_with_checkpointing_and_record_how(tiny_world, tmp_path, hp):
    """Base model loaded in bf16 (the spec's dtype), no DeepSpeed: the frozen weights stay bf16, the trained
    tensors fp32, the forward runs under bf16 autocast with activations recomputed, and the result says so."""
    examples, _ = METHODS.get("cont-sft")().construct(tiny_world.records[:8], {}, {})
    result, model = train_model(tiny_world.base, examples, tiny_world.image_root, "sft", hp(epochs=1), tmp_path,
                                dtype="bfloat16", gradient_checkpointing=True)
    assert result["runtime"] == {"device": "cpu", "dtype": "bfloat16", "batch_size": 4,
                                 "compute_dtype": "bfloat16", "gradient_checkpointing": True}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert result["steps"] == 1 and math.isfinite(result["final_loss"])
    saved = load_file(str(tmp_path / checkpoint.NON_LORA_FILE))
    assert saved and all(t.dtype == torch.float32 for t in saved.values())
