"""Generated text in the exact WikiText layout (wiki.{train,valid,test}.tokens), for the LM tests."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ("the of and in to a was is for on as by with he at from his an it were are which this also be had "
         "lobster species ocean river city game album song army ship war season team film church").split()


def article(rng: random.Random, title: str, paragraphs: int) -> str:
    lines = [" \n", f" = {title} = \n", " \n"]
    for _ in range(paragraphs):
        words = []
        for _ in range(rng.randint(3, 6)):  # sentences
            words += [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
            words += [rng.choice([",", "@-@", "<unk>", "1 @,@ 000", "Café"]) , rng.choice(WORDS), "."]
        lines.append(" " + " ".join(words) + " \n")
        lines.append(" \n")
    return "".join(lines)


def write_wikitext(root: Path, articles: tuple[int, int, int] = (12, 2, 2), seed: int = 0) -> Path:
    """Articles of random words (with WikiText's ``@-@``, ``<unk>`` and headings) in ``root``."""
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, count in zip(("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"), articles):
        text = "".join(article(rng, f"Article {name} {i}", rng.randint(2, 4)) for i in range(count))
        (root / name).write_text(text, encoding="utf-8")
    return root
