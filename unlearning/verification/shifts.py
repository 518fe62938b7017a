"""Format-shifted probes of forgotten facts (language models): the same fact asked in another form.

An unlearning method can suppress a fact in the form it was trained and asked in and leave it intact in
another: a lower-cased prompt, other whitespace, a different prefix template, a question (Lynch et al. 2024,
"Eight methods to evaluate robust unlearning in LLMs"; Shi et al. 2024, MUSE; Patil et al. 2024). Every
shift here is generated locally from the probe's own text, deterministically (nothing is downloaded).

A shift changes the *context* (a canary's prefix, a behaviour example's prompt, the template before a
passage) and keeps what is asked for intact where it must be exact (a secret, a forbidden completion): the
shifted probe asks for the same thing, in another form. For a passage (a data source's or a category's
example) the passage itself is what the model knows; it is lower-cased / re-spaced, or put after a template
(the template's tokens are not counted: the loss is the passage's).

Runs where the text is: the nodes shift the examples and canaries they hold (only scores leave them); the
service shifts the proposal's own examples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from unlearning.data import Record
from unlearning.tasks.base import Batch, Target, Task

#: the shifts every format-shift metric tries (a fixed list: the config hash covers the code's version)
SHIFTS: tuple[str, ...] = ("lowercase", "uppercase", "whitespace", "template", "question")

TEMPLATE = "As I recall, "  # short: a small model's context is short (the community LM: 96 bytes)
QUESTION = "Q: Go on.\nA: "


def _spaced(text: str) -> str:
    """Every run of whitespace doubled (a newline first), keeping a trailing space where there was one."""
    words = text.split()
    out = "\n" + "  ".join(words)
    return out + ("  " if text[-1:].isspace() and words else "")


_CONTEXT: dict[str, Callable[[str], str]] = {
    "lowercase": str.lower,
    "uppercase": str.upper,
    "whitespace": _spaced,
    "template": lambda c: TEMPLATE + c,
    "question": lambda c: f"Q: {c.strip()}?\nA: {c}",
}


def check_shift(name: str) -> None:
    if name not in _CONTEXT:
        raise ValueError(f"unknown format shift {name!r}; known: {', '.join(SHIFTS)}")


def shift_context(name: str, context: str) -> str:
    """The context (a prompt, a canary's prefix) after the shift ``name``; what follows it is unchanged."""
    check_shift(name)
    return _CONTEXT[name](context)


def shift_passage(name: str, text: str) -> tuple[str, str]:
    """(uncounted prefix, counted text): a passage (the whole example is the fact) after the shift ``name``."""
    check_shift(name)
    if name in ("lowercase", "uppercase"):
        return "", _CONTEXT[name](text)
    if name == "whitespace":
        return "", _spaced(text).lstrip("\n")
    return (TEMPLATE if name == "template" else QUESTION), text


def _pieces(record: Record, target: Target | None, forget: bool, name: str) -> list[tuple[str, bool]]:
    """The record's (text, counted) pieces after the shift: a behaviour's completion stays exact and the
    text before it is shifted; anything else is a passage."""
    text = str(record["text"])
    if forget and target is not None and target.kind == "behaviour":
        for ex in target.examples:
            i = text.find(ex["completion"])
            if i >= 0:
                comp = ex["completion"]
                return [(shift_context(name, text[:i]), False), (comp, True), (text[i + len(comp) :], False)]
    prefix, body = shift_passage(name, text)
    return [(prefix, False), (body, True)]


def shifted_batch(
    task: Task, records: Sequence[Record], name: str, target: Target | None = None, forget: bool = False
) -> Batch:
    """``task.to_batch(records, target, forget)`` after the format shift ``name`` (language models)."""
    from unlearning.tasks.lm import IGNORE, CausalLMTask, pad_batch

    if not isinstance(task, CausalLMTask):
        raise ValueError("format shifts apply to language models")
    tok = task.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    behaviour = forget and target is not None and target.kind == "behaviour"
    limit = int(task.model_config.get("max_length", 128))
    encoded = []
    for r in records:
        ids, labels = [int(start)], [IGNORE]
        for text, counts in _pieces(r, target, forget, name):
            if text:
                piece = [int(i) for i in tok(text, add_special_tokens=False)["input_ids"]]
                ids += piece
                labels += piece if counts else [IGNORE] * len(piece)
        if not behaviour:
            ids.append(int(tok.eos_token_id))
            labels.append(int(tok.eos_token_id))
        encoded.append((ids[:limit], labels[:limit]))
    return pad_batch(encoded)
