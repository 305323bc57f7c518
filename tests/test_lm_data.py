"""dataset=wikitext103 on generated text in the exact WikiText layout: tokenizer, cache, windows, bad data."""

import numpy as np
import pytest
import torch
from fake_wikitext import write_wikitext

from mimetic.data import DataRequest, build_data
from mimetic.data.wikitext import (
    EOS,
    EvalWindows,
    TrainWindows,
    WikiText,
    count_words,
    encode_lines,
    load_split,
    load_tokenizer,
    read_lines,
)
from mimetic.errors import DatasetError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_wikitext(tmp_path_factory.mktemp("wikitext"))


def options(root, **kw) -> WikiText:
    return WikiText(name="wikitext103", root=str(root), seq_len=kw.pop("seq_len", 16), vocab_size=kw.pop("vocab", 300),
                    **kw)


def test_tokenizer_round_trips_every_split_and_is_trained_on_train_only(root):
    tokenizer, tag = load_tokenizer(options(root))
    for split in ("train", "val", "test"):
        lines = read_lines(root, split)
        ids = encode_lines(tokenizer, lines)
        assert ids[0] == tokenizer.token_to_id(EOS)
        assert tokenizer.decode(ids[1:]) == "".join(lines)  # byte-level: lossless, no unknown symbol
    assert tokenizer.get_vocab_size() <= 300
    again, tag2 = load_tokenizer(options(root))  # from the cache
    assert tag2 == tag and again.to_str() == tokenizer.to_str()
    assert (root / ".cache" / f"tokenizer-bpe300-{tag}.json").is_file()


def test_token_cache_is_a_uint16_memmap_with_word_counts(root):
    opts = options(root)
    tokenizer, tag = load_tokenizer(opts)
    split = load_split(opts, "test", tokenizer, tag)
    assert isinstance(split.tokens, np.memmap) and split.tokens.dtype == np.uint16
    assert split.words == count_words(read_lines(root, "test"))
    assert split.tokens.tolist() == encode_lines(tokenizer, read_lines(root, "test"))
    wide = load_split(options(root, token_dtype="uint32"), "test", tokenizer, tag)
    assert wide.tokens.dtype == np.uint32 and wide.tokens.tolist() == split.tokens.tolist()


def test_train_windows_follow_the_generator_and_resume_exactly():
    tokens = torch.arange(1000, dtype=torch.int32)
    loader = TrainWindows(tokens, seq_len=16, batch_size=4)
    assert len(loader) == 999 // 16 // 4 and loader.num_samples == len(loader) * 4
    full = list(loader.epoch(torch.Generator().manual_seed(3)))
    for x, y in full:
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
        assert torch.equal(y, x + 1)  # y is x shifted by one token (consecutive ids here)
    resumed = list(loader.epoch(torch.Generator().manual_seed(3), start_step=5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[5:], resumed, strict=True))
    other = list(loader.epoch(torch.Generator().manual_seed(4)))
    assert not torch.equal(full[0][0], other[0][0])
    halves = [list(TrainWindows(tokens, 16, 4, rank=r, world_size=2).epoch(torch.Generator().manual_seed(3)))
              for r in (0, 1)]
    assert torch.equal(torch.cat([halves[0][2][0], halves[1][2][0]]), full[2][0])


@pytest.mark.parametrize("n", [50, 65, 17])
def test_evaluation_scores_every_token_once(n):
    tokens = torch.arange(n, dtype=torch.int32) + 7
    loader = EvalWindows(tokens, words=11, seq_len=16, batch_size=3)
    scored, words = [], 0
    for x, y, w in loader.epoch():
        assert x.shape[1] == 16 and torch.equal(x[y != -100] + 1, y[y != -100])
        scored += y[y != -100].tolist()
        words += int(w)
    assert scored == tokens[1:].tolist() and words == 11


def test_build_data_hands_the_lm_task_its_spec(root):
    data = build_data(options(root), DataRequest(image_size=None, batch_size=4, eval_batch_size=8,
                                                 device=torch.device("cpu")))
    assert data.task == "language_modeling" and data.spec.task == "language_modeling"
    assert 257 < data.spec.vocab_size <= 300
    x, y = next(iter(data.train.epoch(torch.Generator().manual_seed(0))))
    assert x.shape == (4, 16) and int(x.max()) < data.spec.vocab_size


def test_bad_data_is_one_clear_message(tmp_path, root):
    with pytest.raises(DatasetError, match=r"wiki\.train\.tokens is missing.*prepare_data\.py wikitext103"):
        load_tokenizer(options(tmp_path))
    empty = write_wikitext(tmp_path / "empty")
    (empty / "wiki.valid.tokens").write_text(" \n \n")
    with pytest.raises(DatasetError, match="wiki.valid.tokens is empty"):
        build_data(options(empty), DataRequest(None, 4, 8, torch.device("cpu")))
    problems = options(root, vocab=70000, token_dtype="uint16").problems("dataset")
    assert problems == ["dataset.vocab_size=70000 does not fit dataset.token_dtype=uint16 (at most 65536 ids); "
                        "use token_dtype=uint32 or auto"]
    with pytest.raises(DatasetError, match="too few for windows"):
        TrainWindows(torch.arange(10), seq_len=16, batch_size=2)


def test_lines_end_at_newline_only_and_old_caches_are_rebuilt(tmp_path):
    """WikiText lines end at "\\n"; U+2028, U+0085, form feeds and lone "\\r" inside a line do not end it."""
    from mimetic.data import wikitext

    root = write_wikitext(tmp_path / "wiki")
    test = root / "wiki.test.tokens"
    text = test.read_text(encoding="utf-8") + " a\u2028b c \n d\x85e\x0cf \n g\rh i \n"
    test.write_text(text, encoding="utf-8", newline="")
    lines = read_lines(root, "test")
    assert len(lines) == text.count("\n") and "".join(lines) == text
    assert lines[-3:] == [" a\u2028b c \n", " d\x85e\x0cf \n", " g\rh i \n"]
    assert count_words(lines[-3:]) == 3 * 4  # three lines of three whitespace-split words, each plus its <eos>
    crlf = tmp_path / "crlf"
    write_wikitext(crlf)
    (crlf / "wiki.test.tokens").write_bytes(text.replace("\n", "\r\n").encode())
    assert read_lines(crlf, "test") == lines  # a copy with Windows line ends reads as the original
    opts = options(root)
    tokenizer, tag = load_tokenizer(opts)
    assert load_split(opts, "test", tokenizer, tag).words == count_words(lines)
    # Caches written by the v1 reader (words counted over str.splitlines' lines) are never read again.
    assert wikitext.TOKENIZER_VERSION != "bytebpe-v1"


def test_text_that_is_not_utf8_is_one_clear_message(tmp_path):
    root = write_wikitext(tmp_path / "wiki")
    valid = root / "wiki.valid.tokens"
    valid.write_bytes(valid.read_bytes() + b" caf\xe9 \n")  # latin-1, not UTF-8
    lines = valid.read_bytes().count(b"\n")
    with pytest.raises(DatasetError, match=rf"wiki\.valid\.tokens is not UTF-8 text: byte 0xe9 .*line {lines}\).*"
                                           r"prepare_data\.py wikitext103.*iconv"):
        build_data(options(root), DataRequest(None, 4, 8, torch.device("cpu")))
