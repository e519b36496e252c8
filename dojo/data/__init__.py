"""Data for every training method: load, convert to TRL formats, validate, tokenize, pack, measure.

`load(source, kind)` turns a file, a folder, a list of records or a hub dataset into TRL's
conversational format for `kind` ("sft", "preference", "kto", "prompt", "text");
`load_dataset_for(method, ...)` does the same for a trainer and adds the eval split. Invalid
records raise `DataError` naming the file, line and field, or are dropped and counted with
`on_error="skip"`. `dojo.data.synthetic` generates the seeded verifiable tasks.
"""

from dojo.data.formats import (
    FORMATS,
    Format,
    detect_format,
    get_format,
    messages_to_alpaca,
    messages_to_sharegpt,
    register,
)
from dojo.data.load import METHOD_KINDS, load, load_dataset_for, load_records
from dojo.data.packing import (
    PackedCollator,
    PaddedCollator,
    best_fit_decreasing,
    check_packing,
    pack_dataset,
    padding_waste,
)
from dojo.data.sft import IGNORE_INDEX, tokenize_conversation, tokenize_sft
from dojo.data.stats import length_stats, plot_length_stats
from dojo.data.synthetic import (
    Problem,
    extract_answer,
    is_correct,
    make_problems,
    mixed_problems,
    to_messages,
)
from dojo.data.validate import DataError, Summary

__all__ = [
    "FORMATS",
    "IGNORE_INDEX",
    "METHOD_KINDS",
    "DataError",
    "Format",
    "PackedCollator",
    "PaddedCollator",
    "Problem",
    "Summary",
    "best_fit_decreasing",
    "check_packing",
    "detect_format",
    "extract_answer",
    "get_format",
    "is_correct",
    "length_stats",
    "load",
    "load_dataset_for",
    "load_records",
    "make_problems",
    "messages_to_alpaca",
    "messages_to_sharegpt",
    "mixed_problems",
    "pack_dataset",
    "padding_waste",
    "plot_length_stats",
    "register",
    "to_messages",
    "tokenize_conversation",
    "tokenize_sft",
]
