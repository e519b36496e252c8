"""Loading: files, folders, in-memory records or hub datasets, into TRL-format `datasets.Dataset`s.

Notable choices:
- Every record keeps where it came from (`file line 14`, `file record 3`, `name[train] row 7`)
  until it is converted and validated, so an error points at the exact place to fix.
- The format is detected once per file (on its first record) unless given: a broken record later
  in the file then gets a precise "missing field" error instead of a vague "unknown format".
- In a folder, files whose name ends in `_eval`/`_test`/`_validation` form the eval split and the
  rest the train split; a file `x_train.jsonl` or `x.jsonl` finds its eval file `x_eval.jsonl`.
- `max_samples` and the seeded shuffle apply to raw records before conversion, so sampling a
  few rows of a large hub dataset does not convert all of it.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dojo.data.formats import FORMATS, KINDS, Format, detect_format, get_format
from dojo.data.validate import CHECKS, DataError, Summary

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt")
EVAL_SUFFIXES = ("_eval", "_test", "_validation", "_valid", "_dev")
# CSV cells are strings: these columns hold JSON (lists of messages) when they start with [ or {.
STRUCTURED_COLUMNS = (
    "conversations",
    "messages",
    "prompt",
    "chosen",
    "rejected",
    "completion",
    "history",
)
# The trainer each method uses, and the kind of data it wants.
METHOD_KINDS = {
    "sft": "sft",
    "pretrain": "text",
    "dpo": "preference",
    "orpo": "preference",
    "reward": "preference",
    "kto": "kto",
    "grpo": "prompt",
}

Raw = tuple[Any, str]  # (record or the DataError reading it, where it came from)


def is_eval_file(path: Path) -> bool:
    """Whether a file's name marks it as held-out data (`x_eval.jsonl`, `y_test.json`)."""
    return path.stem.lower().endswith(EVAL_SUFFIXES)


def eval_sibling(path: Path) -> Path | None:
    """The eval file that goes with a train file: `x_train.jsonl` or `x.jsonl` -> `x_eval.jsonl`."""
    stem = path.stem.removesuffix("_train")
    for candidate in (path.with_name(f"{stem}_eval{path.suffix}"),):
        if candidate.exists() and candidate != path:
            return candidate
    return None


def data_files(folder: Path, split: str | None = None) -> list[Path]:
    """The data files in a folder (recursively) that belong to `split` ("train" or "eval")."""
    files = sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    want_eval = split is not None and split != "train"
    return [p for p in files if is_eval_file(p) == want_eval]


def _read_jsonl(path: Path) -> Iterator[Raw]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            try:  # without the newline, so a cut-off line reports its own column
                yield json.loads(line.rstrip("\r\n")), where
            except json.JSONDecodeError as e:
                yield (
                    DataError(where, f"not valid JSON ({e.msg} at column {e.colno})", "bad json"),
                    where,
                )


def _read_json(path: Path) -> Iterator[Raw]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON lines saved with a .json name
            yield from _read_jsonl(path)
            return
        raise DataError(
            f"{path} line {e.lineno}", f"not valid JSON ({e.msg} at column {e.colno})", "bad json"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(str(path), "a .json data file must hold a list of records", "type")
    for i, record in enumerate(data):
        yield record, f"{path} record {i}"


def _read_table(path: Path) -> Iterator[Raw]:
    import datasets

    table = datasets.load_dataset(path.suffix[1:], data_files=str(path), split="train")
    for i, row in enumerate(table):
        yield _decode_cells(row), f"{path} row {i}"


def _decode_cells(row: dict) -> dict:
    for key in STRUCTURED_COLUMNS:
        value = row.get(key)
        if isinstance(value, str) and value[:1] in "[{":
            # A plain string that merely starts with a bracket stays a string.
            with contextlib.suppress(json.JSONDecodeError):
                row[key] = json.loads(value)
    return row


def _read_text(path: Path) -> Iterator[Raw]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():  # blank lines separate paragraphs; they are not records
                yield {"text": line.rstrip("\n")}, f"{path} line {n}"


READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".parquet": _read_table,
    ".csv": _read_table,
    ".txt": _read_text,
}


def read_file(path: Path) -> list[Raw]:
    """Every record of one file with its location."""
    if path.suffix not in READERS:
        raise ValueError(f"{path}: unsupported file type; expected one of {', '.join(READERS)}")
    return list(READERS[path.suffix](path))


def read_hub(
    name: str, split: str | None = None, max_samples: int | None = None, seed: int | None = None
) -> list[Raw]:
    """Rows of a Hugging Face hub dataset (`name` or `name:config`) with their locations."""
    import datasets

    repo, _, config = name.partition(":")
    split = split or "train"
    table = datasets.load_dataset(repo, config or None, split=split)
    if seed is not None:
        table = table.shuffle(seed=seed)
    if max_samples is not None:
        table = table.select(range(min(max_samples, len(table))))
    return [(dict(row), f"{name}[{split}] row {i}") for i, row in enumerate(table)]


def read_source(
    source: Any, split: str | None = None, max_samples: int | None = None, seed: int | None = None
) -> list[list[Raw]]:
    """The records of a source, grouped by file (each group is detected separately)."""
    if isinstance(source, list | tuple):
        return [[(r, f"record {i}") for i, r in enumerate(source)]]
    path = Path(source)
    if path.is_dir():
        files = data_files(path, split)
        if not files:
            raise FileNotFoundError(
                f"{path}: no {split or 'train'} data files ({', '.join(SUFFIXES)}) in this folder"
            )
        return [read_file(p) for p in files]
    if path.is_file():
        if split not in (None, "train") and not is_eval_file(path):
            sibling = eval_sibling(path)
            if sibling is None:
                raise FileNotFoundError(
                    f"{path}: split {split!r} asked for but no {path.stem}_eval file"
                )
            path = sibling
        return [read_file(path)]
    if path.suffix in SUFFIXES or str(source).startswith((".", "/")):
        raise FileNotFoundError(f"{source}: no such file or folder")
    return [read_hub(str(source), split, max_samples, seed)]


def _group_format(group: list[Raw], kind: str, fmt_name: str) -> Format | None:
    """The format of one file: given, or detected on its first recognisable record."""
    if fmt_name != "auto":
        return get_format(fmt_name)
    for record, where in group:
        if isinstance(record, DataError):
            continue
        try:
            return detect_format(record, kind, where)
        except DataError:
            continue
    return None  # every record then reports why no format fits it


def _convert(
    raw: Raw, fmt: Format | None, kind: str, explicit: bool
) -> tuple[dict, list[str], Format]:
    record, where = raw
    if isinstance(record, DataError):
        raise record
    if not isinstance(record, dict):
        raise DataError(
            where, f"a record must be a JSON object, got {type(record).__name__}", "type"
        )
    if fmt is None or (not explicit and not fmt.detect(record)):
        # A record unlike its file's first: detect it on its own, or let the file's format
        # convert it and say precisely what is missing.
        try:
            fmt = detect_format(record, kind, where)
        except DataError:
            if fmt is None:
                raise
    converted, fixes = _apply(fmt, record, where)
    try:
        CHECKS[kind](converted, where)
    except DataError as e:
        raise _in_sharegpt_terms(e, record, fixes) if fmt.name == "sharegpt" else e from None
    return converted, fixes, fmt


def _apply(fmt: Format, record: dict, where: str) -> tuple[dict, list[str]]:
    """Run a converter; a record of the wrong shape for it still gets a located DataError."""
    try:
        return fmt.convert(record, where)
    except KeyError as e:
        problem = f"missing field {e.args[0]!r} (format {fmt.name}: {fmt.keys})"
        raise DataError(where, problem, "missing field") from None
    except (TypeError, AttributeError) as e:
        problem = f"does not have the shape of format {fmt.name} ({fmt.keys}): {e}"
        raise DataError(where, problem, "type") from None


def _in_sharegpt_terms(error: DataError, record: dict, fixes: list[str]) -> DataError:
    """Say `conversations[2] ('gpt')` rather than `messages[2] (assistant)`: the file's words."""
    turns = record["conversations"]
    offset = 1 if "empty system message removed" in fixes else 0

    def turn(match: re.Match) -> str:
        i = int(match.group(1)) + offset
        source = turns[i].get("from") if i < len(turns) else "?"
        before = turns[i - 1].get("from") if 0 < i <= len(turns) else None
        if before and match.group(2):
            return f"conversations[{i}] has role '{source}' after '{before}'"
        return f"conversations[{i}] ('{source}')"

    problem = re.sub(
        r"messages\[(\d+)\](?: \(\w+\))?( has role '\w+' after '\w+')?", turn, error.problem
    )
    problem = problem.replace(
        "roles must alternate user/assistant", "turns must alternate human/gpt"
    ).replace("field 'messages'", "field 'conversations'")
    return DataError(error.where, problem, error.reason)


def _same_columns(records: list[dict]) -> list[dict]:
    """Give every record the same columns (None where absent): Arrow infers from the first row."""
    columns: dict[str, None] = {}
    for r in records:
        columns.update(dict.fromkeys(r))
    return [{c: r.get(c) for c in columns} for r in records]


def load_records(
    source: Any,
    kind: str,
    format: str = "auto",
    split: str | None = None,
    max_samples: int | None = None,
    seed: int | None = None,
    on_error: str = "raise",
) -> tuple[list[dict], Summary]:
    """Read, convert and validate `source` into TRL-format records, with a summary."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
    if format != "auto" and get_format(format).kind != kind:
        raise ValueError(f"format {format!r} produces {FORMATS[format].kind!r} data, not {kind!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")
    groups = read_source(source, split, max_samples, seed)
    formats = [_group_format(group, kind, format) for group in groups]
    items = [(raw, formats[g]) for g, group in enumerate(groups) for raw in group]
    if seed is not None:
        random.Random(seed).shuffle(items)
    if max_samples is not None:
        items = items[:max_samples]
    summary = Summary(source=_describe(source), kind=kind, format=format)
    records = []
    for raw, fmt in items:
        summary.total += 1
        try:
            converted, fixes, used = _convert(raw, fmt, kind, format != "auto")
        except DataError as e:
            if on_error == "raise":
                raise
            summary.record_drop(e)
            continue
        summary.formats[used.name] += 1
        summary.record_fix(fixes)
        records.append(converted)
    if not records:
        raise DataError(summary.source, f"no valid records left\n{summary}", "empty")
    return _same_columns(records), summary


def _describe(source: Any) -> str:
    return f"{len(source)} in-memory records" if isinstance(source, list | tuple) else str(source)


def load(
    source: Any,
    kind: str,
    format: str = "auto",
    split: str | None = None,
    max_samples: int | None = None,
    seed: int | None = None,
    on_error: str = "raise",
    return_summary: bool = False,
):
    """Load `source` (file, folder, list of records or hub name) as a TRL-format Dataset of `kind`."""
    import datasets

    records, summary = load_records(source, kind, format, split, max_samples, seed, on_error)
    dataset = datasets.Dataset.from_list(records)
    return (dataset, summary) if return_summary else dataset


def load_dataset_for(
    method: str,
    path_or_name: Any,
    split: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    eval_fraction: float | None = None,
    format: str = "auto",
    on_error: str = "raise",
):
    """Train and eval datasets in the shape `method`'s TRL trainer wants, and the load summary.

    The eval set is, in order: a random `eval_fraction` of the data if given; else the source's
    own eval files (a folder's `*_eval` files, a file's `x_eval` sibling); else None.
    """
    import datasets

    if method not in METHOD_KINDS:
        raise ValueError(f"method={method!r}; expected one of {', '.join(METHOD_KINDS)}")
    kind = METHOD_KINDS[method]
    train, summary = load(
        path_or_name, kind, format, split, max_samples, seed, on_error, return_summary=True
    )
    if eval_fraction:
        parts = train.train_test_split(test_size=eval_fraction, seed=seed)
        return parts["train"], parts["test"], summary
    eval_set = None
    if split in (None, "train") and _has_eval(path_or_name):
        records, eval_summary = load_records(
            path_or_name, kind, format, "eval", None, None, on_error
        )
        eval_set = datasets.Dataset.from_list(records)
        summary.eval = eval_summary
    return train, eval_set, summary


def _has_eval(source: Any) -> bool:
    if isinstance(source, list | tuple):
        return False
    path = Path(source)
    if path.is_dir():
        return bool(data_files(path, "eval"))
    return path.is_file() and not is_eval_file(path) and eval_sibling(path) is not None
