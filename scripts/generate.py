"""Generate with a Titans-retrofitted model: prompts of any length, a saved memory, or an interactive chat.

python scripts/generate.py --model default --adapter adapters/x --memory memory/book.safetensors --prompt "Who wrote the letter?"
python scripts/generate.py --adapter adapters/x --doc book.txt --prompt "Summarize the book." --out memory/book.safetensors
python scripts/generate.py --adapter adapters/x --memory memory/book.safetensors --chat   # one message per stdin line

The prompt (and every chat line) is wrapped in the tokenizer's chat template when it has one
(--no-chat-template to feed raw text). In --chat mode every turn, question and answer, is read into the
same memory, which keeps growing; the number of tokens read so far is printed after each answer.
"""

from __future__ import annotations

import argparse
import sys

import torch
from transformers import TextStreamer

from titans_adapter.cli import run_script
from titans_adapter.generation import (
    ChatSession,
    load_generation_model,
    memorize_texts,
    read_memory_metadata,
    read_text_file,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a local dir or a hub id")
    parser.add_argument("--adapter", default=None, help="adapter directory (omitted: an untrained retrofit)")
    parser.add_argument("--memory", default=None, help="memory state written by memorize.py (or --out) to start from")
    parser.add_argument("--doc", action="append", default=[], help="text file to read into the memory first (repeatable)")
    parser.add_argument("--prompt", default=None, help="one message to answer")
    parser.add_argument("--chat", action="store_true", help="interactive: one message per stdin line")
    parser.add_argument("--out", default=None, help="save the memory state after the last answer")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--repetition-penalty", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-chat-template", action="store_true", help="feed the raw text, no chat template")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if (args.prompt is None) == (not args.chat):
        parser.error("pass exactly one of --prompt TEXT or --chat")
    if args.prompt is not None and not args.prompt.strip():
        parser.error("the --prompt is empty")
    if args.threads:
        torch.set_num_threads(args.threads)

    texts = [read_text_file(p) for p in args.doc]
    model, tokenizer, note = load_generation_model(args.model, args.adapter)
    print(f"model: {args.model}; {note}", file=sys.stderr)
    state = model.load_memory(args.memory) if args.memory else None
    documents = read_memory_metadata(args.memory)["notes"].get("documents", []) if args.memory else []
    documents += args.doc
    if texts:
        state, _ = memorize_texts(model, tokenizer, texts, state)
    if state is not None:
        print(f"memory: {state.tokens_seen:,} tokens read", file=sys.stderr)
    session = ChatSession(model, tokenizer, state, use_chat_template=not args.no_chat_template)
    sampling = {
        k: v
        for k, v in dict(
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty
        ).items()
        if v is not None
    }
    torch.manual_seed(args.seed)

    def answer(message: str) -> None:
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        session.ask(message, streamer=streamer, max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, **sampling)
        print(f"[tokens read: {session.tokens_read:,}]", flush=True)

    if args.chat:
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                print("> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                break
            if line.strip():
                answer(line.rstrip("\n"))
    else:
        answer(args.prompt)
    if args.out and session.state is not None:
        model.save_memory(session.state, args.out, notes={"documents": documents, "chat_turns": session.turns})
        print(f"memory saved to {args.out} ({session.tokens_read:,} tokens read)", file=sys.stderr)


if __name__ == "__main__":
    run_script(main)
