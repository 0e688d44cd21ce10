"""Switch a trained adapter (or a training checkpoint) to forgetting toward its learned initial weights and raise
its forget-gate bias, in place: how the probe adapter `outputs/cpu_long6_anchored` was made (README, Evaluation).

python docs/experiments/cpu_curriculum/anchor_forgetting.py SHIFT DIR [DIR ...]

Each DIR holds adapter_config.json and adapter_model.safetensors (an adapter or a checkpoints/step-N folder).
The forget logits are the last third of every to_gates.bias; SHIFT is added to them. Files are replaced atomically.
"""

import json
import os
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from titans_adapter.retrofit import ADAPTER_CONFIG, ADAPTER_FORMAT, ADAPTER_WEIGHTS


def temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


shift = float(sys.argv[1])
for folder in map(Path, sys.argv[2:]):
    weights_file, config_file = folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG
    meta = json.loads(config_file.read_text())
    heads = meta["titans_config"]["num_heads"]
    weights = load_file(str(weights_file))
    for name in [n for n in weights if n.endswith("to_gates.bias")]:
        weights[name][2 * heads :] += shift  # layout (3, heads): theta, eta, alpha logits
        print(f"{folder}: {name} forget logits now {weights[name][2 * heads :].tolist()}")
    meta["titans_config"]["forget_toward_init"] = True
    save_file(weights, str(temporary(weights_file)), metadata={"format": ADAPTER_FORMAT})
    temporary(config_file).write_text(json.dumps(meta, indent=2))
    os.replace(temporary(weights_file), weights_file)
    os.replace(temporary(config_file), config_file)
