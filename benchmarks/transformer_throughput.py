"""Training throughput, forward + backward tokens/s: our `Transformer` vs HF `LlamaForCausalLM`.

Both arms hold the same weights (ours is built from the config, then `to_hf` makes the HF copy)
in fp32 on the CPU (or `--device cuda`), and run the same batches of random token ids with
`labels=input_ids`: one forward, one backward, gradients cleared. Steps of the two arms alternate,
so a noisy shared machine slows both alike; the first `--warmup` steps are not timed. The default
size is dojo-tiny's. Run:

    python benchmarks/transformer_throughput.py            # prints a table and the ratio
    python benchmarks/transformer_throughput.py --hidden 512 --layers 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dojo.models import Transformer, TransformerConfig, to_hf


def _step(model: torch.nn.Module, batch: torch.Tensor) -> float:
    if batch.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    if batch.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(
    config: TransformerConfig,
    steps: int = 20,
    warmup: int = 3,
    batch_size: int = 8,
    seq_len: int = 256,
    device: str = "cpu",
    seed: int = 0,
) -> dict:
    """Time `steps` forward+backward passes of each arm on the same batches; return the numbers."""
    torch.manual_seed(seed)
    ours = Transformer(config).to(device).train()
    hf = to_hf(ours).to(device).train()
    hf.config.use_cache = False
    generator = torch.Generator().manual_seed(seed)
    arms = {"dojo": ours, "hf_llama": hf}
    seconds = dict.fromkeys(arms, 0.0)
    for i in range(warmup + steps):
        batch = torch.randint(0, config.vocab_size, (batch_size, seq_len), generator=generator)
        batch = batch.to(device)
        for name, model in arms.items():
            elapsed = _step(model, batch)
            if i >= warmup:
                seconds[name] += elapsed
    tokens = steps * batch_size * seq_len
    result = {
        "config": config.to_dict(),
        "parameters": ours.num_parameters(),
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "device": device,
        "threads": torch.get_num_threads(),
    }
    for name in arms:
        result[name] = {
            "seconds": round(seconds[name], 3),
            "tokens_per_s": round(tokens / seconds[name], 1),
        }
    result["ratio"] = round(result["dojo"]["tokens_per_s"] / result["hf_llama"]["tokens_per_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--intermediate", type=int, default=688)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--tied", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    config = TransformerConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        tie_word_embeddings=args.tied,
    )
    r = run(config, args.steps, args.warmup, args.batch_size, args.seq_len, args.device)
    print(
        f"{r['parameters']:,} parameters, {r['steps']} steps of {r['batch_size']} x {r['seq_len']} "
        f"tokens, fp32 on {r['device']} ({r['threads']} threads)"
    )
    print(f"{'arm':<10}{'seconds':>10}{'tokens/s':>12}")
    for arm in ("dojo", "hf_llama"):
        print(f"{arm:<10}{r[arm]['seconds']:>10.2f}{r[arm]['tokens_per_s']:>12.0f}")
    print(f"dojo / HF Llama forward+backward tokens per second: {r['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
