"""README's "Use it on your model" section runs as written, and the notebooks run headless."""

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Use it on your model"


def readme_snippets() -> list[str]:
    """The ```python blocks of the section, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_use_it_on_your_model_snippets_run(capsys):
    snippets = readme_snippets()
    assert len(snippets) == 4  # timm ViT, nn.MultiheadAttention, the GPT, a depthwise-conv model
    scope: dict = {}
    exec(compile("\n".join(snippets), "README.md (Use it on your model)", "exec"), scope)  # noqa: S102
    assert len(scope["layers"]) == 12
    mean = scope["report"]  # the last snippet's report: the ConvMixer's
    corr = [layer["neighbour_corr"] for layer in mean["depthwise"]["layers"]]
    assert corr[-1] > corr[0]  # the covariance widens with depth, as the snippet's comment says
    printed = capsys.readouterr().out
    assert "qk_diag_mean" in printed


def test_notebook_one_layer_runs_headless(tmp_path, capsys):
    out = tmp_path / "one_layer.png"
    module = runpy.run_path(str(ROOT / "notebooks" / "mimetic_one_layer.py"))
    assert module["main"](["--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.stat().st_size > 1000 and out.with_suffix(".pdf").stat().st_size > 1000
    # the library computes exactly the products built by hand, step by step
    library = re.search(r"library vs by hand: QK (\S+), VO (\S+)", said)
    assert library and float(library.group(1).rstrip(",")) < 1e-6 and float(library.group(2)) < 1e-6


def test_notebook_apply_to_your_model_runs_headless(tmp_path, capsys):
    out = tmp_path / "apply.png"
    module = runpy.run_path(str(ROOT / "notebooks" / "apply_to_your_model.py"))
    assert module["main"](["--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.stat().st_size > 1000 and out.with_suffix(".pdf").stat().st_size > 1000
    for model in ("timm ViT", "nn.MultiheadAttention", "GPT", "ConvMixer"):
        assert model in said
