"""`wppg bench speed` runs end to end on tiny shapes and reports consistent figures."""

import json

import pytest

from wppg.bench import speed
from wppg.flops import gradient_step_flops


@pytest.mark.full
def test_roofline_rows_are_consistent():
    rows = speed.roofline(
        3, 1, (16,), 8, 2, 2, reps=1, cases=[("sac", 1), ("wppg", 2), ("wppg-i", 2)], log=lambda s: None
    )
    assert [(r["algo"], r["K"]) for r in rows] == [("sac", 1), ("wppg", 2), ("wppg-i", 2)]
    for r in rows:
        flops = gradient_step_flops(r["algo"], 3, 1, (16,), 8, K=r["K"], entropy_M=2, entropy_L=2, latent_dim=1)[
            "total"
        ]
        assert r["gflop_per_step"] == pytest.approx(flops / 1e9)
        assert r["ms_per_step"] > 0 and r["products_only_ms"] > 0
        assert r["achieved_gflops"] == pytest.approx(r["gflop_per_step"] / r["ms_per_step"] * 1e3)
        assert r["fraction_of_shape_roofline"] == pytest.approx(r["products_only_ms"] / r["ms_per_step"])


def test_training_section_times_our_loop_without_evaluation(tmp_path):
    rows = speed.training("Pendulum-v1", 64, 32, [32], 0, cases=[("sac", {"hidden": (16,), "batch_size": 16})], external=False,
                          log=lambda s: None)  # fmt: skip
    assert len(rows) == 1 and rows[0]["impl"] == "wppg" and rows[0]["env_steps"] == 64
    assert rows[0]["steps_per_s"] > 0


def test_cli_writes_json(tmp_path):
    out = tmp_path / "s.json"
    code = speed.main(["--sections", "training", "--env", "Pendulum-v1", "--steps", "32", "--learning-starts", "32",
                       "--train-freq", "32", "--variants", "sac", "--no-external", "--out", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1 and [r["algo"] for r in result["training"]] == ["sac"]


def test_training_rounds_and_ratio_summary():
    rows = speed.training("Pendulum-v1", 32, 32, [32], 0, cases=[("sac", {"hidden": (16,), "batch_size": 16})], external=False,
                          rounds=2, log=lambda s: None)  # fmt: skip
    assert [r["round"] for r in rows] == [1, 2]
    synthetic = [
        {"impl": "sbx-sac", "algo": "sac", "train_freq": 32, "steps_per_s": 100.0, "round": 1},
        {"impl": "wppg", "algo": "sac", "train_freq": 32, "steps_per_s": 150.0, "round": 1, "ratio_to_sbx_round": 1.5},
        {"impl": "wppg", "algo": "sac", "train_freq": 32, "steps_per_s": 110.0, "round": 2, "ratio_to_sbx_round": 1.1},
        {"impl": "wppg", "algo": "sac", "train_freq": 32, "steps_per_s": 120.0, "round": 3, "ratio_to_sbx_round": 1.2},
    ]
    assert speed.ratio_summary(synthetic) == {"sac train_freq=32": {"ratios": [1.5, 1.1, 1.2], "median": 1.2}}


def test_cli_refuses_zero_rounds():
    with pytest.raises(SystemExit):
        speed.main(["--sections", "training", "--rounds", "0"])


@pytest.mark.slow  # times whole benchmark sections: `make test-learning`
def test_coupling_section_times_each_coupling_and_the_papers_algorithm():
    rows = speed.coupling_section(3, 1, (8,), 8, 2, 2, reps=1, cases=[("wppg", 2)], log=lambda s: None)
    variants = [(r["coupling"], r["entropy_estimator"], r["boundary"]) for r in rows]
    assert variants == [("shared-latent", "knn", "reflect"), ("ot", "knn", "reflect"), ("score", "knn", "reflect"),
                        ("energy", "knn", "reflect"), ("shared-latent", "plug-in", "none")]  # fmt: skip
    assert all(r["ms_per_step"] > 0 for r in rows)
    assert rows[-1]["ratio_to_paper"] == pytest.approx(1.0)


@pytest.mark.slow  # times whole benchmark sections: `make test-learning`
def test_precision_section_times_both_precisions():
    out = speed.precision_section(
        3, 1, (16, 16), 8, 2, 2, reps=1, cases=[("sac", 1), ("wppg-i", 2)], log=lambda s: None
    )
    assert [(r["algo"], r["K"]) for r in out["steps"]] == [("sac", 1), ("wppg-i", 2)]
    for r in out["steps"]:
        assert r["ms_per_step_float32"] > 0 and r["ms_per_step_bf16"] > 0
        assert r["speedup"] == pytest.approx(r["ms_per_step_float32"] / r["ms_per_step_bf16"])
    assert out["product"] == [64, 16, 16] and out["product_gflops_bf16"] > 0


@pytest.mark.full
def test_cost_section_ratios_to_sac_per_round():
    """Each case's ms per env step over the same round's SAC's, the median over rounds, and the FLOP
    model's ratio; SBX is skipped here (external=False)."""
    small = {"hidden": (16,), "batch_size": 16}
    cases = [("sac", small), ("wppg-i", small), ("wppg-i", {**small, "preset": "cpu"})]
    out = speed.cost_section("Pendulum-v1", 8, 32, rounds=2, cases=cases, external=False, log=lambda s: None)
    assert [(r["round"], r["algo"]) for r in out["rows"]][:3] == [(1, speed.case_label(*c)) for c in cases]
    sac = out["summary"][speed.case_label(*cases[0])]
    assert sac["ratios"] == [1.0, 1.0] and sac["model_ratio"] == 1.0
    cheap, cpu = (out["summary"][speed.case_label(*c)] for c in cases[1:])
    assert cpu["model_ratio"] > cheap["model_ratio"] > 1.0
    for r in out["rows"]:
        assert r["ms_per_env_step"] == pytest.approx(1e3 / r["steps_per_s"])


@pytest.mark.full
def test_cost_section_baselines_without_flop_model():
    """WPO and PPO get a measured ratio and no model ratio; PPO times whole rollouts (16 env steps
    asked, one rollout of 32 timed)."""
    cases = [("sac", {"hidden": (16,), "batch_size": 16}), ("wpo", {"hidden": (16,), "batch_size": 16, "K": 2}),
             ("ppo", {"hidden": (16,), "n_steps": 32, "n_minibatches": 2, "n_epochs": 1})]  # fmt: skip
    out = speed.cost_section("Pendulum-v1", 16, 32, rounds=1, cases=cases, external=False, log=lambda s: None)
    assert [r["env_steps"] for r in out["rows"]] == [16, 16, 32]
    for c in cases[1:]:
        row = out["summary"][speed.case_label(*c)]
        assert row["median_ratio"] > 0 and "model_ratio" not in row
