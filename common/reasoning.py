"""Splits LongCat output into reasoning (``<longcat_think>...</longcat_think>``) and content.

With thinking on, LongCat's generation prompt already ends with ``<longcat_think>\\n``: the output then
starts inside the reasoning and only closes it. ``starts_in_reasoning`` says so (the engine adapters
read it from the prompt); an output that opens the block itself is handled either way. Whitespace
right after ``</longcat_think>`` (the model writes a newline there) is not content.

``split_reasoning`` is the whole-text split; ``ReasoningStream`` the incremental one, whose deltas
concatenate to exactly what ``split_reasoning`` returns for the concatenated text.
"""

from dataclasses import dataclass

THINK_START, THINK_END = "<longcat_think>", "</longcat_think>"


@dataclass
class Split:
    reasoning: str
    content: str


def split_reasoning(text: str, starts_in_reasoning: bool) -> Split:
    stream = ReasoningStream(starts_in_reasoning)
    first = stream.feed(text)
    last = stream.finish()
    return Split(first.reasoning + last.reasoning, first.content + last.content)


def partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag`` (held back while streaming)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ReasoningStream:
    """Feed the output text piece by piece; each call returns the new reasoning and content text."""

    def __init__(self, starts_in_reasoning: bool):
        # phase: "start" (may still open a think block), "reasoning", "after_end" (dropping whitespace), "content"
        self.phase, self.starts_in_reasoning = "start", starts_in_reasoning
        self.buffer = ""

    @property
    def in_reasoning(self) -> bool:
        return self.phase == "reasoning" or (self.phase == "start" and self.starts_in_reasoning)

    def feed(self, delta: str) -> Split:
        self.buffer += delta
        reasoning, content = [], []
        while self.buffer:
            if self.phase == "start":
                stripped = self.buffer.lstrip()
                if stripped.startswith(THINK_START):
                    self.buffer, self.phase = stripped[len(THINK_START):], "reasoning"
                elif THINK_START.startswith(stripped):
                    break  # still undecided: whitespace or a partial opening tag
                else:
                    self.phase = "reasoning" if self.starts_in_reasoning else "content"
            elif self.phase == "reasoning":
                end = self.buffer.find(THINK_END)
                if end < 0:
                    keep = partial_tag_suffix(self.buffer, THINK_END)
                    reasoning.append(self.buffer[:len(self.buffer) - keep])
                    self.buffer = self.buffer[len(self.buffer) - keep:]
                    break
                reasoning.append(self.buffer[:end])
                self.buffer, self.phase = self.buffer[end + len(THINK_END):], "after_end"
            elif self.phase == "after_end":
                self.buffer = self.buffer.lstrip()
                if self.buffer:
                    self.phase = "content"
            else:
                content.append(self.buffer)
                self.buffer = ""
        return Split("".join(reasoning), "".join(content))

    def finish(self) -> Split:
        """End of output: text held back (a partial tag that never completed) is what it looked like."""
        rest, self.buffer = self.buffer, ""
        if self.in_reasoning:
            return Split(rest, "")
        return Split("", "" if self.phase == "after_end" else rest)
