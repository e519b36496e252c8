"""Parameter-efficient fine-tuning: LoRA, DoRA, LoRA+, NF4 and int8 from scratch; QLoRA with PEFT
and bitsandbytes; target modules per family and freeze-tuning; a training-memory planner.

One module per idea: `lora`, `dora`, `compare` (ours vs PEFT), `loraplus`, `nf4`, `int8`, `qlora`, `targets`, `tuning`,
`memory` (planner) with `measure_memory` (the subprocess that measures real peaks). The
from-scratch pieces are checked against PEFT and bitsandbytes in the tests.
"""

from dojo.adapters.compare import compare_with_peft, peft_twin, perturb_adapters
from dojo.adapters.dora import DoRALinear, magnitude_direction_change
from dojo.adapters.int8 import int8_dequantize, int8_quantize
from dojo.adapters.lora import (
    LoRALinear,
    add_lora,
    load_lora,
    lora_layers,
    lora_state_dict,
    merge_lora,
    save_lora,
    unmerge_lora,
)
from dojo.adapters.loraplus import create_loraplus_optimizer, loraplus_param_groups
from dojo.adapters.memory import (
    MemoryEstimate,
    estimate_memory,
    measure_peak_memories,
    measure_peak_memory,
    memory_table,
)
from dojo.adapters.nf4 import NF4State, nf4_code, nf4_dequantize, nf4_quantize
from dojo.adapters.qlora import (
    dequantize_model,
    load_quantized,
    merge_qlora,
    prepare_qlora,
    quantization_config,
)
from dojo.adapters.targets import (
    DEFAULT_TARGET_MODULES,
    count_parameters,
    default_target_modules,
    freeze_all_but_last,
    linear_layer_names,
    match_target_modules,
)
from dojo.adapters.tuning import apply_tuning, chat_batch, peft_config_for, train_steps

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "DoRALinear",
    "LoRALinear",
    "MemoryEstimate",
    "NF4State",
    "add_lora",
    "apply_tuning",
    "chat_batch",
    "compare_with_peft",
    "count_parameters",
    "create_loraplus_optimizer",
    "default_target_modules",
    "dequantize_model",
    "estimate_memory",
    "freeze_all_but_last",
    "int8_dequantize",
    "int8_quantize",
    "linear_layer_names",
    "load_lora",
    "load_quantized",
    "lora_layers",
    "lora_state_dict",
    "magnitude_direction_change",
    "loraplus_param_groups",
    "match_target_modules",
    "measure_peak_memories",
    "measure_peak_memory",
    "memory_table",
    "merge_lora",
    "merge_qlora",
    "nf4_code",
    "nf4_dequantize",
    "nf4_quantize",
    "peft_config_for",
    "peft_twin",
    "perturb_adapters",
    "prepare_qlora",
    "quantization_config",
    "save_lora",
    "train_steps",
    "unmerge_lora",
]
