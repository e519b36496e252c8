"""The recipe that builds dojo-tiny: tokenizer, model, pretraining, export, model card.

Notable choices:
- A byte-level BPE tokenizer trained on the shipped text, with digits split one per token so
  arithmetic is learnable by a model this small; ChatML special tokens; pad distinct from eos.
- A Llama-architecture model (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied embeddings)
  of a few million parameters, so it trains on a 2-core CPU in minutes. It is the course's own
  from-scratch `Transformer` (chapter 04) that trains; `to_hf` exports it as a Hugging Face
  `LlamaForCausalLM`, which is what ships.
- Pretraining mixes the shipped prose (`data/pretrain/`) with raw arithmetic text from the
  train split of `dojo.data.synthetic`. It never sees the chat format: SFT teaches that.

`python -m dojo.models.tiny` remakes `data/models/dojo-tiny/` (about 15 minutes on 2 cores);
`python -m dojo.models.tiny --chat` then remakes `data/models/dojo-tiny-chat/` by running the
default SFT recipe on it, and writes the measured accuracy change into both model cards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dojo import paths
from dojo.data import synthetic
from dojo.models.convert import from_hf, to_hf
from dojo.models.pretrain import lr_at, read_texts

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


@dataclass
class TinyRecipe:
    """Everything that decides what dojo-tiny is; written into its model card."""

    vocab_size: int = 2048  # BPE merges + 256 bytes + 4 special tokens
    hidden_size: int = 256
    intermediate_size: int = 688  # SwiGLU width, ~8/3 of hidden as in Llama
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention, 2 query heads per kv head
    max_position_embeddings: int = 512
    seq_len: int = 64  # pretraining chunk length; arithmetic lines are ~12 tokens
    batch_size: int = 48
    steps: int = 3000
    lr: float = 3e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    arithmetic_share: float = 0.8  # fraction of chunks drawn from arithmetic text
    arithmetic_lines: int = 150_000
    eval_every: int = 250  # steps between held-out accuracy checks during pretraining
    seed: int = 0


def arithmetic_texts(recipe: TinyRecipe) -> list[str]:
    """Raw arithmetic lines grouped into short documents of ten lines each."""
    lines = list(synthetic.pretraining_lines(recipe.arithmetic_lines, recipe.seed))
    return ["\n".join(lines[i : i + 10]) for i in range(0, len(lines), 10)]


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer with single-digit tokens and ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        model_max_length=512,
        padding_side="right",
    )
    tokenizer.chat_template = (paths.CHAT_TEMPLATES_DIR / "chatml.jinja").read_text()
    return tokenizer


def token_stream(tokenizer, docs: list[str]) -> torch.Tensor:
    """All documents tokenized and joined, each followed by <|endoftext|>."""
    sep = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids += enc + [sep]
    return torch.tensor(ids, dtype=torch.long)


def build_model(recipe: TinyRecipe, tokenizer):
    """Our from-scratch `Transformer` of the recipe's shape, freshly initialised.

    The initial weights are drawn by transformers' seeded Llama initialisation and converted
    with `from_hf`, so the starting point does not depend on which class trains it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(recipe.seed)
    return from_hf(LlamaForCausalLM(config)).train()


def _batch(streams: list[torch.Tensor], recipe: TinyRecipe, rng: torch.Generator) -> torch.Tensor:
    """A batch of random windows, each from the arithmetic or the prose stream."""
    rows = []
    for _ in range(recipe.batch_size):
        use_arith = torch.rand((), generator=rng).item() < recipe.arithmetic_share
        stream = streams[0] if use_arith else streams[1]
        start = torch.randint(0, len(stream) - recipe.seq_len, (), generator=rng).item()
        rows.append(stream[start : start + recipe.seq_len])
    return torch.stack(rows)


def pretrain(
    model, streams: list[torch.Tensor], recipe: TinyRecipe, tokenizer=None
) -> tuple[list[float], dict[int, float]]:
    """AdamW with warmup and cosine decay over random windows. Returns the loss per step and,
    when a tokenizer is given, held-out raw addition accuracy every `eval_every` steps."""
    rng = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.95), weight_decay=0.1)
    losses, accuracy = [], {}
    model.train()
    bar = tqdm(range(recipe.steps), desc="pretrain dojo-tiny")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(
                step, recipe.steps, recipe.warmup_steps, recipe.lr, recipe.min_lr_ratio
            )
        batch = _batch(streams, recipe, rng)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if tokenizer is not None and (step + 1) % recipe.eval_every == 0:
            accuracy[step + 1] = raw_arithmetic_accuracy(to_hf(model), tokenizer, n=100)
            bar.write(f"step {step + 1}: held-out raw addition accuracy {accuracy[step + 1]:.0%}")
    model.eval()
    return losses, accuracy


@torch.no_grad()
def raw_arithmetic_accuracy(model, tokenizer, n: int = 200) -> float:
    """Share of held-out `a + b = ` prompts the model completes correctly (greedy)."""
    problems = synthetic.make_problems("addition", n, split="eval")
    prompts = [p.solution.removesuffix(p.answer) for p in problems]
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(
        **enc, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    tokenizer.padding_side = "right"
    replies = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return (
        sum(
            synthetic.extract_answer(p + r) == q.answer
            for p, r, q in zip(prompts, replies, problems)
        )
        / n
    )


def build(out_dir: Path, recipe: TinyRecipe) -> dict:
    """Train the tokenizer and the model, save both in Hugging Face format with a model card."""
    start = time.time()
    random.seed(recipe.seed)
    prose, arith = read_texts(), arithmetic_texts(recipe)
    tokenizer = train_tokenizer(prose + arith[:2000], recipe.vocab_size)
    streams = [token_stream(tokenizer, arith), token_stream(tokenizer, prose)]
    model = build_model(recipe, tokenizer)
    losses, accuracy_curve = pretrain(model, streams, recipe, tokenizer)
    model = to_hf(model)  # what ships: a transformers LlamaForCausalLM with the trained weights
    model.generation_config.eos_token_id = [
        tokenizer.eos_token_id,
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    stats = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokens_seen": recipe.steps * recipe.batch_size * recipe.seq_len,
        "prose_tokens": len(streams[1]),
        "arithmetic_tokens": len(streams[0]),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "raw_addition_accuracy": raw_arithmetic_accuracy(model, tokenizer),
        "raw_addition_accuracy_by_step": accuracy_curve,
        "wall_time_s": round(time.time() - start, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "recipe.json").write_text(
        json.dumps({"recipe": asdict(recipe), "stats": stats}, indent=2)
    )
    (out_dir / "loss.json").write_text(json.dumps([round(x, 4) for x in losses]))
    write_card(out_dir)
    return stats


def write_card(model_dir: Path, sft: dict | None = None) -> str:
    """Write README.md (the model card) from recipe.json, plus the SFT check when given.

    `sft` holds the default SFT recipe's measured effect (accuracy before/after, wall time);
    it is stored in recipe.json so a later rewrite of the card keeps it.
    """
    record = json.loads((model_dir / "recipe.json").read_text())
    if sft is not None:
        record["sft_check"] = sft
        (model_dir / "recipe.json").write_text(json.dumps(record, indent=2))
    recipe, stats = record["recipe"], record["stats"]
    rows = "\n".join(f"| `{k}` | {v} |" for k, v in recipe.items())
    card = CARD.format(
        params=stats["parameters"] / 1e6,
        tokens=stats["tokens_seen"] / 1e6,
        prose=stats["prose_tokens"] / 1e3,
        arith=stats["arithmetic_tokens"] / 1e6,
        loss=stats["final_loss"],
        raw=stats["raw_addition_accuracy"] * 100,
        minutes=stats["wall_time_s"] / 60,
        rows=rows,
        sft=_sft_lines(record.get("sft_check")),
        curve=", ".join(
            f"{step}: {acc:.0%}"
            for step, acc in stats.get("raw_addition_accuracy_by_step", {}).items()
        )
        or "not recorded",
        **recipe,
    )
    (model_dir / "README.md").write_text(card)
    return card


def _sft_lines(sft: dict | None) -> str:
    if not sft:
        return "Not measured yet: run `python -m dojo.train` and compare the accuracy it prints."
    return (
        f"`python -m dojo.train` (the default recipe: SFT on `data/sft/arithmetic_train.jsonl`, "
        f"{sft['steps']} steps) raised exact-match accuracy on {sft['eval_problems']} held-out "
        f"arithmetic problems (`data/prompts/arithmetic_eval.jsonl`) from **{sft['accuracy_before'] * 100:.1f}% to {sft['accuracy_after'] * 100:.1f}%** "
        f"({(sft['accuracy_after'] - sft['accuracy_before']) * 100:+.1f} points) in "
        f"{sft['wall_time_s']:.0f} s on {sft['machine']}."
    )


CARD = """---
license: apache-2.0
language: [en, zh]
pipeline_tag: text-generation
---

# dojo-tiny

A Llama-architecture causal language model of {params:.2f}M parameters with its own byte-level
BPE tokenizer, made by LLM Dojo's own code so that every notebook and test of the course runs
offline on a laptop CPU. It is a teaching model: it continues text and knows two-digit
arithmetic, and it is small enough that SFT, DPO and GRPO visibly change what it does in minutes.

## Remake it

```bash
python -m dojo.models.tiny          # writes data/models/dojo-tiny/ (about {minutes:.0f} minutes on 2 CPU cores)
```

Everything is seeded; the recipe below is the whole of what decides the model.

## Architecture and tokenizer

- Trained as the course's from-scratch `dojo.models.Transformer` (notebook 04) and exported with
  `dojo.models.to_hf` as a transformers `LlamaForCausalLM`: hidden {hidden_size}, {num_hidden_layers} layers, {num_attention_heads} query heads
  and {num_key_value_heads} key/value heads (grouped-query attention), SwiGLU width {intermediate_size},
  RoPE, RMSNorm, tied input/output embeddings, context {max_position_embeddings}.
- Byte-level BPE, vocabulary {vocab_size}, trained with `tokenizers` on the shipped text; digits are
  split one per token so arithmetic is learnable at this size.
- Special tokens: `<|im_start|>`, `<|im_end|>` (eos: ends a turn), `<|endoftext|>` (document
  separator in pretraining), `<|pad|>` (pad, distinct from eos so the end of a reply is never
  masked out as padding). No BOS token.
- Chat template: plain ChatML (`chat_templates/chatml.jinja`) with `{{% generation %}}` markers,
  so `return_assistant_tokens_mask=True` and TRL's `assistant_only_loss=True` work.

## Training data

- Prose: the {prose:.0f}k tokens of `data/pretrain/*.txt` (written for this project, 80% English,
  20% Chinese; see that folder's README).
- Arithmetic: {arith:.2f}M tokens of lines such as `23 + 45 = 68`, `The sum of 23 and 45 is 68.` and
  `Question: Add 23 and 45.` / `Answer: 23 + 45 = 68` from `dojo.data.synthetic` (addition,
  subtraction, multiplication, comparison), **train split only**: the
  held-out problems used to score fine-tuning never appear in pretraining.
- It never saw the chat format: SFT teaches that.

## Training

{steps} steps of AdamW (lr {lr}, warmup {warmup_steps}, cosine to {min_lr_ratio} of peak, weight decay 0.1,
gradient clipping 1.0), batches of {batch_size} random windows of {seq_len} tokens
({arithmetic_share:.0%} arithmetic): {tokens:.1f}M tokens seen in {minutes:.1f} minutes on 2 CPU cores.
Final training loss (mean of the last 50 steps): **{loss:.3f}**. The per-step losses are in `loss.json`.

## What it can do

- Raw continuation of held-out `a + b =` prompts (greedy): **{raw:.1f}%** correct. During
  pretraining it rose like this (step: accuracy on 100 problems), a late jump typical of
  small models learning an algorithm rather than memorising: {curve}.
- In chat format, before any fine-tuning, it does not know to answer and stop. {sft}

## Recipe

| field | value |
| --- | --- |
{rows}

## Limits

A few million parameters trained on a few hundred kilobytes of text: its prose is fluent for a
sentence or two and then drifts, it knows no facts worth trusting, and its Chinese is weaker than
its English. Use it to learn and to test code, never to answer questions.
"""


CHAT_CARD = """---
license: apache-2.0
language: [en, zh]
pipeline_tag: text-generation
base_model: dojo-tiny
---

# dojo-tiny-chat

dojo-tiny (see `../dojo-tiny/README.md`) after LLM Dojo's default supervised fine-tuning recipe:
it answers arithmetic questions in the ChatML format and stops with `<|im_end|>`. It is the
starting point of the preference (DPO, KTO, ORPO, SimPO) and GRPO chapters, which need a model
that already follows the chat format.

## Remake it

```bash
python -m dojo.models.tiny --chat   # runs `python -m dojo.train` (the default recipe) on dojo-tiny
```

## What SFT did

{sft}

The recipe is the default of `dojo.train` (`python -m dojo.train --help` prints it): full
fine-tuning, assistant-only loss, on `data/sft/arithmetic_train.jsonl`; the accuracy is scored on
`data/prompts/arithmetic_eval.jsonl` (addition, subtraction, multiplication and comparison;
the first 200 problems), whose problems appear in no training file.
"""


def make_chat(base_dir: Path, out_dir: Path) -> dict:
    """dojo-tiny-chat: run the default SFT recipe (`python -m dojo.train`) on the base model,
    save the result to `out_dir`, and record the measured accuracy change in the base's card."""
    from dojo.train import train

    with tempfile.TemporaryDirectory() as tmp:
        result = train(model_name_or_path=str(base_dir), output_dir=f"{tmp}/run")
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.copytree(
            result.run_dir / "model", out_dir, ignore=shutil.ignore_patterns("training_args.bin")
        )
    summary = result.summary
    sft = {
        "steps": summary["steps"],
        "eval_problems": summary["accuracy_before"]["total"],
        "accuracy_before": summary["accuracy_before"]["accuracy"],
        "accuracy_after": summary["accuracy_after"]["accuracy"],
        "wall_time_s": summary["wall_time_s"],
        "tokens_per_s": summary.get("tokens_per_s"),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    write_card(base_dir, sft)
    (out_dir / "README.md").write_text(CHAT_CARD.format(sft=_sft_lines(sft)))
    return sft


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Remake dojo-tiny (or dojo-tiny-chat) from the shipped data."
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: data/models/...)"
    )
    parser.add_argument(
        "--chat", action="store_true", help="make dojo-tiny-chat from the base by the default SFT"
    )
    for name, value in asdict(TinyRecipe()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args())
    out, chat = args.pop("out"), args.pop("chat")
    if chat:
        stats = make_chat(paths.TINY_MODEL, out or paths.TINY_CHAT_MODEL)
    else:
        stats = build(out or paths.TINY_MODEL, TinyRecipe(**args))
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
