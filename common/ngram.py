"""LongCat's n-gram embedding (Flash-Lite; the ``oe_*`` spelling of Flash-Lite-Sparse and LongCat-2.0), once.

The rule, from Meituan's remote code (``modeling_longcat_ngram.py``: ``NgramEmbedding``, ``NgramCache``):
for the token ``c`` at position t,

* ids in ``oe_ignored_token_ids`` read as 0. A 0 or an EOS ends a segment, and the segment's last token
  is that 0 or EOS. The history of t is the tokens of its own segment before t: it stops at the sequence
  start and after an earlier EOS. An EOS at t is hashed with its own history.
* for order i in 2..n and split j in 0..k-1 (table e = (i-2)k + j, M_e = int(m + 2e + 1) rows,
  m = ratio * V, V = ``text_vocab_size`` where the config has it, else ``vocab_size``):
  ``id_e = (c + sum_{d=1}^{i-1} h_d * (V^d mod M_e)) mod M_e`` in 64-bit integers, h_d the token d back
  in the segment, 0 past its start. A position whose token is 0 gets id 0 in every table.
* id 0 looks nothing up (zeros); otherwise ``proj_e(table_e[id_e])`` (``post_projs`` have no bias).
* embedding = ``(word(c) + sum_e proj_e(...)) / (1 + k(n-1))``. Ignored tokens are not divided.
* the history a request carries from one forward to the next is its last n-1 tokens (``NgramCache``).

Where others differ (read in their sources): vLLM 0.32 / 0.33's ``ngram_compute_n_gram_ids`` stops at an EOS
at the current position too, so an EOS gets id 0 in every table (multi-turn prompts, whose turns end in
EOS, read different rows). vLLM, SGLang 0.5.23 and the MLX port look up row 0 for id 0 where Meituan's code
gives zeros (the same only where that row was never trained). The MLX port has no EOS boundary. vLLM
hashes with ``vocab_size`` where the newer Meituan code has ``text_vocab_size``.
"""

from dataclasses import dataclass
from functools import cached_property

import torch

# spelling -> (ratio, neighbours n, splits k) field names; tensor names
FIELDS = {"ngram": ("ngram_vocab_size_ratio", "emb_neighbor_num", "emb_split_num"),
          "oe": ("oe_vocab_size_ratio", "oe_neighbor_num", "oe_split_num")}
TABLE_NAMES = {"ngram": "model.ngram_embeddings.embedders.{}.weight", "oe": "model.oe_embed_tokens{}.weight"}
PROJECTION_NAMES = {"ngram": "model.ngram_embeddings.post_projs.{}.weight", "oe": "model.oe_embed_proj{}.weight"}
BEFORE_START = -1  # a history slot before the sequence start


def _value(config, name):
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def _ids(value) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


@dataclass(frozen=True)
class NgramSpec:
    ratio: float
    neighbors: int  # n: orders 2..n, the history is n-1 tokens
    splits: int  # k: tables per order
    hash_vocab: int  # V
    eos_ids: tuple[int, ...]
    ignored_ids: tuple[int, ...] = ()
    spelling: str = "ngram"

    @classmethod
    def from_config(cls, config) -> "NgramSpec | None":
        """From a config.json dict or any engine's config object; None where n-gram embeddings are off.

        Both spellings may be present only where they agree."""
        found = {}
        for spelling, names in FIELDS.items():
            values = tuple(_value(config, n) for n in names)
            if values[0] is not None:
                missing = [n for n, v in zip(names, values) if v is None]
                if missing:
                    raise ValueError(f"LongCat n-gram config: '{names[0]}' is set but {missing} missing")
                found[spelling] = values
        if not found:
            return None
        if len(set(found.values())) > 1:
            detail = "; ".join(f"{', '.join(f'{n}={v}' for n, v in zip(FIELDS[s], vals))}"
                               for s, vals in found.items())
            raise ValueError(f"LongCat n-gram config: both spellings are set and disagree ({detail})")
        spelling = "ngram" if "ngram" in found else "oe"
        ratio, n, k = found[spelling]
        vocab = _value(config, "text_vocab_size") or _value(config, "vocab_size")
        spec = cls(ratio=ratio, neighbors=n, splits=k, hash_vocab=vocab,
                   eos_ids=_ids(_value(config, "eos_token_id")),
                   ignored_ids=_ids(_value(config, "oe_ignored_token_ids")), spelling=spelling)
        spec.validate()
        return spec

    def validate(self) -> None:
        for name in ("neighbors", "splits", "hash_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"LongCat n-gram config: '{name}' must be an integer, got {value!r}")
        if self.neighbors < 2 or self.splits < 1:
            raise ValueError(f"LongCat n-gram config: need neighbor_num >= 2 and split_num >= 1, "
                             f"got {self.neighbors} and {self.splits}")
        if not self.ratio > 0 or self.hash_vocab <= 0:
            raise ValueError(f"LongCat n-gram config: vocab_size_ratio ({self.ratio}) and the hash vocabulary "
                             f"({self.hash_vocab}) must be positive")
        if not self.eos_ids:
            raise ValueError("LongCat n-gram config: eos_token_id is needed (the n-gram history stops after it)")

    # ---- sizes and names --------------------------------------------------------------------------------
    @property
    def num_tables(self) -> int:
        return self.splits * (self.neighbors - 1)

    @property
    def history_len(self) -> int:
        return self.neighbors - 1

    def table_sizes(self) -> tuple[int, ...]:
        m = self.ratio * self.hash_vocab
        return tuple(int(m + 2 * e + 1) for e in range(self.num_tables))

    def table_offsets(self) -> tuple[int, ...]:
        """Start row of each table in the tables concatenated (num_tables + 1 entries, the last the total)."""
        out = [0]
        for size in self.table_sizes():
            out.append(out[-1] + size)
        return tuple(out)

    def table_dim(self, hidden_size: int) -> int:
        dim = hidden_size // self.num_tables
        if dim < 1:
            raise ValueError(f"LongCat n-gram config: hidden_size {hidden_size} < {self.num_tables} tables")
        return dim

    def table_name(self, e: int) -> str:
        return TABLE_NAMES[self.spelling].format(e)

    def projection_name(self, e: int) -> str:
        return PROJECTION_NAMES[self.spelling].format(e)

    def shapes(self, hidden_size: int) -> dict[str, tuple[int, int]]:
        """Checkpoint name -> shape of every n-gram tensor."""
        dim, out = self.table_dim(hidden_size), {}
        for e, rows in enumerate(self.table_sizes()):
            out[self.table_name(e)] = (rows, dim)
            out[self.projection_name(e)] = (hidden_size, dim)
        return out

    def multipliers(self) -> torch.Tensor:
        """[num_tables, n-1] int64: V^d mod M_e for d = 1..n-1, 0 for d >= the table's order."""
        out = torch.zeros(self.num_tables, self.history_len, dtype=torch.int64)
        for e, size in enumerate(self.table_sizes()):
            for d in range(1, e // self.splits + 2):
                out[e, d - 1] = pow(self.hash_vocab, d, size)
        return out

    @cached_property
    def _constants_by_device(self) -> dict[torch.device, dict[str, torch.Tensor]]:
        return {}

    def _constant(self, name: str, device) -> torch.Tensor:
        """A tensor ``ids`` and ``ignored`` read each forward, built and copied to ``device`` once: a copy per
        forward would be a host-to-device transfer every step, which a CUDA-graph capture does not allow."""
        device = torch.device(device)
        if device not in self._constants_by_device:
            constants = {"multipliers": self.multipliers(), "sizes": torch.tensor(self.table_sizes(), dtype=torch.int64),
                         "eos": torch.tensor(self.eos_ids), "ignored": torch.tensor(self.ignored_ids, dtype=torch.int64)}
            self._constants_by_device[device] = {k: v.to(device) for k, v in constants.items()}
        return self._constants_by_device[device][name]

    # ---- ids --------------------------------------------------------------------------------------------
    def ids(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [T, n] (each token's n-1 predecessors oldest first, then the token; BEFORE_START where the
        sequence has none) -> [T, num_tables] int64 row of each table (0: no lookup)."""
        w = windows.long()
        if self.ignored_ids:
            w = w.masked_fill(torch.isin(w, self._constant("ignored", w.device)), 0)
        boundary = (w <= 0) | torch.isin(w, self._constant("eos", w.device))
        back = w[:, :-1].flip(1)  # [T, n-1]: d = 1, 2, ... back
        inside = ~boundary[:, :-1].flip(1).cummax(dim=1).values  # no boundary between t-d and t-1
        history = torch.where(inside, back, torch.zeros_like(back))  # h_d
        current = w[:, -1:]
        mult, sizes = self._constant("multipliers", w.device), self._constant("sizes", w.device)
        ids = (current + history @ mult.T) % sizes  # [T, E]; < 2^63: h < V, multiplier < M_e
        return ids.masked_fill(current <= 0, 0)

    def ignored(self, tokens: torch.Tensor) -> torch.Tensor:
        """[T] bool: tokens the average leaves alone."""
        if not self.ignored_ids:
            return torch.zeros_like(tokens, dtype=torch.bool)
        return torch.isin(tokens, self._constant("ignored", tokens.device))

    def mix(self, tokens: torch.Tensor, word: torch.Tensor, ngram_sum: torch.Tensor) -> torch.Tensor:
        """(word + sum of projected rows) / (1 + num_tables); ignored tokens keep the plain sum."""
        scale = torch.where(self.ignored(tokens), 1.0, 1.0 / (1 + self.num_tables)).to(word.dtype)
        return (word + ngram_sum) * scale[:, None]


def windows(history: torch.Tensor, tokens: torch.Tensor, query_start_loc: torch.Tensor) -> torch.Tensor:
    """Each token's window [T, n] from its request's history [R, n-1] and the flat chunk of every request.

    ``query_start_loc`` [R+1]: request r's tokens are ``tokens[qsl[r]:qsl[r+1]]``. history[r] is what came
    before them (oldest first, BEFORE_START where the sequence has not that many).
    """
    hist = history.shape[1]
    lens = query_start_loc[1:] - query_start_loc[:-1]
    req = torch.repeat_interleave(torch.arange(len(lens), device=tokens.device), lens, output_size=tokens.shape[0])
    offset = torch.arange(tokens.shape[0], device=tokens.device) - query_start_loc[:-1][req]
    # window slot s of token t is position offset - hist + s of its request: in history where negative
    steps = offset[:, None] - hist + torch.arange(hist + 1, device=tokens.device)  # [T, n]
    flat = (query_start_loc[:-1][req])[:, None] + steps
    from_chunk = tokens[flat.clamp(min=0, max=tokens.shape[0] - 1)]
    from_history = history[req[:, None], (steps + hist).clamp(min=0, max=hist - 1)]
    return torch.where(steps >= 0, from_chunk, from_history.to(tokens.dtype))


def positions_before(first: torch.Tensor, history_len: int) -> torch.Tensor:
    """[R, history_len]: the positions before each request's first position of a forward, oldest first
    (negative before the sequence start)."""
    return first[:, None].long() - torch.arange(history_len, 0, -1, device=first.device)


class SlotTokens:
    """An engine's n-gram history, kept like its KV cache: the token whose KV each KV-cache slot holds.

    Every forward writes its tokens at the slots its KV goes to; a request's history is read back at the
    slots of its earlier positions, so it follows whatever the engine does with those slots (chunks, shared
    prefixes, recompute, speculative verification). BEFORE_START where nothing was written. ``reserve``
    sizes the table to the engine's KV pool (no host sync per forward: CUDA graphs); without it the table
    grows to the largest slot written. Negative slots (an engine's padding rows) write to a scratch entry."""

    def __init__(self):
        self.table = torch.full((1,), BEFORE_START, dtype=torch.int64)  # the last entry: scratch
        self.reserved = False

    def reserve(self, num_slots: int, device) -> None:
        self.table = torch.full((num_slots + 1,), BEFORE_START, dtype=torch.int64, device=device)
        self.reserved = True

    def write(self, slots: torch.Tensor, tokens: torch.Tensor) -> None:
        if not self.reserved and slots.numel():
            needed = int(slots.max()) + 2
            if needed > self.table.numel():
                grown = torch.full((max(needed, 2 * self.table.numel()),), BEFORE_START, dtype=torch.int64,
                                   device=slots.device)
                grown[: self.table.numel() - 1] = self.table[:-1].to(slots.device)
                self.table = grown
        scratch = self.table.numel() - 1
        self.table[torch.where(slots >= 0, slots.long(), scratch)] = tokens.to(self.table.device, torch.int64)

    def read(self, slots: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The tokens at ``slots`` (any shape), BEFORE_START where ``positions`` (same shape) is negative."""
        last = self.table.numel() - 2  # the last real slot
        inside = (positions >= 0) & (slots >= 0) & (slots <= last)
        return torch.where(inside, self.table.to(slots.device)[slots.long().clamp(0, max(last, 0))], BEFORE_START)


def load_table_shard(shard: torch.Tensor, table: torch.Tensor, e: int, spec: NgramSpec, start: int, end: int) -> None:
    """Checkpoint table e into ``shard``, this rank's rows [start, end) of the concatenated tables."""
    lo, hi = spec.table_offsets()[e:e + 2]
    first, last = max(lo, start), min(hi, end)
    if first < last:
        shard[first - start:last - start].copy_(table[first - lo:last - lo])


def load_projection(projection: torch.Tensor, tensor: torch.Tensor, e: int) -> None:
    """Checkpoint projection e [H, dim] into columns e*dim .. (e+1)*dim of the side-by-side projections."""
    dim = tensor.shape[1]
    projection[:, e * dim:(e + 1) * dim].copy_(tensor)


class NgramLookup:
    """The n-gram part of the embedding for one rank: rows of the concatenated tables -> summed projections.

    ``rows(flat_ids)`` is the engine's (possibly vocabulary-parallel) embedding over the concatenated
    tables; ``projection`` [H, num_tables * dim] is the projections side by side (checkpoint e -> columns
    e*dim .. (e+1)*dim).
    """

    def __init__(self, spec: NgramSpec):
        self.spec = spec
        self.offsets = torch.tensor(spec.table_offsets()[:-1], dtype=torch.int64)

    def __call__(self, ids: torch.Tensor, rows, projection: torch.Tensor) -> torch.Tensor:
        """ids [T, E] -> [T, H] = sum_e [id != 0] proj_e(table_e[id])."""
        looked = rows(ids + self.offsets.to(ids.device))  # [T, E, dim]
        looked = looked * (ids != 0).unsqueeze(-1).to(looked.dtype)
        return looked.flatten(1) @ projection.T
