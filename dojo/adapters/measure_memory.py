"""Measure the peak memory of a few training steps, in a process of its own.

    python -m dojo.adapters.measure_memory '{"config": "data/models/dojo-tiny", "methods": ["full"], ...}'

`dojo.adapters.memory.measure_peak_memories` runs this module in a subprocess so that nothing
else the caller holds counts. argv[1] is a JSON spec (config, methods, batch, seq_len,
precision, gradient_checkpointing, r, steps, device); the last line printed is a JSON object
{method: {bytes...}}.

Several methods share one process (imports dominate the run time on a small CPU). Each is
measured from the resident memory just before its own model is built; the peak counter is reset
once the model stands (so a loading spike does not count) and read after the training steps, so
`peak` is the model plus everything training added, as the kernel saw it.

Every large tensor should live in anonymous memory, as it would on a GPU: `from_pretrained` on
CPU leaves float tensors as views into the memory-mapped safetensors file, which keeps the whole
file mapped (the float32 linear weights that were quantised away included) and pages it in as
training touches it. The QLoRA path therefore copies those tensors out and lets the mapping go.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _tensor_bytes(model) -> int:
    """Bytes of every distinct tensor storage the model holds, 4-bit quantisation constants included."""
    storages = {}
    for module in model.modules():
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:
            tensors += [state.absmax, state.code]
            if getattr(state, "state2", None) is not None:
                tensors += [state.state2.absmax, state.state2.code]
        for t in tensors:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def _config(spec_config):
    from transformers import AutoConfig, LlamaConfig

    if isinstance(spec_config, dict):
        values = {k: v for k, v in spec_config.items() if k != "model_type"}
        return LlamaConfig(**values)
    return AutoConfig.from_pretrained(spec_config)


def _build(spec: dict, config, folder: str | None):
    from transformers import AutoModelForCausalLM

    dtype = DTYPES[spec["precision"]]
    method = spec["method"]
    if method == "qlora":
        from dojo.adapters.qlora import load_quantized, prepare_qlora

        model = load_quantized(folder, 4, dtype, device_map=spec["device"])
        _own_memory(model)
        return prepare_qlora(
            model, r=spec["r"], gradient_checkpointing=spec["gradient_checkpointing"]
        )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(spec["device"])
    if spec["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        if spec["gradient_checkpointing"]:
            model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=spec["r"], target_modules="all-linear"))
    return model


@torch.no_grad()
def _own_memory(model) -> None:
    """Copy float tensors that still point into the mapped checkpoint into memory of their own."""
    for module in model.modules():
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if type(tensor).__name__ in {"Params4bit", "Int8Params"} or tensor.device.type != "cpu":
                continue
            tensor.data = tensor.data.clone()
    gc.collect()


def _train(model, spec: dict, vocab: int, steps: int) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=False)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (spec["batch"], spec["seq_len"]), generator=gen)
    ids = ids.to(spec["device"])
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def _folder(config) -> str:
    """QLoRA loads from disk: save a model with this config to a temporary folder."""
    from transformers import AutoModelForCausalLM

    folder = tempfile.mkdtemp(prefix="dojo-mem-")
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def _tiny(config):
    """A one-block copy of `config` for warming up kernels and thread pools."""
    tiny = config.to_dict()
    tiny.update(hidden_size=64, intermediate_size=128, num_hidden_layers=1, vocab_size=256)
    tiny.update(num_attention_heads=4, num_key_value_heads=min(4, config.num_key_value_heads))
    tiny.pop("head_dim", None)
    return type(config)(**{k: v for k, v in tiny.items() if k != "model_type"})


def measure(spec: dict, method: str, config, folder: str | None) -> dict:
    """Peak bytes of `spec["steps"]` training steps of `method`, counted from its loaded model."""
    cuda = spec["device"].startswith("cuda")
    spec = {**spec, "method": method}
    start = time.perf_counter()
    _reset_peak()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() if cuda else _rss("VmRSS")
    model = _build(spec, config, folder)
    _reset_peak()  # loading may spike (file reads, quantisation); count training only
    after_load = torch.cuda.memory_allocated() if cuda else _rss("VmRSS")
    _train(model, spec, config.vocab_size, spec["steps"])
    peak = torch.cuda.max_memory_allocated() if cuda else _rss("VmHWM")
    tensors = _tensor_bytes(model)
    del model
    return {
        "baseline": baseline,  # resident before the model was built (interpreter, libraries)
        "model_loaded": after_load - baseline,  # resident growth once the model stands
        "model_tensors": tensors,  # what the model's tensors occupy, by their sizes
        "peak": peak - baseline,  # the measured peak during training, above the baseline
        "seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])  # threads: torch follows OMP_NUM_THREADS
    config = _config(spec["config"])
    methods = spec["methods"]
    quantized = "qlora" in methods
    folder = _folder(config) if quantized else None
    tiny = _tiny(config)
    tiny_folder = _folder(tiny) if quantized else None
    for method in methods:  # warm up every code path first, so no method pays for it
        warm = _build({**spec, "method": method}, tiny, tiny_folder)
        _train(warm, {**spec, "batch": 1, "seq_len": 8}, 256, 2)
        del warm
    gc.collect()
    results = {method: measure(spec, method, config, folder) for method in methods}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
