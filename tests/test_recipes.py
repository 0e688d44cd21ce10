"""Recipes: every shipped YAML parses and validates (no model load), overrides, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from titans_adapter.config import ConfigError
from titans_adapter.recipe import VALID_KEYS, check_environment, load_recipe

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))


def test_the_required_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert "smollm2_135m_memory_cpu" in names
    for fragment in ("smollm2_360m", "smollm2_1_7b", "llama3_2_1b", "llama3_2_3b", "llama3_1_8b_qlora", "qwen2_5"):
        assert any(fragment in n for n in names), f"no recipe for {fragment}"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses_and_validates(path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("validation must not load a model")

    monkeypatch.setattr("titans_adapter.models.load_base_model", no_model)
    recipe = load_recipe(path)
    assert recipe["adapter"]["window"] >= recipe["adapter"]["chunk_size"]
    assert recipe["gate_lr"] > recipe["lr"], "gates need their own, higher learning rate"
    assert recipe["output_dir"] and recipe["max_steps"] >= 1


def test_overrides_nested_keys_and_yaml_1_1_floats(tmp_path):
    recipe = load_recipe(
        RECIPES[0], ["lr=3e-4", "data.path=/data/pg19", "adapter.layers=[2,5]", "max_steps=7", "lora.enabled=true"]
    )
    assert recipe["lr"] == pytest.approx(3e-4) and isinstance(recipe["lr"], float)
    assert recipe["data"]["path"] == "/data/pg19"
    assert recipe["adapter"]["layers"] == [2, 5]
    assert recipe["max_steps"] == 7 and recipe["lora"]["enabled"] is True
    assert load_recipe(None)["projection_lr"] is None  # unset: the projections train at lr
    assert load_recipe(None, ["projection_lr=1e-4"])["projection_lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "override, hint",
    [("lrr=1e-3", "Did you mean 'lr'"), ("adapter.windw=64", "Did you mean 'adapter.window'"), ("data.pth=x", "data.path")],
)
def test_unknown_key_lists_valid_keys_and_suggests(override, hint):
    with pytest.raises(ConfigError) as err:
        load_recipe(None, [override])
    assert hint in str(err.value)
    assert "max_steps" in str(err.value) and "output_dir" in str(err.value)


def test_unknown_key_in_a_file_fails_too(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("max_step: 3\n")
    with pytest.raises(ConfigError, match="Did you mean 'max_steps'"):
        load_recipe(path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["adapter.window=32", "adapter.chunk_size=64"], "smaller than the memory chunk_size"),
        (["max_steps=abc"], "expects a int"),
        (["precision=fp8"], "must be one of"),
        (["data.windows_per_sample=1"], "windows_per_sample must be >= 2"),
        (["data.fact_window=3", "data.windows_per_sample=3"], "must come before the question window"),
        (["data.synthetic_tasks=[riddle]"], "must be one of"),
        (["data.question_formats=[chat]"], "data.question_formats' must be one of"),
        (["data.question_formats=[]"], "question_formats is empty"),
        (["batch_size=0"], "must be >= 1"),
        (["data.passkey_digits=0"], "passkey_digits' must be >= 1"),
        (["adapter.window=128", "data.last_window_tokens=129"], "last_window_tokens must be in"),
        (["notakeyvalue"], "key=value"),
        (["projection_lr=-1e-3"], "'projection_lr' must be >= 0"),
        (["projection_lr=fast"], "'projection_lr' must be a number or null"),
        (["projection_anchor=-1"], "'projection_anchor' must be >= 0"),
        (["read_loss_weight=-0.5"], "'read_loss_weight' must be >= 0"),
    ],
)
def test_bad_values_fail_clearly(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(None, overrides)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_4bit_and_half_precision_need_a_gpu():
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        check_environment(load_recipe(None, ["load_in_4bit=true"]), cuda_available=False)
    with pytest.raises(ConfigError, match="needs a GPU"):
        check_environment(load_recipe(None, ["precision=bf16"]), cuda_available=False)
    check_environment(load_recipe(None, ["load_in_4bit=true"]), cuda_available=True)


def test_the_stable_names_are_keys():
    assert {"max_steps", "output_dir", "lr", "data.path"} <= set(VALID_KEYS)


def test_compile_memory_is_a_checked_choice():
    with pytest.raises(ConfigError, match="compile_memory"):
        load_recipe(None, ["compile_memory=fast"])
    assert load_recipe(None, ["compile_memory=reduce-overhead"])["compile_memory"] == "reduce-overhead"
