"""Does the memory's read hold the passkey digit, whether or not the model then says it? (README, Training.)

For held-out passkeys (the training validation's, with the run's recipe), the query that must produce digit i is
the one at the token before it in the answer. This takes what the memory returns there (each head's retrieval
L2-normalized, as the branch uses it, before the output projection and the gate) and fits a linear classifier
(multinomial logistic regression, L2-regularized) from it to digit i's value on the first samples, scoring it on
the rest: if the digit can be read off the retrieval, the memory found and returned it, and a failure to answer
lies downstream (output projection, gate, the frozen layers above); if not, it lies in the write or the address.
Beside it: the same with the memory reset (the question's window read alone: no key in the memory), one
classifier shared by all five positions (the branch has one output projection for every digit), and the model's
own teacher-forced accuracy at those positions. A second table asks which of the key's digits each query's read
holds: a failing query may return a neighbouring digit rather than nothing. (The digits before digit i have been read
in the answer already, so the query itself holds them; only digit i and those after it must come from the memory.)

python docs/experiments/cpu_2h_bigram/read_probe.py RUN_DIR [--adapter DIR] [--samples 400] [--train 300]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from addressing import held_out_passkey, load_passkey_run
from tqdm import tqdm

from titans_adapter.memory import l2_normalize
from titans_adapter.training import load_trained


def reads_and_predictions(model, ids: torch.Tensor, answer_span: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For the answer's digits in ids (T,): the normalized retrieval at each digit's query (digits, H * head_dim) and
    whether the model's greedy next token there is the digit (digits,). The answer's labels let the forward run the
    layers above the memory only in the answer's window and the LM head only at those queries."""
    (branch,) = model.memories.values()
    heads = branch.memory.config.num_heads
    a0, a1 = answer_span
    labels = torch.full_like(ids, -100)
    labels[a0:a1] = ids[a0:a1]
    reads, head_outputs = [], []
    hooks = [
        branch.memory.register_forward_hook(lambda _, args, output: reads.append(output[0])),
        model.base.lm_head.register_forward_hook(lambda _, args, output: head_outputs.append(output)),
    ]
    with torch.no_grad():
        model(ids[None], labels=labels[None], return_logits=False)
    for hook in hooks:
        hook.remove()
    retrieved = torch.cat(reads, dim=1)[0]  # (T, H * head_dim): every window's read, in order
    assert retrieved.shape[0] == ids.shape[0], "prefix positions (overlap, persistent tokens) are not handled"
    retrieved = l2_normalize(retrieved.unflatten(-1, (heads, -1))).flatten(-2)
    (logits,) = head_outputs  # (1, digits, vocab): the answer's window alone reaches the head
    return retrieved[a0 - 1 : a1 - 1], logits[0].argmax(-1) == ids[a0:a1]


def fit_and_score(x_train, y_train, x_test, y_test, weight_decay: float = 1e-3, steps: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression on x (N, D) -> y (N,) in 0..9."""
    weight = torch.zeros(x_train.shape[1], 10, requires_grad=True)
    bias = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight + bias, y_train) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return ((x_test @ weight + bias).argmax(-1) == y_test).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--adapter", help="adapter directory to probe (default: the run's own)")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--train", type=int, default=300, help="samples the classifiers are fitted on")
    args = parser.parse_args()
    recipe, base, tokenizer, val = load_passkey_run(args.run)
    window = recipe["adapter"]["window"]
    model = load_trained(base, args.adapter or args.run).eval()
    features = {"memory carried": [], "memory reset": []}
    digits, said = [], []
    for index in tqdm(range(args.samples), desc="passkeys"):
        sample = held_out_passkey(recipe, val, tokenizer, index)
        a0, a1 = sample.answer_span
        ids = torch.from_numpy(sample.ids[:a1])
        answer = [int(tokenizer.decode([t])) for t in sample.ids[a0:a1]]
        carried, right = reads_and_predictions(model, ids, (a0, a1))
        question_window = a0 // window * window  # read alone: the memory holds nothing of the fact
        reset, _ = reads_and_predictions(model, ids[question_window:], (a0 - question_window, a1 - question_window))
        features["memory carried"].append(carried)
        features["memory reset"].append(reset)
        digits.append(torch.tensor(answer))
        said.append(right)
    y = torch.stack(digits)  # (samples, digits)
    n, positions = args.train, y.shape[1]
    print(f"{args.samples} held-out passkeys, classifiers fitted on {n}, scored on {args.samples - n}; chance 10%")
    print("| read | digit 1 / 2 / 3 / 4 / 5: digit from the read (one classifier per digit) | one classifier for all |")
    print("| --- | --- | ---: |")
    for name, rows in features.items():
        x = torch.stack(rows)  # (samples, digits, H * head_dim)
        per_digit = [fit_and_score(x[:n, i], y[:n, i], x[n:, i], y[n:, i]) for i in range(positions)]
        shared = fit_and_score(x[:n].flatten(0, 1), y[:n].flatten(), x[n:].flatten(0, 1), y[n:].flatten())
        row = " / ".join(f"{100 * a:.0f}" for a in per_digit)
        print(f"| {name} | {row}% | {100 * shared:.0f}% |")
    model_accuracy = torch.stack(said)[n:].float().mean(0)
    print(
        f"| the model says it (teacher-forced, same {args.samples - n}) | "
        + " / ".join(f"{100 * a:.0f}" for a in model_accuracy.tolist())
        + "% | |"
    )
    x = torch.stack(features["memory carried"])
    print("\nWhich of the key's digits the read at each digit's query holds (memory carried; rows: the query before digit i)")
    print("| query before | " + " | ".join(f"digit {j + 1}" for j in range(positions)) + " |")
    print("| --- |" + " ---: |" * positions)
    for i in range(positions):
        held = [fit_and_score(x[:n, i], y[:n, j], x[n:, i], y[n:, j]) for j in range(positions)]
        print(f"| digit {i + 1} | " + " | ".join(f"{100 * a:.0f}%" for a in held) + " |")


if __name__ == "__main__":
    main()
