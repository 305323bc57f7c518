"""Paired comparisons of the depthwise-init proxy arms that make_tables.py does not draw: every init
against default at every epoch, and frozen against trained filters (paired by seed).

    python scripts/conv_compare.py --runs runs/conv >> results/conv_proxy.md

Reads finished runs (DONE) of ``--trained`` and ``--frozen`` experiments; prints markdown.
Closed-form runs are told apart by their sigmas (``dw_covariance (sigma 0.25->1.0)``), so runs
of several settings can be read together (``--runs runs/conv runs/conv_r2``).
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
from pathlib import Path

import yaml


def load(runs: list[Path]) -> dict[tuple[str, str, int], list[dict]]:
    out = {}
    for root in runs:
        for d in sorted(root.iterdir()):
            if not (d / "DONE").exists():
                continue
            try:
                cfg = yaml.safe_load((d / "config.yaml").read_text())
                metrics = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
                init = cfg["init"]
                label = init["name"]
                if "sigma_first" in init:  # closed-form runs with other sigmas are other arms
                    label += f" (sigma {init['sigma_first']}->{init['sigma_last']})"
                key = (cfg["experiment"], label, cfg["seed"])
                if not metrics:
                    raise ValueError("metrics.jsonl is empty")
            except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError) as err:
                print(f"warning: left out {d}: its config.yaml or metrics.jsonl cannot be read ({type(err).__name__}: "
                      f"{err})", file=sys.stderr)
                continue
            out[key] = metrics
    return out


def fmt(xs: list[float], signed: bool = False) -> str:
    mean = f"{st.mean(xs):+.2f}" if signed else f"{st.mean(xs):.2f}"
    return mean + (f" ± {st.stdev(xs):.2f}" if len(xs) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", type=Path, default=[Path("runs/conv")])
    p.add_argument("--trained", default="proxy_conv_cifar_slice")
    p.add_argument("--frozen", default="proxy_conv_cifar_slice_frozen")
    p.add_argument("--metric", default="test_acc")
    args = p.parse_args(argv)
    missing = [str(root) for root in args.runs if not root.is_dir()]
    if missing:
        print(f"error: --runs {' '.join(missing)}: no such directory. Point --runs at the folder(s) holding the runs "
              f"of experiment={args.trained} and {args.frozen} (e.g. --runs runs/conv).", file=sys.stderr)
        return 2
    runs = {k: v for k, v in load(args.runs).items() if k[0] in (args.trained, args.frozen)}
    m = args.metric
    if not runs:
        print(f"error: no finished run (DONE) of experiment={args.trained} or {args.frozen} in "
              f"{' '.join(map(str, args.runs))}: run them first (the commands in configs/experiment/{args.trained}"
              ".yaml), or point --runs / --trained / --frozen at the ones you have.", file=sys.stderr)
        return 2
    without = [k for k, records in runs.items() if any(m not in r for r in records)]
    if without:
        have = sorted({key for records in runs.values() for r in records for key in r
                       if isinstance(r.get(key), (int, float))})
        print(f"error: --metric {m} is not in every run's metrics ({len(without)} without it); the runs have: "
              f"{', '.join(have)}", file=sys.stderr)
        return 2
    inits = sorted({i for (_, i, _) in runs})
    name = {args.trained: "trained", args.frozen: "frozen"}
    print("## Per-epoch paired gaps and frozen vs trained (scripts/conv_compare.py)\n")
    for exp in (args.trained, args.frozen):
        for init in [i for i in inits if i != "default"]:
            seeds = sorted(s for (e, i, s) in runs if e == exp and i == init and (exp, "default", s) in runs)
            if not seeds:
                continue
            print(f"{init} − default, filters {name[exp]} ({exp}), {m} (pp), paired over seeds "
                  f"{','.join(map(str, seeds))}:\n")
            print("| epoch | default | " + init + " | paired gap | seeds ahead |\n|---|---|---|---|---|")
            epochs = min(len(runs[(exp, arm, s)]) for arm in (init, "default") for s in seeds)  # common to all
            for k in range(epochs):
                a = [runs[(exp, init, s)][k][m] for s in seeds]
                b = [runs[(exp, "default", s)][k][m] for s in seeds]
                gaps = [x - y for x, y in zip(a, b)]
                print(f"| {runs[(exp, init, seeds[0])][k]['epoch']} | {fmt(b)} | {fmt(a)} | {fmt(gaps, True)} | "
                      f"{sum(g > 0 for g in gaps)}/{len(gaps)} |")
            print()
    print(f"Frozen vs trained filters, final {m} (pp), paired by seed:\n")
    print("| comparison | pairs | gap | seeds ahead |\n|---|---|---|---|")
    pairs = [((args.frozen, i), (args.frozen, "default")) for i in inits if i != "default"]
    pairs += [((args.frozen, i), (args.trained, "default")) for i in inits]
    pairs += [((args.frozen, i), (args.trained, i)) for i in inits if i != "default"]
    closed = [i for i in inits if i.startswith("dw_covariance (")]
    pairs += [((e, "dw_covariance_transfer"), (e, c)) for e in (args.trained, args.frozen) for c in closed]
    for (ea, ia), (eb, ib) in pairs:
        seeds = sorted(s for (e, i, s) in runs if e == ea and i == ia and (eb, ib, s) in runs)
        if not seeds:
            continue
        gaps = [runs[(ea, ia, s)][-1][m] - runs[(eb, ib, s)][-1][m] for s in seeds]
        print(f"| {ia} {name[ea]} − {ib} {name[eb]} | {len(gaps)} | {fmt(gaps, True)} | "
              f"{sum(g > 0 for g in gaps)}/{len(gaps)} |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
