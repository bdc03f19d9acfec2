"""The default pack: every rule tested, quiet on healthy runs of any dimension, and on the real runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hjepa_watch.replay import replay
from hjepa_watch.rules.loader import RuleLoadError, load_rules
from hjepa_watch.rules.pack import default_pack

from .conftest import torch_writer

TESTS = Path(__file__).resolve().parents[1] / "rules" / "tests"


def test_every_rule_has_a_firing_case_and_the_pack_a_healthy_one() -> None:
    names = {r.rule.name for r in load_rules([default_pack()])}
    fired: set[str] = set()
    quiet = 0
    for f in TESTS.glob("*.yaml"):
        for test in yaml.safe_load(f.read_text())["tests"]:
            for check in test["expect"]:
                fired |= {e["rule"] for e in check["firing"]}
                quiet += not check["firing"]
    assert names - fired == set(), f"rules without a firing test: {sorted(names - fired)}"
    assert quiet >= len(names)


def _embedding_metrics(z: np.ndarray) -> dict[str, float]:
    """The collapse metrics of DESIGN.md §8 for a batch of embeddings (N, D)."""
    n, d = z.shape
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    std = zn.std(axis=0)
    s = np.linalg.svd(zn - zn.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    rank = float(np.exp(-(p * np.log(p + 1e-7)).sum()))  # RankMe
    total = zn.sum(axis=0)
    mean_sim = float((total @ total - n) / (n * (n - 1)))  # exact mean pairwise cosine
    return {
        "std_sqrt_d": float(std.mean() * np.sqrt(d)),
        "mean_std_per_dim": float(std.mean()),
        "effective_rank": rank,
        "rank_fraction": rank / min(n, d),
        "mean_similarity": mean_sim,
    }


@pytest.mark.parametrize(("dim", "batch"), [(64, 256), (768, 256), (768, 1024), (4096, 512)])
def test_healthy_runs_of_any_dimension_raise_no_collapse_alert(tmp_path, dim, batch) -> None:
    rng = np.random.default_rng(dim + batch)
    samples = [_embedding_metrics(rng.standard_normal((batch, dim))) for _ in range(8)]
    w = torch_writer(tmp_path / f"d{dim}-n{batch}")
    for step in range(700):
        m = samples[step % len(samples)]
        for level in range(3):
            for k, v in m.items():
                w.add_scalar(f"train/collapse/level{level}_{k}", v, step)
    w.close()
    transitions, summary = replay([str(tmp_path)], load_rules([default_pack()]))
    assert summary.scalars == 700 * 3 * 5
    assert [(t.key.rule, t.step) for t in transitions] == []
    healthy = samples[0]
    assert 0.95 < healthy["std_sqrt_d"] < 1.05 and abs(healthy["mean_similarity"]) < 0.05


def test_upstream_runs_raise_nothing(upstream) -> None:
    """No alert from the restart boundaries, the warmup (lr = 0 at step 1) or the hourly cadence."""
    transitions, summary = replay([str(upstream)], load_rules([default_pack()]))
    assert summary.scalars == 412
    assert transitions == []


def test_override_and_disable_by_name(tmp_path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "include: [default]\n"
        "disable: [loss_plateau, run_stale]\n"
        "rules:\n"
        "  - {name: collapse_std, metric: 'train/collapse/level{level}_std_sqrt_d', condition: below,"
        " threshold: 0.05, severity: critical}\n"
    )
    rules = {r.rule.name: r.rule for r in load_rules([str(mine)])}
    assert "loss_plateau" not in rules and "run_stale" not in rules
    assert rules["collapse_std"].threshold == 0.05 and "grad_spike" in rules
    bad = tmp_path / "bad.yaml"
    bad.write_text("include: [default]\ndisable: [no_such_rule]\n")
    with pytest.raises(RuleLoadError, match="no included rule named 'no_such_rule'"):
        load_rules([str(bad)])
    assert len(load_rules(["default"])) == len(load_rules([default_pack()]))
