"""The training loop on a tiny random Llama (with the embedded model's tokenizer): loss falls, exact resume
after SIGKILL, checkpoint on SIGTERM, 2-process accelerate (gloo) equals one process, LoRA, early errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from titans_adapter import load_adapter
from titans_adapter.config import ConfigError
from titans_adapter.data import DataError
from titans_adapter.recipe import load_recipe
from titans_adapter.training import (
    LORA_WEIGHTS,
    READ_PROBE_FILE,
    ReadProbe,
    _load_optimizer,
    build_model,
    captured_reads,
    evaluate_run,
    latest_checkpoint,
    load_trained,
    make_optimizer,
    optimizer_groups,
    optimizer_parameter_names,
    projection_anchors,
    pull_toward_anchors,
    sample_loss,
    train,
    trainable_parameters,
)

ROOT = Path(__file__).parent.parent
TRAIN = str(ROOT / "scripts" / "train.py")
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny random Llama saved with the embedded model's tokenizer: a local model directory."""
    from titans_adapter.models import load_tokenizer

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = load_tokenizer("default")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_recipe(tiny_dir: Path, out: Path, **extra: object) -> Path:
    """A recipe file for the tiny model; extra keys given as dotted names."""
    values = {
        "model": str(tiny_dir),
        "adapter.layers": "[0]", "adapter.window": 32, "adapter.chunk_size": 16, "adapter.num_heads": 2, "adapter.head_dim": 16,
        "data.max_documents": 12, "data.windows_per_sample": 3, "data.val_fraction": 0.2,
        "max_steps": 8, "batch_size": 2, "lr": 1e-2, "gate_lr": 5e-2, "warmup_steps": 2,
        "eval_samples": 4, "eval_synthetic_samples": 4, "save_every": 4, "log_every": 1, "tensorboard": False,
        "num_threads": 1, "output_dir": str(out),
    }  # fmt: skip
    values.update(extra)
    path = out.parent / f"{out.name}.yaml"
    path.write_text("\n".join(f"{k}: {v}" for k, v in values.items() if "." not in k) + "\n")
    overrides = [f"{k}={v}" for k, v in values.items() if "." in k]
    path.with_suffix(".overrides").write_text("\n".join(overrides))
    return path


def recipe_of(path: Path, *more: str) -> dict:
    return load_recipe(path, path.with_suffix(".overrides").read_text().split("\n") + list(more))


def cli_args(path: Path) -> list[str]:
    return ["--config", str(path), *path.with_suffix(".overrides").read_text().split("\n")]


def weights_of(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter_model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_a_few_steps_reduce_the_validation_loss(tiny_dir, tmp_path):
    out = tmp_path / "run"
    recipe = recipe_of(tiny_recipe(tiny_dir, out, max_steps=25, eval_every=25), "data.synthetic_fraction=0")
    result = train(recipe)
    base, trained = result["base_val_loss_by_window"], result["val_loss_by_window"]
    assert result["reset_val_loss_by_window"][0] == pytest.approx(trained[0], abs=1e-5)  # window 0 has nothing to carry
    assert sum(trained[1:]) < sum(base[1:]) - 0.05, (trained, base)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert '"type": "eval", "step": 0' in lines[0]  # the first eval: the untrained retrofit equals the windowed base
    first = json.loads(lines[0])
    assert first["val_loss_by_window"] == pytest.approx(first["base_val_loss_by_window"], abs=1e-5)
    assert any('"gate/0/out_abs"' in line for line in lines)
    base_model = LlamaForCausalLM.from_pretrained(tiny_dir)
    model = load_adapter(base_model, out)  # the final adapter sits at the top of output_dir
    assert max_diff(model.adapter_state_dict(), weights_of(out)) == 0
    assert latest_checkpoint(out).name == "step-0000025"
    again = evaluate_run(out, recipe)  # the end-of-training validation, run on its own from the saved adapter
    assert again["val_loss_by_window"] == pytest.approx(result["val_loss_by_window"], abs=1e-5)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_dir, tmp_path):
    steps = 40
    ref = tmp_path / "ref"
    train(recipe_of(tiny_recipe(tiny_dir, ref, max_steps=steps, save_every=5)))
    out = tmp_path / "killed"
    path = tiny_recipe(tiny_dir, out, max_steps=steps, save_every=5)
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *cli_args(path)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (out / "checkpoints" / "step-0000010").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "adapter_config.json").exists()
    stopped_at = int(latest_checkpoint(out).name.split("-")[1])
    assert 10 <= stopped_at < steps
    done = subprocess.run(
        [sys.executable, TRAIN, "--resume", str(out), *cli_args(path)[2:]], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"at step {stopped_at}" in done.stdout + done.stderr
    assert max_diff(weights_of(out), weights_of(ref)) < 1e-5


def test_resume_takes_the_recipes_learning_rates(tiny_dir, tmp_path):
    out = tmp_path / "run"
    path = tiny_recipe(tiny_dir, out, max_steps=4, scheduler="constant")
    train(recipe_of(path))
    train(recipe_of(path, "max_steps=6", "lr=2e-3", "gate_lr=3e-3", "projection_lr=1e-4"), resume=out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    lrs = {row["step"]: (row["lr/main"], row["lr/gates"], row["lr/projections"]) for row in rows}
    assert lrs[4] == pytest.approx((1e-2, 5e-2, 1e-2)) and lrs[5] == pytest.approx((2e-3, 3e-3, 1e-4)), lrs


def test_projection_lr_groups_the_memorys_input_projections(tiny_dir, tmp_path):
    recipe = recipe_of(tiny_recipe(tiny_dir, tmp_path / "run"), "adapter.bigram_keys=true", "projection_lr=1e-4")
    model, _ = build_model(recipe, torch.device("cpu"), "fp32")
    groups = {group["name"]: group for group in make_optimizer(model, recipe).param_groups}
    names = optimizer_groups(model)
    assert names["projections"] == ["memories.0.memory.to_qkv.weight", "memories.0.memory.to_context_key.weight"]
    assert "memories.0.gate" in names["gates"] and "memories.0.out_proj.weight" in names["main"]
    assert sorted(sum(names.values(), [])) == sorted(model.adapter_parameters())  # each parameter in one group
    assert (groups["projections"]["lr"], groups["main"]["lr"], groups["gates"]["lr"]) == pytest.approx((1e-4, 1e-2, 5e-2))


def test_projection_anchor_pulls_only_the_projections_toward_their_initial_values(tiny_dir, tmp_path):
    recipe = recipe_of(tiny_recipe(tiny_dir, tmp_path / "run"), "adapter.bigram_keys=true", "projection_anchor=10")
    model, _ = build_model(recipe, torch.device("cpu"), "fp32")
    optimizer = make_optimizer(model, recipe)  # projections at lr 1e-2: a pull of 10 * 1e-2 = 10% a step
    anchors = projection_anchors(model, recipe)
    assert sorted(anchors) == sorted(optimizer_groups(model)["projections"])
    params = trainable_parameters(model)
    moves = {name: torch.randn_like(p) for name, p in params.items()}
    with torch.no_grad():
        for name, p in params.items():
            p.add_(moves[name])
    before = {name: p.detach().clone() for name, p in params.items()}
    pull_toward_anchors(model, optimizer, anchors, recipe["projection_anchor"])
    for name, p in params.items():
        expected = anchors[name] + 0.9 * moves[name] if name in anchors else before[name]
        torch.testing.assert_close(p.detach(), expected, msg=name)
    assert projection_anchors(model, recipe_of(tiny_recipe(tiny_dir, tmp_path / "off"))) == {}


def test_a_full_pull_keeps_the_projections_at_their_initialization_across_a_resume(tiny_dir, tmp_path):
    """projection_anchor = 1 / lr at a constant LR puts the projections back on their initial values every step,
    also after a resume, which rebuilds those values from the seed; without it they move."""
    out, free = tmp_path / "run", tmp_path / "free"
    settings = {"scheduler": "constant", "warmup_steps": 0, "max_steps": 4, "adapter.bigram_keys": "true"}
    path = tiny_recipe(tiny_dir, out, **settings)
    train(recipe_of(path, "projection_anchor=100"))
    train(recipe_of(path, "projection_anchor=100", "max_steps=6"), resume=out)
    train(recipe_of(tiny_recipe(tiny_dir, free, **settings)))
    recipe = recipe_of(path)
    torch.manual_seed(recipe["seed"])
    model, _ = build_model(recipe, torch.device("cpu"), "fp32")
    initial = trainable_parameters(model)
    anchored, moved = load_file(out / "adapter_model.safetensors"), load_file(free / "adapter_model.safetensors")
    for name in optimizer_groups(model)["projections"]:
        torch.testing.assert_close(anchored[name], initial[name].detach(), msg=name)
        assert not torch.allclose(moved[name], initial[name].detach()), name


def test_optimizer_state_of_an_id_keyed_checkpoint_lands_on_the_same_parameters(tiny_dir, tmp_path):
    """Checkpoints written before the projections group keyed the AdamW state by id in two groups (all but the
    gates, then the gates); resuming them puts each parameter's moments back on that parameter."""
    recipe = recipe_of(tiny_recipe(tiny_dir, tmp_path / "run"))
    model, _ = build_model(recipe, torch.device("cpu"), "fp32")
    params = trainable_parameters(model)
    gates = set(model.gate_parameter_names())
    legacy_order = [n for n in params if n not in gates] + [n for n in params if n in gates]
    legacy = torch.optim.AdamW([{"params": [params[n] for n in legacy_order]}])
    for p in params.values():
        p.grad = torch.randn_like(p)
    legacy.step()
    tensors = {f"{pid}.{key}": v for pid, state in legacy.state_dict()["state"].items() for key, v in state.items()}
    optimizer = make_optimizer(model, recipe)
    _load_optimizer(optimizer, optimizer_parameter_names(model), tensors, {"extra": {}}, legacy_order)
    for name in params:
        assert torch.equal(optimizer.state[params[name]]["exp_avg"], legacy.state[params[name]]["exp_avg"]), name
    with pytest.raises(ConfigError, match="names a parameter this model lacks"):
        _load_optimizer(
            optimizer,
            optimizer_parameter_names(model),
            {"nope/exp_avg": torch.zeros(1)},
            {"keyed_by": "name", "extra": {}},
            legacy_order,
        )


def test_stop_at_step_then_resume_equals_one_run(tiny_dir, tmp_path):
    """A curriculum stage that stops early keeps the whole run's LR schedule: stop + resume = one run."""
    ref, out = tmp_path / "ref", tmp_path / "staged"
    train(recipe_of(tiny_recipe(tiny_dir, ref, max_steps=10)))
    path = tiny_recipe(tiny_dir, out, max_steps=10)
    train(recipe_of(path), stop_at_step=6)
    assert latest_checkpoint(out).name == "step-0000006" and (out / "eval.json").is_file()
    train(recipe_of(path), resume=out)
    assert max_diff(weights_of(out), weights_of(ref)) < 1e-5
    with pytest.raises(ConfigError, match="stop_at_step must be in"):
        train(recipe_of(path), resume=out, stop_at_step=11)


def test_train_script_rejects_stop_at_step_with_evaluate(tmp_path):
    """--evaluate trains nothing, so a --stop-at-step beside it is an error rather than silently ignored."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--evaluate", str(tmp_path), "--stop-at-step", "5"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--stop-at-step belongs to training" in result.stderr


def test_sigterm_writes_a_checkpoint_and_stops(tiny_dir, tmp_path):
    out = tmp_path / "term"
    path = tiny_recipe(tiny_dir, out, max_steps=100000, save_every=0)
    proc = subprocess.Popen(
        [sys.executable, TRAIN, *cli_args(path)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while not (out / "metrics.jsonl").exists() or '"type": "train"' not in (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "resume with --resume" in err
    assert (latest_checkpoint(out) / "optimizer.safetensors").is_file()
    assert not list((out / "checkpoints").glob(".*")), "no temporary checkpoint left behind"
    stopped = load_file(str(latest_checkpoint(out) / "adapter_model.safetensors"))
    final = load_file(str(out / "adapter_model.safetensors"))
    assert stopped.keys() == final.keys() and all(torch.equal(stopped[k], final[k]) for k in stopped)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_accelerate_gloo_equals_one_process(tiny_dir, tmp_path):
    # A mixture of natural text and passkeys (answers of a fixed length): each sample weighs the same everywhere.
    mix = {"data.synthetic_tasks": "[passkey]", "data.synthetic_fraction": 0.5}
    single = tmp_path / "single"
    train(recipe_of(tiny_recipe(tiny_dir, single, max_steps=6, batch_size=4, **mix)))
    out = tmp_path / "ddp"
    path = tiny_recipe(tiny_dir, out, max_steps=6, batch_size=2, **mix)  # 2 processes x 2 = the same global batch
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    accelerate += [
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
    ]
    done = subprocess.run([*accelerate, TRAIN, *cli_args(path)], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es)" in done.stdout + done.stderr
    assert max_diff(weights_of(out), weights_of(single)) < 1e-5


def test_lora_trains_and_reloads(tiny_dir, tmp_path):
    out = tmp_path / "lora"
    train(recipe_of(tiny_recipe(tiny_dir, out, max_steps=4), "lora.enabled=true", "lora.r=4"))
    lora = load_file(str(out / LORA_WEIGHTS))
    assert lora and any("lora_B" in k and v.abs().sum() > 0 for k, v in lora.items()), "LoRA B starts at zero and must move"
    model = load_trained(LlamaForCausalLM.from_pretrained(tiny_dir), out)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in lora.items())
    assert max_diff(model.adapter_state_dict(), weights_of(out)) == 0


def test_bad_input_fails_before_the_model_loads(tiny_dir, tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr("titans_adapter.training.load_base_model", no_model)
    path = tiny_recipe(tiny_dir, tmp_path / "bad")
    with pytest.raises(DataError, match="does not exist"):
        train(recipe_of(path, f"data.path={tmp_path / 'nothing'}"))
    with pytest.raises(DataError, match="No train sample"):
        train(recipe_of(path, "adapter.window=4096", "adapter.chunk_size=64", "data.windows_per_sample=8"))
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        train(recipe_of(path, "load_in_4bit=true"))
    # sample 0 fits its 32-token window; sample 16 (a keyed_number question in the qa layout) does not
    too_long = ["data.synthetic_tasks=[passkey,keyed_number]", "data.question_formats=[plain,qa]"]
    with pytest.raises(DataError, match=r"too small for a synthetic fact \(\d+ tokens\) or question"):
        train(recipe_of(path, *too_long))


def test_half_written_checkpoints_are_ignored(tmp_path):
    (tmp_path / "checkpoints" / "step-0000004").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-0000004" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoints" / ".step-0000008.tmp-123").mkdir()
    assert latest_checkpoint(tmp_path).name == "step-0000004"


def test_gradient_checkpointing_gives_the_same_training(tiny_dir, tmp_path):
    plain, ckpt = tmp_path / "plain", tmp_path / "ckpt"
    train(recipe_of(tiny_recipe(tiny_dir, plain, max_steps=3)))
    train(recipe_of(tiny_recipe(tiny_dir, ckpt, max_steps=3), "gradient_checkpointing=true", "adapter.layers=[0]"))
    assert max_diff(weights_of(ckpt), weights_of(plain)) < 1e-5
    model, _ = build_model(recipe_of(tiny_recipe(tiny_dir, ckpt), "gradient_checkpointing=true"), torch.device("cpu"), "fp32")
    layers = model.base.model.layers
    assert layers[1].gradient_checkpointing and not layers[0].gradient_checkpointing  # the memory layer never recomputes


@pytest.mark.parametrize("overlap", [0, 8])
def test_sample_loss_with_a_gap_equals_reading_the_gap_tokens(tiny_dir, tmp_path, overlap):
    """The loss of head + cached gap + last window equals the loss of the whole token sequence (gap unlabelled).
    With an overlap, the gap's first window re-reads the head's end and the last window the gap's end."""
    recipe = recipe_of(tiny_recipe(tiny_dir, tmp_path / "m"), f"adapter.overlap={overlap}")
    model, _ = build_model(recipe, torch.device("cpu"), "fp32")
    with torch.no_grad():
        model.memories["0"].gate.normal_()
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 80))  # windows of 32: head 0..63, last window 64..79
    labels = ids.clone()
    labels[:, :40] = -100
    labels[:, 64] = -100  # its prediction would cross the gap
    gap_ids = torch.randint(0, 1000, (2, 64))
    gap = model.branch_inputs(gap_ids, previous_ids=ids[:, 64 - overlap : 64] if overlap else None), gap_ids
    with captured_reads(model) as sinks:
        loss = sample_loss(model, ids, labels, gap)
    full_ids = torch.cat([ids[:, :64], gap_ids, ids[:, 64:]], 1)
    full_labels = torch.cat([labels[:, :64], torch.full_like(gap_ids, -100), labels[:, 64:]], 1)
    with captured_reads(model) as full_sinks:
        expected = model(full_ids, labels=full_labels, return_logits=False).loss
    assert abs(loss.item() - expected.item()) < 1e-5
    assert abs(sample_loss(model, ids, labels, None).item() - loss.item()) > 1e-4  # the gap matters
    # The reads the read loss sees: one per sample position, as the whole sequence's without the gap's positions.
    reads, full_reads = (torch.cat(parts, dim=1) for (parts,) in (sinks, full_sinks))
    assert reads.shape == (2, 80, 32)
    assert torch.allclose(reads, torch.cat([full_reads[:, :64], full_reads[:, 128:]], 1), atol=1e-5)
    probe = ReadProbe(model)
    with torch.no_grad():
        probe.to_hidden.weight.normal_()
    read_loss, _ = probe.loss(model, sinks, labels, gap=True)
    full_read_loss, _ = probe.loss(model, full_sinks, full_labels, gap=False)
    assert abs(read_loss.item() - full_read_loss.item()) < 1e-4
    only_across = torch.full_like(labels, -100)
    only_across[:, 64] = ids[:, 64]  # the one target whose position before it is in the gap
    assert probe.loss(model, sinks, only_across, gap=True)[0].item() == 0


def test_read_loss_reaches_the_memory_but_not_its_output(tiny_dir, tmp_path):
    """The read loss trains what produces the read (the memory's projections and initial weights), never the
    branch's output projection or gate, which only the model's own loss may move."""
    model, _ = build_model(recipe_of(tiny_recipe(tiny_dir, tmp_path / "r")), torch.device("cpu"), "fp32")
    probe = ReadProbe(model)
    with torch.no_grad():
        probe.to_hidden.weight.normal_()
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 96))
    labels = torch.full_like(ids, -100)
    labels[:, 80:] = ids[:, 80:]
    with captured_reads(model) as sinks:
        model(ids, labels=labels, return_logits=False)
    probe.loss(model, sinks, labels, gap=False)[0].backward()
    grads = {name: p.grad for name, p in model.adapter_parameters().items()}
    branch = "memories.0."
    assert grads[branch + "out_proj.weight"] is None and grads[branch + "gate"] is None
    moved = [name for name, grad in grads.items() if grad is not None and grad.abs().sum() > 0]
    assert any(name in moved for name in model.projection_parameter_names())
    assert probe.to_hidden.weight.grad.abs().sum() > 0


def test_read_loss_trains_logs_and_resumes_exactly(tiny_dir, tmp_path):
    """read_loss_weight changes the training, logs the read loss and accuracy, and keeps its probe (with its
    moments) in the checkpoints, not in the adapter: stop + resume equals one run."""
    plain, ref, out = tmp_path / "plain", tmp_path / "ref", tmp_path / "staged"
    synthetic = ["data.synthetic_fraction=1", "data.synthetic_tasks=[passkey]"]
    train(recipe_of(tiny_recipe(tiny_dir, plain, max_steps=8), *synthetic))
    train(recipe_of(tiny_recipe(tiny_dir, ref, max_steps=8), *synthetic, "read_loss_weight=1"))
    assert max_diff(weights_of(ref), weights_of(plain)) > 1e-4
    records = [json.loads(line) for line in (ref / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if r["type"] == "train"]
    assert all(r["loss_read"] > 0 and 0 <= r["read_accuracy"] <= 1 for r in trained)
    assert (latest_checkpoint(ref) / READ_PROBE_FILE).is_file() and not (ref / READ_PROBE_FILE).exists()
    assert set(weights_of(ref)) == set(weights_of(plain))
    path = tiny_recipe(tiny_dir, out, max_steps=8)
    train(recipe_of(path, *synthetic, "read_loss_weight=1"), stop_at_step=5)
    train(recipe_of(path, *synthetic, "read_loss_weight=1"), resume=out)
    assert max_diff(weights_of(out), weights_of(ref)) < 1e-5


@pytest.mark.parametrize("overlap", [0, 8])
def test_training_with_gap_windows_reports_far_recall(tiny_dir, tmp_path, overlap):
    out = tmp_path / "gap"
    path = tiny_recipe(tiny_dir, out, max_steps=4, eval_every=2)
    overrides = ["data.gap_windows=3", "data.gap_pool_windows=16", "data.synthetic_tasks=[passkey]", "data.answer_end=true"]
    overrides.append(f"adapter.overlap={overlap}")
    result = train(recipe_of(path, *overrides))
    assert 0 <= result["far_synthetic_token_accuracy"] <= 1 and len(result["far_synthetic_accuracy_by_position"]) == 5
    assert 0 <= result["synthetic_end_accuracy"] <= 1 and 0 <= result["far_synthetic_end_accuracy"] <= 1
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [e["step"] for e in evals] == [0, 2, 4] and all("far_synthetic_exact" in e for e in evals)
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    for bad, message in (("adapter.layers=[0,1]", "exactly one memory layer"), ("lora.enabled=true", "LoRA")):
        with pytest.raises(ConfigError, match=message):
            recipe_of(path, "data.gap_windows=3", bad)


def test_training_compiles_the_memory_when_asked(tiny_dir, tmp_path, monkeypatch):
    from titans_adapter.retrofit import TitansModel

    modes = []
    monkeypatch.setattr(TitansModel, "compile_memory", lambda self, mode: modes.append(mode) or self)
    path = tiny_recipe(tiny_dir, tmp_path / "c", max_steps=1, eval_every=0)
    train(recipe_of(path, "compile_memory=reduce-overhead"))
    assert modes == ["reduce-overhead"]
    train(recipe_of(tiny_recipe(tiny_dir, tmp_path / "e", max_steps=1, eval_every=0)))
    assert modes == ["reduce-overhead"]  # the default stays eager
