"""A causal LM whose reply is a Python function of its prompt: a judge with known verdicts.

    model = ScriptedModel(tokenizer, lambda prompt: "Looks right. Rating: [[8]]")
    with dojo.infer.serve.running(model, tokenizer=tokenizer, model_name="rules") as url:
        Judge(base_url=url).grade("What is 2 + 2?", "4")   # -> Grade(score=8.0, ...)

Why it exists: a judge pipeline has many moving parts (prompt, HTTP, chat template, streaming,
verdict parsing, position swapping), and on a CPU there is no model small enough to run that is
also a capable judge. A scripted model goes through exactly the same path as a real one
(`model.generate`, the chat template, the OpenAI-compatible server) with verdicts we know in
advance, so the pipeline can be tested end to end and shown in a notebook. It is never a
substitute for a real judge's opinion; the gpu profile uses a real instruction-tuned model.

Notable choices:
- The reply is decided from the decoded prompt (everything before the last generation prompt
  of the chat template) and then emitted token by token as a one-hot next-token distribution,
  so greedy and sampled decoding give the same text, followed by the end-of-turn token.
- No KV cache (`use_cache=False`): each step sees the whole sequence and can find its place in
  the scripted reply. Replies are short, so the quadratic cost does not matter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast


class ScriptedModel(LlamaForCausalLM):
    """A transformers causal LM that replies `script(prompt_text)` to every conversation."""

    def __init__(self, tokenizer, script: Callable[[str], str], context: int | None = None) -> None:
        context = context or getattr(tokenizer, "model_max_length", 2048)
        if not isinstance(context, int) or context > 1_000_000:  # "unlimited" sentinel
            context = 2048
        config = LlamaConfig(
            vocab_size=len(tokenizer),  # a real model's vocabulary, so the tokenizer fits
            hidden_size=8,  # the weights are never used: forward() below decides the logits
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=1,
            num_key_value_heads=1,
            max_position_embeddings=context,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=False,
        )
        super().__init__(config)
        self.generation_config.use_cache = False
        self.generation_config.eos_token_id = tokenizer.eos_token_id
        self.tokenizer, self.script = tokenizer, script
        marker = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
        )
        plain = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=False
        )
        if not marker.startswith(plain) or marker == plain:
            raise ValueError("the chat template adds no generation prompt to find replies by")
        # The tokens that open the assistant's turn: the reply is what follows the last of them.
        self.reply_header = tokenizer(marker[len(plain) :], add_special_tokens=False)["input_ids"]

    def reply_for(self, ids: list[int]) -> tuple[list[int], int]:
        """The scripted reply's token ids (ending with end-of-turn) and how many are out."""
        n = len(self.reply_header)
        starts = [i for i in range(len(ids) - n + 1) if ids[i : i + n] == self.reply_header]
        if not starts:
            raise ValueError("no generation prompt in the input: render it with the template")
        begin = starts[-1] + n
        prompt = self.tokenizer.decode(ids[: starts[-1]], skip_special_tokens=False)
        reply = self.tokenizer(self.script(prompt), add_special_tokens=False)["input_ids"]
        return reply + [self.tokenizer.eos_token_id], len(ids) - begin

    def forward(self, input_ids=None, attention_mask=None, **kwargs):  # noqa: D401
        batch, length = input_ids.shape
        logits = torch.full((batch, length, self.config.vocab_size), -1e4, device=input_ids.device)
        for row in range(batch):
            ids = input_ids[row]
            if attention_mask is not None:  # left padding: keep the real tokens only
                ids = ids[attention_mask[row].bool()]
            target, done = self.reply_for(ids.tolist())
            logits[row, -1, target[min(done, len(target) - 1)]] = 0.0
        return CausalLMOutputWithPast(logits=logits)
