"""WikiText-103 for causal language modelling: reader, tokenizer, token cache, window loaders.

``dataset=wikitext103`` reads the official layout, ``wiki.train.tokens``, ``wiki.valid.tokens``
and ``wiki.test.tokens`` in ``dataset.root`` (``scripts/prepare_data.py wikitext103`` puts them
there), and:

* **tokenizer**: a byte-level BPE (Hugging Face ``tokenizers``) trained on the train split only,
  ``dataset.vocab_size`` tokens (256 bytes + ``<|endoftext|>`` + merges). Byte-level, so any text
  round-trips exactly and the valid/test splits never meet an unknown symbol. It is cached as
  ``<cache>/tokenizer-bpe<V>-<hash of train file>.json``;
* **token cache**: each split encoded once into a flat ``uint16`` memmap (``uint32`` when the vocab
  needs it), ``<cache>/<split>-<tokenizer hash>-<split hash>.bin`` plus a ``.json`` with its token
  and word counts. The stream starts with ``<|endoftext|>``, so every token of the text is predicted;
* **training windows**: each step draws ``batch_size`` random windows of ``seq_len + 1`` tokens from
  the epoch's explicit generator (all of an epoch's offsets drawn up front, so a resume at step s
  gets exactly the windows an uninterrupted run would). An "epoch" is ``tokens // seq_len``
  windows, i.e. about one pass over the train tokens;
* **evaluation windows**: non-overlapping windows that score every token of the split once (the last
  window is shifted back to fit and scores only tokens not yet scored), so the perplexity is over the
  whole split. The number of words of the split (``len(line.split()) + 1`` per line, the ``<eos>``
  convention of word-level WikiText results) rides along for the word-level perplexity.

``<cache>`` is ``dataset.cache_dir``, or ``<root>/.cache`` when that is empty.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from mimetic.data.base import DATASETS, Data, DataRequest
from mimetic.errors import DatasetError
from mimetic.models.base import DataSpec
from mimetic.registry import Option

SPLIT_FILES = {"train": "wiki.train.tokens", "val": "wiki.valid.tokens", "test": "wiki.test.tokens"}
EOS = "<|endoftext|>"
# Bump when the tokenizer recipe or the reading of the text changes (invalidates the tokenizer and token
# caches: the token cache's names carry the tokenizer's tag). v2: lines end at "\n" only (v1 also broke
# lines at Unicode separators such as U+2028, which changed the word count of text holding them).
TOKENIZER_VERSION = "bytebpe-v2"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


@dataclass
class WikiText(Option):
    """WikiText-103 (or any text in its three-file layout) as token windows."""

    task: ClassVar[str] = "language_modeling"  # config validation knows it before the data is read
    root: str = "${paths.data_dir}/wikitext-103"
    vocab_size: int = 16384  # byte-level BPE size, trained on the train split
    seq_len: int = 512  # window length (the cost of a step); at most model.block_size, checked at start
    cache_dir: str = ""  # tokenizer + token memmaps; "" = <root>/.cache
    token_dtype: str = "auto"  # auto (uint16 when the vocab fits, else uint32) | uint16 | uint32

    def problems(self, group: str) -> list[str]:
        out = []
        if not 257 < self.vocab_size <= 2**32:
            out.append(f"{group}.vocab_size must be > 257 (256 bytes + <|endoftext|> + merges), got {self.vocab_size}")
        if not self.seq_len > 0:
            out.append(f"{group}.seq_len must be > 0, got {self.seq_len}")
        if self.token_dtype not in ("auto", *DTYPES):
            out.append(f"{group}.token_dtype={self.token_dtype!r} is not one of: auto, {', '.join(DTYPES)}")
        elif self.token_dtype != "auto" and self.vocab_size > np.iinfo(DTYPES[self.token_dtype]).max + 1:
            out.append(f"{group}.vocab_size={self.vocab_size} does not fit {group}.token_dtype={self.token_dtype} "
                       f"(at most {np.iinfo(DTYPES[self.token_dtype]).max + 1} ids); use token_dtype=uint32 or auto")
        return out

    def fingerprint(self) -> str:
        """sha1 over the three files' names and sizes (as the image datasets do); missing files raise."""
        from mimetic.data.sources import fingerprint_files

        root = Path(self.root).expanduser()
        return fingerprint_files(root, [split_path(root, split) for split in SPLIT_FILES])

    def cache(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else Path(self.root).expanduser() / ".cache"


# ----------------------------------------------------------------------------- reading
def split_path(root: Path, split: str) -> Path:
    path = Path(root) / SPLIT_FILES[split]
    if not path.is_file():
        raise DatasetError(
            f"WikiText file {path} is missing: dataset.root must hold {', '.join(SPLIT_FILES.values())} "
            "(the official wikitext-103/ layout). Get them with `python scripts/prepare_data.py wikitext103` "
            "or point dataset.root at the folder that has them."
        )
    return path


def read_lines(root: Path, split: str) -> list[str]:
    """The lines of one split, each with its newline; a split without text, or text that is not
    UTF-8, is a :class:`DatasetError`.

    Lines end at ``"\n"`` only, WikiText's convention: ``str.splitlines`` (and text mode's universal
    newlines) would also end them at a lone ``"\r"`` or at Unicode separators such as U+2028 or U+0085,
    which can occur inside a line. A copy with ``"\r\n"`` endings reads as the ``"\n"`` original.
    """
    path = split_path(root, split)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n")  # bytes, not text mode: no newline translation
    except UnicodeDecodeError as err:
        line_no = raw.count(b"\n", 0, err.start) + 1
        raise DatasetError(
            f"WikiText file {path} is not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start} (line "
            f"{line_no}) cannot be decoded. The WikiText files are UTF-8: get them again "
            "with `python scripts/prepare_data.py wikitext103`, or convert this file to UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    if not text.strip():
        raise DatasetError(f"WikiText file {path} is empty: the {split} split has no text")
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def count_words(lines: list[str]) -> int:
    """Words as word-level WikiText results count them: whitespace-split words plus one ``<eos>`` per line."""
    return sum(len(line.split()) + 1 for line in lines)


def file_hash(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(lines: list[str], vocab_size: int):
    """A byte-level BPE trained on ``lines`` (deterministic for the same lines and size)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(lines, trainer=trainer, length=len(lines))
    return tokenizer


def load_tokenizer(options: WikiText):
    """The cached tokenizer of these options, trained on the train split (and cached) if absent."""
    from tokenizers import Tokenizer

    root = Path(options.root).expanduser()
    tag = hashlib.sha1(f"{TOKENIZER_VERSION}|{options.vocab_size}|{file_hash(split_path(root, 'train'))}"
                       .encode()).hexdigest()[:12]
    path = options.cache() / f"tokenizer-bpe{options.vocab_size}-{tag}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path)), tag
    tokenizer = train_tokenizer(read_lines(root, "train"), options.vocab_size)
    try:
        _atomic_write(path, tokenizer.to_str().encode())
    except OSError as err:
        raise DatasetError(f"cannot write the tokenizer cache {path} ({err}); set dataset.cache_dir to a "
                           "writable folder") from None
    return tokenizer, tag


def token_dtype(options: WikiText, vocab: int) -> np.dtype:
    name = options.token_dtype
    if name == "auto":
        name = "uint16" if vocab <= 2**16 else "uint32"
    if vocab > np.iinfo(DTYPES[name]).max + 1:
        raise DatasetError(f"the tokenizer has {vocab} tokens, more than dataset.token_dtype={name} holds "
                           f"({np.iinfo(DTYPES[name]).max + 1}); use dataset.token_dtype=uint32 or auto")
    return np.dtype(DTYPES[name])


def encode_lines(tokenizer, lines: list[str]) -> list[int]:
    """``<|endoftext|>`` then the tokens of every line (newlines included): decodes back to the text."""
    ids = [tokenizer.token_to_id(EOS)]
    for encoding in tokenizer.encode_batch(lines, add_special_tokens=False):
        ids.extend(encoding.ids)
    return ids


@dataclass
class TokenSplit:
    tokens: np.ndarray  # 1-D memmap, starts with <|endoftext|>
    words: int  # words of the text (word-level perplexity)


def load_split(options: WikiText, split: str, tokenizer, tag: str) -> TokenSplit:
    """One split's tokens from the memmap cache, encoding (and caching) it first if needed."""
    root = Path(options.root).expanduser()
    vocab = tokenizer.get_vocab_size()
    dtype = token_dtype(options, vocab)
    stem = options.cache() / f"{split}-{tag}-{file_hash(split_path(root, split))}-{dtype.name}"
    meta_path, bin_path = stem.with_suffix(".json"), stem.with_suffix(".bin")
    if not (meta_path.is_file() and bin_path.is_file()):
        lines = read_lines(root, split)
        ids = np.asarray(encode_lines(tokenizer, lines), dtype=np.int64)
        if ids.max() >= vocab:
            raise DatasetError(f"token id {ids.max()} >= vocab {vocab}: the tokenizer cache is corrupt; delete "
                               f"{options.cache()}")
        try:
            _atomic_write(bin_path, ids.astype(dtype).tobytes())
            _atomic_write(meta_path, json.dumps({"tokens": int(ids.size), "words": count_words(lines),
                                                 "dtype": dtype.name}).encode())
        except OSError as err:
            raise DatasetError(f"cannot write the token cache in {options.cache()} ({err}); set dataset.cache_dir "
                               "to a writable folder") from None
    meta = json.loads(meta_path.read_text())
    tokens = np.memmap(bin_path, dtype=np.dtype(meta["dtype"]), mode="r")
    if tokens.size != meta["tokens"]:
        raise DatasetError(f"{bin_path} holds {tokens.size} tokens, its {meta_path.name} says {meta['tokens']}: "
                           f"delete {options.cache()} to rebuild the cache")
    return TokenSplit(tokens, int(meta["words"]))


# ----------------------------------------------------------------------------- loaders
def _on_device(tokens: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(tokens, dtype=np.int32)).to(device)


class TrainWindows:
    """Random windows of ``seq_len + 1`` tokens per step, from the epoch's generator (a ``Loader``).

    Each rank takes its slice of the global batch, so the draws do not depend on the number of processes.
    """

    def __init__(self, tokens: torch.Tensor, seq_len: int, batch_size: int, *, rank: int = 0, world_size: int = 1):
        if tokens.numel() < seq_len + 2:
            raise DatasetError(f"the train split has {tokens.numel()} tokens, too few for windows of "
                               f"dataset.seq_len={seq_len} (+1) tokens")
        self.tokens, self.seq_len, self.batch_size = tokens, seq_len, batch_size
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(1, (self.tokens.numel() - 1) // self.seq_len // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self) * self.batch_size

    def epoch(self, generator: torch.Generator | None = None, *,
              start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if generator is None:
            raise ValueError("a training loader needs the epoch's generator")
        high = self.tokens.numel() - self.seq_len  # last start whose window (seq_len + 1 tokens) fits
        starts = torch.randint(0, high, (len(self) * self.batch_size,), generator=generator, device=generator.device)
        starts = starts.to(self.tokens.device)
        offsets = torch.arange(self.seq_len + 1, device=self.tokens.device)
        for step in range(start_step, len(self)):
            chunk = self.tokens[starts[step * self.batch_size : (step + 1) * self.batch_size, None] + offsets].long()
            if self.world_size > 1:
                chunk = chunk.tensor_split(self.world_size)[self.rank]
            yield chunk[:, :-1], chunk[:, 1:]


class EvalWindows:
    """Every token of a split scored once, in order (a ``Loader``); batches are (inputs, targets, words).

    Targets of positions already scored by the previous window are ``-100`` (ignored). ``words``
    is the split's word count on the first batch of rank 0 and 0 elsewhere, so its sum over
    batches and ranks is the split's word count.
    """

    def __init__(self, tokens: torch.Tensor, words: int, seq_len: int, batch_size: int, *, rank: int = 0,
                 world_size: int = 1, max_batches: int | None = None):
        n = tokens.numel()
        if n < 2:
            raise DatasetError("an evaluation split has no token to score")
        self.tokens, self.words, self.batch_size = tokens, words, batch_size
        self.seq_len = min(seq_len, n - 1)
        self.rank, self.world_size, self.max_batches = rank, world_size, max_batches
        scored = n - 1  # targets are tokens 1 .. n-1
        count = math.ceil(scored / self.seq_len)
        self.starts = [min(i * self.seq_len, n - 1 - self.seq_len) for i in range(count)]
        self.first_new = [i * self.seq_len - s for i, s in enumerate(self.starts)]  # already-scored prefix length

    def __len__(self) -> int:
        full = math.ceil(len(self.starts) / self.batch_size)
        return full if self.max_batches is None else min(full, self.max_batches)

    @property
    def num_samples(self) -> int:
        return min(len(self.starts), len(self) * self.batch_size)

    def epoch(self, generator: torch.Generator | None = None, *, start_step: int = 0) -> Iterator[tuple]:
        device = self.tokens.device
        offsets = torch.arange(self.seq_len + 1, device=device)
        for step in range(start_step, len(self)):
            rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
            starts = torch.tensor(self.starts[rows], device=device)
            skip = torch.tensor(self.first_new[rows], device=device)
            chunk = self.tokens[starts[:, None] + offsets].long()
            x, y = chunk[:, :-1], chunk[:, 1:].clone()
            y[offsets[None, :-1] < skip[:, None]] = -100
            if self.world_size > 1:
                x, y = x.tensor_split(self.world_size)[self.rank], y.tensor_split(self.world_size)[self.rank]
            words = self.words if (step == 0 and self.rank == 0) else 0
            yield x, y, torch.tensor(words, dtype=torch.int64, device=device)


def build_wikitext(options: WikiText, request: DataRequest) -> Data:
    problems = options.problems("dataset")
    if problems:
        raise DatasetError("; ".join(problems))
    tokenizer, tag = load_tokenizer(options)
    splits = {name: load_split(options, name, tokenizer, tag) for name in SPLIT_FILES}
    shard = {"rank": request.rank, "world_size": request.world_size}

    def evaluation(split: TokenSplit) -> EvalWindows:
        return EvalWindows(_on_device(split.tokens, request.device), split.words, options.seq_len,
                           request.eval_batch_size, max_batches=request.max_eval_batches, **shard)

    return Data(
        train=TrainWindows(_on_device(splits["train"].tokens, request.device), options.seq_len,
                           request.batch_size, **shard),
        test=evaluation(splits["test"]),
        val=evaluation(splits["val"]),
        spec=DataSpec(options.task, vocab_size=tokenizer.get_vocab_size()),
        task=options.task,
    )


DATASETS.add("wikitext103", WikiText, build_wikitext,
             help="WikiText-103 layout (wiki.{train,valid,test}.tokens), byte-level BPE, token windows")
