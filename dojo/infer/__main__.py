"""`python -m dojo.infer {generate,chat,merge,export,serve}`: inference from the command line.

python -m dojo.infer generate --model data/models/dojo-tiny --prompt "What is 2 + 3?"
python -m dojo.infer chat --model data/models/dojo-tiny --adapter runs/sft/model
python -m dojo.infer merge --adapter runs/sft/model --out runs/sft/merged
python -m dojo.infer serve --model data/models/dojo-tiny --adapter runs/sft/model --port 8000
"""

from __future__ import annotations

import argparse
import json
import sys

from dojo.infer.generate import SamplingOptions


def _model_args(p: argparse.ArgumentParser, need_model: bool = True) -> None:
    p.add_argument("--model", help="base model folder or hub id (default: the adapter's base)")
    p.add_argument("--adapter", help="a PEFT adapter folder, e.g. runs/<name>/model")
    p.add_argument("--device", help="cpu | cuda | cuda:1 (default: cuda when available)")
    p.add_argument("--dtype", default="auto", help="float32 | bfloat16 | float16 | auto")


def _sampling_args(p: argparse.ArgumentParser) -> None:
    d = SamplingOptions()
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--top-k", type=int, default=d.top_k, help="0 = off")
    p.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty)
    p.add_argument("--seed", type=int, default=None)


def _options(a: argparse.Namespace) -> SamplingOptions:
    return SamplingOptions(
        max_new_tokens=a.max_new_tokens,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=a.top_k,
        repetition_penalty=a.repetition_penalty,
        seed=a.seed,
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m dojo.infer", description=__doc__.split("\n")[0])
    sub = root.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="reply to one or more prompts (streams a single one)")
    _model_args(gen)
    _sampling_args(gen)
    gen.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    gen.add_argument("--system", help="a system prompt for every conversation")

    chat = sub.add_parser("chat", help="an interactive chat in the terminal, streamed")
    _model_args(chat)
    _sampling_args(chat)
    chat.add_argument("--system", help="the system prompt")

    for name in ("merge", "export"):
        merge = sub.add_parser(name, help="fold an adapter into its base; save a standalone model")
        merge.add_argument("--adapter", required=True, help="the PEFT adapter folder")
        merge.add_argument("--model", help="the base (default: the adapter's base)")
        merge.add_argument("--out", required=True, help="where to write the merged model")
        merge.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
        merge.add_argument(
            "--base-bits", type=int, choices=(0, 4, 8), default=None,
            help="the base was trained in 4 / 8 bit (0: full precision); default: from the run",
        )  # fmt: skip

    serve = sub.add_parser("serve", help="an OpenAI-compatible HTTP server")
    _model_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model-name", help="the id clients send (default: the folder name)")
    serve.add_argument("--api-key", help="require `Authorization: Bearer KEY`")
    serve.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens allowed")
    serve.add_argument("--max-pending", type=int, default=64, help="queue size before 429")
    return root


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.command in ("merge", "export"):
        from dojo.infer.merge import export_merged

        check = export_merged(a.adapter, a.out, a.model, a.dtype, a.base_bits)
        print(json.dumps(check, indent=2))
        return 0
    if a.command == "serve":
        from dojo.infer.serve import ServerLimits, serve

        limits = ServerLimits(max_tokens=a.max_tokens, max_pending=a.max_pending)
        serve(
            a.model, a.adapter, a.host, a.port, a.model_name, limits, a.api_key, a.device, a.dtype
        )
        return 0

    from dojo.infer.load import load_for_inference

    options = _options(a)
    model, tokenizer = load_for_inference(a.model, a.adapter, a.device, a.dtype)
    if a.command == "chat":
        from dojo.infer.chat import chat_loop

        chat_loop(model, tokenizer, options, system=a.system)
        return 0
    system = [{"role": "system", "content": a.system}] if a.system else []
    conversations = [system + [{"role": "user", "content": p}] for p in a.prompt]
    if len(conversations) == 1:
        from dojo.infer.generate import ReplyStream

        for piece in ReplyStream(model, tokenizer, conversations[0], options):
            print(piece, end="", flush=True)
        print()
        return 0
    from dojo.infer.generate import generate_replies

    kwargs = options.generate_kwargs()
    for prompt, reply in zip(a.prompt, generate_replies(model, tokenizer, conversations, **kwargs)):
        print(json.dumps({"prompt": prompt, "reply": reply}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
