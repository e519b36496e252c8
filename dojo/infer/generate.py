"""Generation from chat conversations with a model's own chat template: batched and streamed.

Notable choices:
- Prompts always go through `tokenizer.apply_chat_template(..., add_generation_prompt=True)`,
  so what is served is exactly the format the model was trained on.
- Batches are left-padded, so every row's reply starts at the same column.
- `ReplyStream` runs `model.generate` in a worker thread with transformers'
  `TextIteratorStreamer` and yields text as it is decoded. One stopping criterion both counts
  the generated tokens and lets the consumer cancel (a client that went away, a stop string
  that appeared), so an abandoned stream frees the model within one decoding step.
- Stop strings are matched on the decoded text, and the text that could still be the start of
  a stop string is held back, so a stop string is never emitted (as in the OpenAI API).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer


@torch.no_grad()
def generate_replies(
    model,
    tokenizer,
    conversations: list[list[dict]],
    max_new_tokens: int = 32,
    batch_size: int = 64,
    do_sample: bool = False,
    **generate_kwargs,
) -> list[str]:
    """The assistant's reply to each conversation (greedy unless `do_sample`), special tokens
    stripped. Prompts are left-padded so every row's reply starts at the same column."""
    replies: list[str] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    try:
        for i in range(0, len(conversations), batch_size):
            texts = [
                tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                for c in conversations[i : i + batch_size]
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(model.device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                pad_token_id=tokenizer.pad_token_id,
                **generate_kwargs,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            replies += [r.strip() for r in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return replies


@dataclass
class SamplingOptions:
    """How to pick the next token; the CLI flags and the server's request fields map onto these."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy decoding; > 0 samples
    top_p: float = 1.0  # nucleus sampling: keep the smallest set of tokens with this mass
    top_k: int = 0  # keep only the k most likely tokens; 0 turns it off
    repetition_penalty: float = 1.0  # > 1 discourages repeating tokens already generated
    seed: int | None = None  # fixes the sampled tokens (set inside the generation lock)

    def __post_init__(self):
        checks = [
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            ("temperature", self.temperature >= 0, ">= 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("top_k", self.top_k >= 0, ">= 0"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be {rule}")

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `model.generate`."""
        kwargs = {"max_new_tokens": self.max_new_tokens}
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.temperature == 0:
            # explicit None/1.0 silence transformers' warnings about a model's sampling defaults
            return {**kwargs, "do_sample": False, "top_p": None, "top_k": None, "temperature": None}
        return {
            **kwargs,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k or None,
        }


def chat_prompt_ids(tokenizer, messages: Sequence[dict]) -> torch.Tensor:
    """The token ids of `messages` rendered with the chat template plus the generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{type(tokenizer).__name__} has no chat template; attach one first, "
            "e.g. dojo.chat.apply_template(tokenizer, 'chatml')"
        )
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    return ids


class _Control(StoppingCriteria):
    """Counts generated tokens, remembers the last one, and stops when cancelled."""

    def __init__(self, prompt_len: int, cancelled: threading.Event):
        self.prompt_len = prompt_len
        self.cancelled = cancelled
        self.generated = 0
        self.last_token: int | None = None

    def __call__(self, input_ids, scores, **kwargs):
        self.generated = input_ids.shape[1] - self.prompt_len
        self.last_token = int(input_ids[0, -1])
        return torch.full(
            (input_ids.shape[0],),
            self.cancelled.is_set(),
            dtype=torch.bool,
            device=input_ids.device,
        )


def _eos_ids(model, tokenizer) -> set[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class ReplyStream:
    """One reply generated in a background thread, read as text pieces as they are decoded.

    After iteration: `text`, `finish_reason` ("stop": end of turn or a stop string; "length":
    `max_new_tokens` reached; "cancelled"), `prompt_tokens`, `completion_tokens`.
    `lock` serialises use of one model by several streams (a server's requests);
    `on_finish` runs in the worker thread when generation has ended, whatever happened.
    """

    def __init__(
        self,
        model,
        tokenizer,
        messages: Sequence[dict] | None = None,
        options: SamplingOptions | None = None,
        stop: Sequence[str] | None = (),
        lock: threading.Lock | None = None,
        on_finish: Callable[[], None] | None = None,
        prompt_ids: torch.Tensor | None = None,
    ):
        self.model, self.tokenizer = model, tokenizer
        self.options = options or SamplingOptions()
        self.stop = [s for s in stop or () if s]
        self.lock = lock or threading.Lock()
        self.on_finish = on_finish
        self.prompt_ids = (
            prompt_ids if prompt_ids is not None else chat_prompt_ids(tokenizer, messages)
        )
        self.prompt_tokens = self.prompt_ids.shape[1]
        self._cancelled = threading.Event()
        self._control = _Control(self.prompt_tokens, self._cancelled)
        self._streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.text = ""
        self.finish_reason: str | None = None

    @property
    def completion_tokens(self) -> int:
        return self._control.generated

    def start(self) -> ReplyStream:
        """Start generating (iteration starts it too); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, daemon=True)
            self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop generating at the next decoding step (or before starting)."""
        self._cancelled.set()

    def _work(self) -> None:
        try:
            with self.lock:
                if self._cancelled.is_set():
                    return
                if self.options.seed is not None:
                    torch.manual_seed(self.options.seed)
                with torch.no_grad():
                    self.model.generate(
                        input_ids=self.prompt_ids.to(self.model.device),
                        attention_mask=torch.ones_like(self.prompt_ids).to(self.model.device),
                        pad_token_id=self.tokenizer.pad_token_id,
                        streamer=self._streamer,
                        stopping_criteria=StoppingCriteriaList([self._control]),
                        **self.options.generate_kwargs(),
                    )
        except BaseException as e:  # surfaced to the reader, not lost in a thread
            self._error = e
        finally:
            self._streamer.end()
            if self.on_finish is not None:
                self.on_finish()

    def __iter__(self) -> Iterator[str]:
        self.start()
        hold = max((len(s) for s in self.stop), default=1) - 1  # could be a stop string's start
        emitted = 0
        try:
            for piece in self._streamer:
                self.text += piece
                cut = self._find_stop(max(0, emitted - hold))
                if cut is not None:
                    self.text = self.text[:cut]
                    self.finish_reason = "stop"
                    self.cancel()
                    break
                if len(self.text) - hold > emitted:
                    yield self.text[emitted : len(self.text) - hold]
                    emitted = len(self.text) - hold
            if self._error is not None:
                raise RuntimeError(f"generation failed: {self._error}") from self._error
            if len(self.text) > emitted:
                yield self.text[emitted:]
            self.finish_reason = self.finish_reason or self._why_finished()
        finally:
            if self.finish_reason is None:  # the reader went away mid-stream
                self.finish_reason = "cancelled"
                self.cancel()

    def read(self) -> str:
        """Generate to the end and return the whole reply."""
        for _ in self:
            pass
        return self.text

    def _find_stop(self, start: int) -> int | None:
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        return min(hits, default=None)

    def _why_finished(self) -> str:
        if self._cancelled.is_set():
            return "cancelled"
        if self._control.last_token in _eos_ids(self.model, self.tokenizer):
            return "stop"
        return "length" if self.completion_tokens >= self.options.max_new_tokens else "stop"
