"""Inference: generate, chat, merge / export adapters, and an OpenAI-compatible server.

- `dojo.infer.generate`: batched replies (`generate_replies`), streamed replies
  (`ReplyStream`) and the sampling options the CLI and server share (`SamplingOptions`).
- `dojo.infer.load`: a base model plus an optional PEFT adapter, ready for generation.
- `dojo.infer.chat`: the interactive chat loop behind `python -m dojo.infer chat`.
- `dojo.infer.merge`: fold an adapter into its base (dequantising a 4-bit base first) and
  export a standalone Hugging Face model, checked against base + adapter.
- `dojo.infer.serve`: `/v1/models` and `/v1/chat/completions` (with SSE streaming);
  `running(model, adapter)` serves in-process on a free port and yields the base URL.

`python -m dojo.infer {generate,chat,merge,export,serve} --help` for the command line.
"""

from dojo.infer.generate import ReplyStream, SamplingOptions, generate_replies
from dojo.infer.load import load_for_inference

__all__ = ["ReplyStream", "SamplingOptions", "generate_replies", "load_for_inference"]
