"""Generation with memory on tiny random Llama models: cache vs recompute, memorize, state files, chat."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import open_gates, tiny_config, tiny_llama
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from titans_adapter import load_adapter, retrofit
from titans_adapter.generation import (
    ChatSession,
    MemoryStateError,
    dataset_texts,
    memorize_texts,
    read_memory_metadata,
    read_text_file,
    stream_tokens,
)

ROOT = Path(__file__).resolve().parents[1]
NO_EOS = {"eos_token_id": None, "pad_token_id": 0}
CONFIGS = [{}, {"persistent_tokens": 2, "overlap": 4}, {"refresh_every": 2, "layers": [0, 1]}]


def make_model(seed: int = 0, **overrides):
    model = retrofit(tiny_llama(seed=seed), tiny_config(**overrides))
    open_gates(model)
    return model


def recompute_greedy(model, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy tokens by re-reading prompt + generated-so-far from scratch at every step (same windows)."""
    seq = prompt
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    return seq


def test_untrained_retrofit_generates_like_transformers_generate_within_one_window():
    """Output gate zero and one window covering everything: the retrofit is the base, so generate() must agree."""
    base = tiny_llama()
    model = retrofit(base, tiny_config(window=64))
    prompt = torch.randint(0, 128, (2, 10))
    for kwargs in ({}, {"repetition_penalty": 1.3}):
        expected = base.generate(prompt, max_new_tokens=20, do_sample=False, **kwargs, **NO_EOS)
        torch.testing.assert_close(model.generate(prompt, max_new_tokens=20, **kwargs, **NO_EOS), expected, rtol=0, atol=0)


def test_empty_document_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        read_text_file(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text_file(tmp_path / "missing.txt")


@pytest.mark.parametrize("overrides", CONFIGS)
def test_greedy_with_cache_equals_recompute_from_scratch(overrides):
    model = make_model(**overrides)
    prompt = torch.randint(0, 128, (2, 45))
    out = model.generate(prompt, max_new_tokens=40, **NO_EOS)  # 85 tokens: crosses two window boundaries
    assert out.shape == (2, 85)
    torch.testing.assert_close(out, recompute_greedy(model, prompt, 40), rtol=0, atol=0)


def test_memorize_then_generate_equals_generate_on_concatenation():
    model = make_model(persistent_tokens=2, overlap=4)
    doc, prompt = torch.randint(0, 128, (1, 70)), torch.randint(0, 128, (1, 9))
    state = model.memorize(doc)
    assert state.tokens_seen == 70
    first = model.generate(prompt, memory_state=state, max_new_tokens=30, **NO_EOS)
    again = model.generate(prompt, memory_state=state, max_new_tokens=30, **NO_EOS)  # the state is not consumed
    whole = model.generate(torch.cat([doc, prompt], dim=1), max_new_tokens=30, **NO_EOS)
    torch.testing.assert_close(first[:, 9:], whole[:, 79:], rtol=0, atol=0)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert state.tokens_seen == 70


def test_memorize_in_pieces_equals_one_read():
    model = make_model()
    doc = torch.randint(0, 128, (1, 300))
    small = model.memorize(doc, piece_windows=1)
    big = model.memorize(doc, piece_windows=20)
    assert small.tokens_seen == big.tokens_seen == 300
    for layer in small.layers:
        for a, b in zip(small.layers[layer].weights, big.layers[layer].weights):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_kv_cache_stays_within_one_window_during_long_generation():
    model = make_model(persistent_tokens=2, overlap=4)
    limit = 32 + 2 + 4  # window + persistent + overlap
    sizes, pending = [], []
    config = model.base.generation_config
    config.update(max_new_tokens=150, **NO_EOS)
    for _, state in stream_tokens(model, torch.randint(0, 128, (1, 70)), None, config):
        sizes.append(state.cache.get_seq_length() if state.cache is not None else 0)
        pending.append(state.layers[0].pending_keys.shape[2])
    assert len(sizes) == 150
    assert max(sizes) <= limit
    assert min(sizes) <= 2 + 4 + 1  # the cache restarts at every window
    assert max(pending) < 8  # never more than one unfinished chunk


def test_state_save_load_round_trip(tmp_path):
    model = make_model(persistent_tokens=2, overlap=4)
    doc, prompt = torch.randint(0, 128, (1, 77)), torch.randint(0, 128, (1, 6))
    state = model.memorize(doc)
    path = model.save_memory(state, tmp_path / "mem" / "doc.safetensors", notes={"documents": ["doc.txt"]})
    assert sorted(p.name for p in path.parent.iterdir()) == ["doc.safetensors"]  # no temporary leftovers
    meta = read_memory_metadata(path)
    assert meta["tokens_seen"] == 77 and meta["notes"] == {"documents": ["doc.txt"]}
    assert meta["base_model"]["hidden_size"] == 64
    loaded = load_adapter_copy(model, tmp_path).load_memory(path)
    assert loaded.tokens_seen == 77 and loaded.cache.get_seq_length() == state.cache.get_seq_length()
    with torch.no_grad():
        expected = model(prompt, memory_state=state).logits
        got = model(prompt, memory_state=loaded).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(
        model.generate(prompt, memory_state=loaded, max_new_tokens=20, **NO_EOS),
        model.generate(prompt, memory_state=state, max_new_tokens=20, **NO_EOS),
        rtol=0,
        atol=0,
    )


def load_adapter_copy(model, tmp_path):
    """The same adapter loaded onto a fresh copy of the same base (what a later session does)."""
    model.save_adapter(tmp_path / "adapter")
    return load_adapter(tiny_llama(seed=0), tmp_path / "adapter")


def test_state_of_another_adapter_or_base_is_refused(tmp_path):
    model = make_model()
    path = model.save_memory(model.memorize(torch.randint(0, 128, (1, 40))), tmp_path / "m.safetensors")
    with torch.no_grad():
        model.memories["0"].gate.add_(0.01)
    with pytest.raises(MemoryStateError, match="another adapter.*same config, different weights"):
        model.load_memory(path)
    other_config = make_model(window=64)
    with pytest.raises(MemoryStateError, match="another adapter.*different config"):
        other_config.load_memory(path)
    other_base = retrofit(tiny_llama(hidden=32), tiny_config())
    with pytest.raises(MemoryStateError, match="hidden_size: 64 vs 32"):
        other_base.load_memory(path)


def test_corrupt_truncated_or_foreign_state_files_are_refused(tmp_path):
    model = make_model()
    path = model.save_memory(model.memorize(torch.randint(0, 128, (1, 40))), tmp_path / "m.safetensors")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MemoryStateError, match="Corrupt or truncated"):
        model.load_memory(truncated)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF  # inside the last tensor's bytes: the header still parses
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(MemoryStateError, match="checksum"):
        model.load_memory(tmp_path / "flipped.safetensors")
    model.save_adapter(tmp_path / "adapter")
    with pytest.raises(MemoryStateError, match="not a titans memory state"):
        model.load_memory(tmp_path / "adapter" / "adapter_model.safetensors")
    with pytest.raises(MemoryStateError, match="not found"):
        model.load_memory(tmp_path / "missing.safetensors")


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    model = make_model()
    state = model.memorize(torch.randint(0, 128, (1, 40)))

    def interrupted(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("titans_adapter.generation.save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save_memory(state, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_empty_prompt_document_and_bad_arguments_are_clear_errors():
    model = make_model()
    with pytest.raises(ValueError, match="prompt is empty"):
        model.generate(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="document is empty"):
        model.memorize(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="unknown arguments.*max_new_tokenz"):
        model.generate(torch.ones(1, 3, dtype=torch.long), max_new_tokenz=3)
    with pytest.raises(NotImplementedError, match="num_beams"):
        model.generate(torch.ones(1, 3, dtype=torch.long), num_beams=2)
    right_padded = torch.tensor([[1, 1, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="left padding"):
        model.generate(torch.ones(2, 3, dtype=torch.long), attention_mask=right_padded)


def test_left_padded_batch_equals_per_prompt_generation():
    model = make_model(persistent_tokens=2, overlap=4)
    prompts = [torch.randint(1, 128, (n,)) for n in (5, 40, 21)]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :], mask[i, width - len(p) :] = p, 1
    out = model.generate(ids, attention_mask=mask, max_new_tokens=25, **NO_EOS)
    assert out.shape == (3, width + 25)
    torch.testing.assert_close(out[:, :width], ids, rtol=0, atol=0)
    for i, p in enumerate(prompts):
        single = model.generate(p[None], max_new_tokens=25, **NO_EOS)
        torch.testing.assert_close(out[i, width:], single[0, len(p) :], rtol=0, atol=0)


def test_eos_stops_rows_and_pads_the_finished_ones():
    model = make_model()
    prompt = torch.randint(0, 128, (2, 12))
    free = model.generate(prompt, max_new_tokens=10, **NO_EOS)
    eos = int(free[0, 12 + 3])  # row 0's fourth new token
    out = model.generate(prompt, max_new_tokens=10, eos_token_id=eos, pad_token_id=127)
    row0 = out[0, 12:].tolist()
    stop = row0.index(eos)
    assert stop <= 3 and all(t == 127 for t in row0[stop + 1 :])
    torch.testing.assert_close(out[0, : 12 + stop + 1], free[0, : 12 + stop + 1], rtol=0, atol=0)
    if eos not in free[1, 12:].tolist():
        torch.testing.assert_close(out[1], free[1], rtol=0, atol=0)


def test_sampling_follows_the_seed_and_top_k_1_is_greedy():
    model = make_model()
    prompt = torch.randint(0, 128, (1, 20))
    torch.manual_seed(3)
    a = model.generate(prompt, max_new_tokens=15, do_sample=True, temperature=1.5, top_p=0.9, **NO_EOS)
    torch.manual_seed(3)
    b = model.generate(prompt, max_new_tokens=15, do_sample=True, temperature=1.5, top_p=0.9, **NO_EOS)
    torch.manual_seed(4)
    c = model.generate(prompt, max_new_tokens=15, do_sample=True, temperature=1.5, top_p=0.9, **NO_EOS)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    greedy = model.generate(prompt, max_new_tokens=15, **NO_EOS)
    torch.testing.assert_close(model.generate(prompt, max_new_tokens=15, do_sample=True, top_k=1, **NO_EOS), greedy)


def test_streamer_receives_prompt_then_each_new_token():
    class Recorder:
        def __init__(self) -> None:
            self.puts: list[list[int]] = []
            self.ended = False

        def put(self, value: torch.Tensor) -> None:
            self.puts.append(value.flatten().tolist())

        def end(self) -> None:
            self.ended = True

    model = make_model()
    prompt = torch.randint(0, 128, (1, 10))
    recorder = Recorder()
    out = model.generate(prompt, max_new_tokens=6, streamer=recorder, **NO_EOS)
    assert recorder.puts[0] == prompt[0].tolist() and recorder.ended
    assert sum(recorder.puts[1:], []) == out[0, 10:].tolist()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 bytes + <|im_start|>, <|im_end|>) with a ChatML template: offline, instant."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return fast


def test_chat_session_reads_each_turn_once_and_the_memory_grows():
    tokenizer = tiny_tokenizer()
    model = retrofit(tiny_llama(vocab=260), tiny_config())
    open_gates(model)
    session = ChatSession(model, tokenizer)
    counts = []
    for message in ["hello there", "what did I say?", "and now?"]:
        text = session.turn_text(message)
        assert text.endswith(f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n")
        before = session.tokens_read
        answer = session.ask(message, max_new_tokens=8, eos_token_id=None)
        assert isinstance(answer, str)
        n_turn = len(tokenizer(text, add_special_tokens=False).input_ids)
        assert session.tokens_read == before + n_turn + 8  # the turn and the whole answer, nothing re-read
        counts.append(session.tokens_read)
    assert counts[0] < counts[1] < counts[2]
    assert session.rendered.count("<|im_start|>user") == 3


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A tiny Llama + byte tokenizer saved as a local model directory, and an adapter for it."""
    base = tiny_llama(vocab=260)
    base.generation_config.eos_token_id = 257
    base.generation_config.pad_token_id = 257
    base.save_pretrained(tmp_path / "model")
    tiny_tokenizer().save_pretrained(tmp_path / "model")
    model = retrofit(base, tiny_config())
    open_gates(model)
    model.save_adapter(tmp_path / "adapter")
    return tmp_path


def run_script(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args], input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


def test_memorize_then_chat_scripts_driven_by_stdin(tiny_model_dir):
    d = tiny_model_dir
    (d / "doc.txt").write_text("The letter was written by Ada. " * 20)
    common = ["--model", str(d / "model"), "--adapter", str(d / "adapter")]
    res = run_script("memorize.py", *common, "--doc", str(d / "doc.txt"), "--out", str(d / "mem.safetensors"))
    assert res.returncode == 0, res.stderr
    doc_tokens = len("The letter was written by Ada. " * 20)  # one token per byte
    assert read_memory_metadata(d / "mem.safetensors")["tokens_seen"] == doc_tokens
    res = run_script(
        "generate.py", *common, "--memory", str(d / "mem.safetensors"), "--chat", "--max-new-tokens", "5",
        "--out", str(d / "chat.safetensors"), stdin="Who wrote the letter?\n\nAnd when?\n",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    counts = [int(line.split(":")[1].strip(" ]").replace(",", "")) for line in res.stdout.splitlines() if "[tokens read:" in line]
    assert len(counts) == 2 and doc_tokens < counts[0] < counts[1]
    meta = read_memory_metadata(d / "chat.safetensors")
    assert meta["tokens_seen"] == counts[1] and meta["notes"] == {"documents": [str(d / "doc.txt")], "chat_turns": 2}
    res = run_script("generate.py", "--model", str(d / "model"), "--memory", str(d / "mem.safetensors"), "--prompt", "hi")
    assert res.returncode == 2 and "another adapter" in res.stderr


def test_memorize_texts_reads_documents_and_a_datasets_source_in_order(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"text": "first row"}\n{"text": "  "}\n{"text": "second row"}\n')
    tokenizer = tiny_tokenizer()
    model = retrofit(tiny_llama(vocab=260), tiny_config())
    open_gates(model)
    rows = list(dataset_texts("json", data_files=str(tmp_path / "rows.jsonl")))
    assert rows == ["first row", "second row"]  # blank rows are skipped
    state, count = memorize_texts(model, tokenizer, ["a document", *rows], progress=False)
    joined = "a document\n\nfirst row\n\nsecond row"
    assert count == 3 and state.tokens_seen == len(joined)  # one byte, one token
    with torch.no_grad():
        expected = model(tokenizer(joined, return_tensors="pt").input_ids, return_logits=False).memory_state
    torch.testing.assert_close(state.layers[0].weights[0], expected.layers[0].weights[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no field 'body'"):
        list(dataset_texts("json", data_files=str(tmp_path / "rows.jsonl"), text_field="body"))
    with pytest.raises(ValueError, match="No document given"):
        memorize_texts(model, tokenizer, [], progress=False)


@pytest.mark.slow
def test_default_model_answers_after_a_memorized_essay_and_a_saved_state(tmp_path):
    """The embedded SmolLM2: read 700 essay tokens (crossing a 512-token window), save, load, chat."""
    from titans_adapter import load_base_model
    from titans_adapter.data import load_essays

    base, tokenizer = load_base_model("default")
    torch.manual_seed(0)
    model = retrofit(base, tiny_config(layers=[8], window=512, chunk_size=64, num_heads=4, head_dim=64))
    essay = max(load_essays().values(), key=len)
    ids = tokenizer(essay, add_special_tokens=False, return_tensors="pt").input_ids[:, :700]
    path = model.save_memory(model.memorize(ids), tmp_path / "essay.safetensors")
    session = ChatSession(model, tokenizer, model.load_memory(path))
    answer = session.ask("What is the capital of France?", max_new_tokens=12)
    assert "Paris" in answer
    assert session.tokens_read > 700
