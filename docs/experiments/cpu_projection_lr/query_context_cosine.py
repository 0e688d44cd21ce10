"""Do the memory's query and bigram context projections stay alike? They start equal (bigram_keys), and a query
finds the next digit's key through that equality; this prints, per run, the cosine between the two trained weight
matrices and their norms (README, "Keeping the anchor through stage 2").

python docs/experiments/cpu_projection_lr/query_context_cosine.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.nn.functional as F
from safetensors.torch import load_file


def main() -> None:
    print("| run | cosine(query, context) | norm query / context / key |")
    print("| --- | ---: | --- |")
    for run in sys.argv[1:]:
        weights = load_file(str(Path(run) / "adapter_model.safetensors"))
        (qkv,) = [w for name, w in weights.items() if name.endswith("to_qkv.weight")]
        (context,) = [w for name, w in weights.items() if name.endswith("to_context_key.weight")]
        rows = context.shape[0]  # heads * head_dim; to_qkv stacks query, key and value rows
        query, key = qkv[:rows], qkv[rows : 2 * rows]
        cosine = F.cosine_similarity(query.flatten(), context.flatten(), dim=0).item()
        print(f"| {run} | {cosine:.3f} | {query.norm():.1f} / {context.norm():.1f} / {key.norm():.1f} |")


if __name__ == "__main__":
    main()
