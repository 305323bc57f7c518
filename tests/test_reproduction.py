"""The reproduction report: statuses from run directories, numbers traced to them, no overwrite."""

from __future__ import annotations

import pytest
import yaml
from helpers import REPO, load_script
from test_tables import write_run

from mimetic.analysis import AnalysisError
from mimetic.analysis.paper import load_paper_numbers
from mimetic.analysis.reproduction import (
    NOT_REPRODUCED,
    NOT_REPRODUCIBLE,
    NOT_RUN,
    PROXY_ONLY,
    REPRODUCED,
    RunCache,
    evaluate,
    load_claims,
    replace_block,
)

report_script = load_script("scripts/report.py", "report_script")

PAPER = {"gain": {"source": "abstract", "gain": "over 5%", "init": "mimetic"}}


def claim(i, **more):
    return {"id": i, "claim": f"claim {i}", "paper": ["gain"],
            "paper_scale": {"file": "f.yaml", "command": "python train.py", "group": f"{i}_full",
                            "compare": ["mimetic", "default"]}, **more}


def proxy(name):
    return {"experiment": name, "runs": ["proxies"], "compare": ["mimetic", "default"], "file": "p.yaml",
            "command": f"python train.py experiment={name}"}


@pytest.fixture
def setup(tmp_path):
    for seed, (d, m) in enumerate([(40.0, 45.0), (41.0, 44.0), (39.0, 46.0)]):
        write_run(tmp_path / "proxies", "default", seed, [d - 5, d], "cheap")
        write_run(tmp_path / "proxies", "mimetic", seed, [m - 5, m], "cheap")
    for seed, (d, m) in enumerate([(80.0, 85.0), (81.0, 80.0)]):  # ahead on one seed of two
        write_run(tmp_path / "runs", "default", seed, [d], "mixed_full")
        write_run(tmp_path / "runs", "mimetic", seed, [m], "mixed_full")
    for seed in range(2):
        write_run(tmp_path / "runs", "default", seed, [80.0], "good_full")
        write_run(tmp_path / "runs", "mimetic", seed, [84.0 + seed], "good_full")
    claims = [claim("good"), claim("mixed"), claim("proxy", evidence=[proxy("cheap")]), claim("none"),
              claim("closed", not_reproducible="only the abstract could be read")]
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump({"claims": claims}))
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(PAPER))
    return tmp_path


def test_every_status_comes_from_the_runs(setup):
    results = evaluate(load_claims(setup / "claims.yaml"), load_paper_numbers(setup / "paper.yaml"),
                       RunCache(setup), ("runs",))
    assert [r.status for r in results] == [REPRODUCED, NOT_REPRODUCED, PROXY_ONLY, NOT_RUN, NOT_REPRODUCIBLE]
    proxy_line = results[2].evidence[0].line()
    assert "mimetic 45.00 ± 1.00 vs default 40.00 ± 1.00" in proxy_line
    assert "paired gap +5.00 ± 2.00 pp, mimetic ahead on 3/3 seeds" in proxy_line
    assert "3/3" in proxy_line and "6 runs in proxies;" in results[2].evidence[0].provenance()
    assert "train them with `python train.py`" in results[3].paper_scale.line()


def test_the_script_writes_the_report_and_readme_table_and_refuses_other_inputs(setup, capsys):
    readme = setup / "README.md"
    readme.write_text(f"intro\n{report_script.START}\nold table\n{report_script.END}\nrest\n")
    out = setup / "results" / "README.md"
    args = ["--claims", str(setup / "claims.yaml"), "--paper-numbers", str(setup / "paper.yaml"), "--base",
            str(setup), "--out", str(out), "--readme", str(readme)]
    assert report_script.main(args) == 0
    text = out.read_text()
    assert "## proxy" in text and "**CPU proxy only**" in text and "source: abstract" in text
    table = readme.read_text()
    assert "old table" not in table and "[claim good](results/README.md#good)" in table
    assert table.startswith("intro\n") and table.endswith("rest\n")
    write_run(setup / "proxies", "mimetic", 3, [50.0], "cheap")  # new runs: other inputs
    assert report_script.main(args) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert report_script.main([*args, "--overwrite"]) == 0


def test_replace_block_needs_its_markers():
    with pytest.raises(AnalysisError, match="markers"):
        replace_block("no markers", "table", "<!-- a -->", "<!-- b -->")


def test_the_committed_claims_name_real_paper_numbers_experiments_and_ablations():
    from mimetic.analysis.ablations import ablation_spec

    claims = load_claims(REPO / "results" / "claims.yaml")
    keys = {p.key for p in load_paper_numbers(REPO / "results" / "paper_numbers.yaml")}
    assert {k for c in claims for k in c.paper} <= keys
    experiments = {p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml")}
    for c in claims:
        for e in c.evidence:
            if e.kind == "ablation":
                ablation_spec(e.name)
            else:
                assert e.name in experiments, e.name
    readme = (REPO / "README.md").read_text()
    assert report_script.START in readme and report_script.END in readme
