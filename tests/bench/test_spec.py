"""Benchmark specs: validation errors, the shipped suites, run order, overrides, the CLI's list."""

from __future__ import annotations

import contextlib
import io
import sys
import tomllib
import types

import pytest

from wppg.bench.spec import (
    ALIASES,
    EXTERNAL,
    SpecError,
    load_spec,
    parse_set,
    parse_spec,
    read_raw,
    suite_names,
)
from wppg.cli import main
from wppg.registry import REGISTRY

BASE = {
    "common": {"learning_starts": 100, "preset": "cpu"},
    "algos": {"sac": {"seeds": 2}, "wppg": {"seeds": [0, 5], "hyperparameters": {"K": 2}}},
    "envs": {
        "Pendulum-v1": {"steps": 300},
        "MountainCarContinuous-v0": {"steps": 500, "hyperparameters": {"eval_every": 100}},
    },
}


def spec_with(**changes):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for path, value in changes.items():
        table = raw
        *heads, last = path.split("__")
        for h in heads:
            table[h] = dict(table.get(h, {}))
            table = table[h]
        if value is None:
            table.pop(last, None)
        else:
            table[last] = value
    return parse_spec(raw, "test")


def test_runs_are_seed_major_with_hyperparameters_resolved():
    runs = spec_with().runs()
    assert [(r.seed, r.env_id, r.algo) for r in runs] == [
        (0, "Pendulum-v1", "sac"), (0, "Pendulum-v1", "wppg"),
        (0, "MountainCarContinuous-v0", "sac"), (0, "MountainCarContinuous-v0", "wppg"),
        (1, "Pendulum-v1", "sac"), (1, "MountainCarContinuous-v0", "sac"),
        (5, "Pendulum-v1", "wppg"), (5, "MountainCarContinuous-v0", "wppg"),
    ]  # fmt: skip
    by = {(r.env_id, r.algo, r.seed): r for r in runs}
    # [common] and [envs] names go only to the algorithms that have them: preset is WPPG's.
    assert by["Pendulum-v1", "sac", 0].hyperparameters == {"learning_starts": 100}
    assert by["MountainCarContinuous-v0", "wppg", 5].hyperparameters == {
        "learning_starts": 100,
        "preset": "cpu",
        "eval_every": 100,
        "K": 2,
    }
    assert by["MountainCarContinuous-v0", "sac", 1].steps == 500


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"algos__wpp": {"seeds": 1}}, "unknown algorithm 'wpp'"),
        ({"envs__Pendulum-v1__budget": 300}, "unknown field(s) ['budget']"),
        ({"envs__Pendulum-v1__steps": 0}, "steps (the env-step budget) must be an integer >= 1, got 0"),
        ({"envs__Pendulum-v1__steps": -5}, "must be an integer >= 1, got -5"),
        ({"envs__Pendulum-v1__steps": 1.5}, "must be an integer >= 1, got 1.5"),
        ({"envs__Pendulum-v1__steps": "1000"}, "must be an integer >= 1, got '1000'"),
        ({"envs__Pendulum-v1__steps": True}, "must be an integer >= 1, got True"),
        ({"envs__Pendulum-v1__steps": None}, "missing `steps`"),
        ({"envs__NoSuchEnv-v0": {"steps": 10}}, "'NoSuchEnv-v0' is not a registered Gymnasium env"),
        ({"algos__sac__seeds": 0}, "seeds must be an integer >= 1"),
        ({"algos__sac__seeds": [1, 1]}, "distinct seeds"),
        ({"algos__sac__seeds": None}, "missing `seeds`"),
        ({"algos__sac__hyperparameters": {"K": 4}}, "unknown hyperparameter(s) ['K'] for sac"),
        ({"algos__sac__hyperparameters": {"preset": "cpu"}}, "unknown hyperparameter(s) ['preset'] for sac"),
        ({"algos__sac__color": "red"}, "unknown field(s) ['color']"),
        ({"common__learnig_starts": 5}, "unknown hyperparameter 'learnig_starts': no algorithm of the spec"),
        ({"common__total_steps": 5}, "set by the harness"),
        ({"algos__wppg__hyperparameters": {"seed": 3}}, "set by the harness"),
        ({"envs__Pendulum-v1__hyperparameters": {"K_typo": 3}}, "unknown hyperparameter 'K_typo'"),
        ({"resources__cpus": 0}, "cpus must be an integer >= 1"),
        ({"resources__gpus": -1}, "gpus must be a number >= 0"),
        ({"extra": 1}, "unknown field(s) ['extra']"),
        ({"algos__wppg__hyperparameters": {"policy": "implicit"}}, "unknown hyperparameter(s) ['policy'] for wppg"),
    ],
)
def test_validation_errors_name_the_problem(changes, message):
    with pytest.raises(SpecError) as e:
        spec_with(**changes)
    assert message in str(e.value)


def test_off_policy_fields_do_not_go_to_ppo():
    spec = spec_with(
        algos={"ppo": {"seeds": 1}, "sac": {"seeds": 1}}, common={"learning_starts": 100, "eval_every": 50}
    )
    by = {r.algo: r.hyperparameters for r in spec.runs() if r.env_id == "Pendulum-v1"}
    assert by == {"ppo": {"eval_every": 50}, "sac": {"learning_starts": 100, "eval_every": 50}}
    with pytest.raises(SpecError, match=r"unknown hyperparameter\(s\) \['learning_starts'\] for ppo"):
        spec_with(algos={"ppo": {"seeds": 1, "hyperparameters": {"learning_starts": 100}}}, common={})


def test_sac_fixed_is_sac_with_a_fixed_temperature():
    spec = spec_with(algos={"sac-fixed": {"seeds": 1}}, common={})
    variant, kwargs = spec.runs()[0].agent_arguments()
    assert variant == "sac" and kwargs["alpha"] == 0.2
    assert kwargs["seed"] == 0 and kwargs["total_steps"] == 300
    spec = spec_with(algos={"sac-fixed": {"seeds": 1, "hyperparameters": {"alpha": 0.05}}}, common={})
    assert spec.runs()[0].agent_arguments()[1]["alpha"] == 0.05
    # alpha = "auto" would make it plain sac: refused from its table, [common] and --set.
    with pytest.raises(SpecError, match="sac-fixed refuses alpha = 'auto'"):
        spec_with(algos={"sac-fixed": {"seeds": 1, "hyperparameters": {"alpha": "auto"}}}, common={})
    with pytest.raises(SpecError, match="sac-fixed refuses alpha = 'auto'"):
        spec_with(algos={"sac-fixed": {"seeds": 1}}, common={"alpha": "auto"})
    both = spec_with(algos={"sac-fixed": {"seeds": 1}, "sac": {"seeds": 1}}, common={})
    with pytest.raises(SpecError, match="sac-fixed refuses alpha = 'auto'"):
        both.override(set_values={"alpha": "auto"})
    fixed = both.override(set_values={"alpha": 0.5})  # a number fixes sac's alpha too
    assert {r.algo: r.agent_arguments()[1]["alpha"] for r in fixed.runs()} == {"sac-fixed": 0.5, "sac": 0.5}


def test_override_filters_budgets_and_set_values():
    spec = spec_with()
    small = spec.override(algos=["wppg"], seeds=[5], steps=50, set_values={"K": 3, "hidden": [8]})
    assert [(r.env_id, r.algo, r.seed, r.steps) for r in small.runs()] == [
        ("Pendulum-v1", "wppg", 5, 50),
        ("MountainCarContinuous-v0", "wppg", 5, 50),
    ]
    assert small.runs()[0].hyperparameters["K"] == 3  # --set beats the algorithm's own value
    scaled = spec.override(budget_scale=0.5)
    assert {r.env_id: r.steps for r in scaled.runs()} == {"Pendulum-v1": 150, "MountainCarContinuous-v0": 250}
    with pytest.raises(SpecError, match=r"--algos: \['ppo2'\] not in spec"):
        spec.override(algos=["ppo2"])
    with pytest.raises(SpecError, match="no run"):
        spec.override(seeds=[99])
    with pytest.raises(SpecError, match="--steps must be >= 1"):
        spec.override(steps=0)
    with pytest.raises(SpecError, match="unknown hyperparameter 'nope'"):
        spec.override(set_values={"nope": 1})


def test_parse_set_reads_toml_values():
    assert parse_set(["a=3", "b=1e-3", "c=false", "d=[32, 32]", 'e="cpu"', "f=cpu"]) == {
        "a": 3, "b": 1e-3, "c": False, "d": [32, 32], "e": "cpu", "f": "cpu"
    }  # fmt: skip
    with pytest.raises(SpecError, match="key=value"):
        parse_set(["novalue"])


def test_spec_file_path_and_bad_toml(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[algos.sac]\nseeds = 1\n[envs."Pendulum-v1"]\nsteps = 10\n')
    spec = load_spec(path)
    assert spec.name == "mine" and len(spec.runs()) == 1
    path.write_text("[algos.sac\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(path)
    with pytest.raises(SpecError, match="neither a spec file nor a suite"):
        load_spec("no-such-suite")


@pytest.mark.parametrize("name", ["smoke", "classic", "mujoco-100k", "mujoco-1m", "mujoco-cpu"])
def test_shipped_suites_validate_or_name_the_missing_algorithms(name):
    assert name in suite_names()
    raw, _, _ = read_raw(name)
    available = set(REGISTRY) | set(ALIASES) | set(EXTERNAL)
    missing = [a for a in raw["algos"] if a not in available]
    if missing:  # an algorithm not registered in this installation: the error names it
        with pytest.raises(SpecError, match=f"unknown algorithm '{missing[0]}'"):
            load_spec(name)
    else:
        spec = load_spec(name)
        assert len(spec.runs()) == sum(len(a.seeds) for a in spec.algos.values()) * len(spec.envs)


def test_suite_contents():
    smoke = load_spec("smoke")
    assert set(smoke.algos) == {"sac", "wppg"} and list(smoke.envs) == ["Pendulum-v1"]
    classic = tomllib.loads(read_raw("classic")[2])
    seeds = {a: t["seeds"] for a, t in classic["algos"].items()}
    assert seeds == {"wppg-i": 5, "sac": 5, "wppg": 3, "sac-fixed": 3, "wpo": 3, "ppo": 3, "sb3-sac": 3}
    assert classic["algos"]["wppg"]["hyperparameters"]["preset"] == "cpu"
    assert all(10_000 <= e["steps"] <= 20_000 for e in classic["envs"].values())
    for budget, name in ((100_000, "mujoco-100k"), (1_000_000, "mujoco-1m")):
        envs = tomllib.loads(read_raw(name)[2])["envs"]
        assert envs == {f"{e}-v5": {"steps": budget} for e in ("Hopper", "Walker2d", "HalfCheetah", "Ant", "Humanoid")}


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_cli_list_dry_run_and_errors(tmp_path):
    code, out, _ = run_cli(["bench", "list"])
    assert code == 0 and "smoke: 4 runs, 8,000 env steps" in out and "classic" in out and "mujoco-1m" in out
    code, out, _ = run_cli(
        ["bench", "run", "smoke", "--out", str(tmp_path), "--dry-run", "--seeds", "1", "--steps", "40"]
    )
    assert code == 0 and "Pendulum-v1/sac/seed1: 40 steps, new" in out and "2 runs, 80 env steps" in out
    code, _, err = run_cli(["bench", "run", "no-such-suite", "--out", str(tmp_path)])
    assert code == 2 and "neither a spec file nor a suite" in err
    code, _, err = run_cli(["bench", "frobnicate"])
    assert code == 2 and "unknown command 'frobnicate'" in err


def test_cli_speed_dispatches_to_the_speed_module(monkeypatch):
    seen = []
    fake = types.ModuleType("wppg.bench.speed")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "wppg.bench.speed", fake)
    assert run_cli(["bench", "speed", "--sections", "vmap"])[0] == 7
    assert seen == [["--sections", "vmap"]]


def test_set_values_skip_external_references_without_the_key():
    """`--set preset=cpu` reaches WPPG but not SBX SAC, which has no such setting; a key the
    reference does map (train_freq) reaches it."""
    spec = spec_with(algos={"wppg": {"seeds": 1}, "sbx-sac": {"seeds": 1}}, common={})
    runs = {r.algo: r.hyperparameters for r in spec.override(set_values={"preset": "cpu", "train_freq": 4}).runs()}
    assert runs["wppg"]["preset"] == "cpu" and "preset" not in runs["sbx-sac"]
    assert runs["wppg"]["train_freq"] == runs["sbx-sac"]["train_freq"] == 4


def _wppg_configs(run):
    """The WPPGConfig and TrainConfig `make_agent` would build for a run (no env is made)."""
    from wppg.agent import split_hyperparameters
    from wppg.algorithms import PRESETS, WPPGConfig
    from wppg.config import TrainConfig

    variant, kwargs = run.agent_arguments()
    kwargs = {k: v for k, v in kwargs.items() if k != "seed"}
    preset = kwargs.pop("preset", "default")
    algo_kw, train_kw = split_hyperparameters("wppg", {**PRESETS[preset], **kwargs})
    return WPPGConfig(**{**REGISTRY[variant].fixed, **algo_kw}), TrainConfig(**train_kw)


def test_wppg_i_paper_is_the_papers_algorithm_with_settable_k():
    spec = spec_with(algos={"wppg-i-paper": {"seeds": 1, "hyperparameters": {"K": 8, "entropy_M": 8}}}, common={})
    variant, kwargs = spec.runs()[0].agent_arguments()
    assert variant == "wppg-i" and kwargs["preset"] == "paper" and kwargs["K"] == 8
    cfg, _ = _wppg_configs(spec.runs()[0])
    assert (cfg.policy, cfg.coupling, cfg.K, cfg.entropy_M, cfg.tau) == ("implicit", "shared-latent", 8, 8, 1e-4)
    with pytest.raises(SpecError, match="preset"):  # fixed by the alias
        spec_with(algos={"wppg-i-paper": {"seeds": 1, "hyperparameters": {"preset": "cpu"}}}, common={})
    # --set preset=... reaches the other WPPG variants, not the alias.
    both = spec_with(algos={"wppg-i-paper": {"seeds": 1}, "wppg": {"seeds": 1}}, common={}).override(
        set_values={"preset": "cpu"}
    )
    assert {r.algo: r.hyperparameters.get("preset") for r in both.runs()} == {"wppg-i-paper": None, "wppg": "cpu"}


def test_ot_aliases_pin_the_pairing_projection():
    spec = spec_with(algos={"wppg-i-ot": {"seeds": 1, "hyperparameters": {"preset": "cpu"}}, "wppg-ot": {"seeds": 1}})
    cfgs = {r.algo: _wppg_configs(r)[0] for r in spec.runs()}
    assert {a: (c.policy, c.coupling) for a, c in cfgs.items()} == {
        "wppg-i-ot": ("implicit", "ot"),
        "wppg-ot": ("gaussian", "ot"),
    }
    assert cfgs["wppg-i-ot"].K == 8
    with pytest.raises(SpecError, match="coupling"):  # fixed by the alias
        spec_with(algos={"wppg-ot": {"seeds": 1, "hyperparameters": {"coupling": "energy"}}})


def test_mujoco_cpu_suite_and_auto_tau_from_toml_and_set():
    spec = load_spec("mujoco-cpu")
    assert list(spec.envs) == ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5"]
    assert {e.steps for e in spec.envs.values()} == {100_000}
    assert {a: len(s.seeds) for a, s in spec.algos.items()} == {"sac": 5, "wppg-i": 5, "wppg": 5, "wppg-i-paper": 5}
    assert len(spec.runs()) == 80
    by = {r.algo: r for r in spec.runs() if r.seed == 0 and r.env_id == "Hopper-v5"}
    for algo, policy in (("wppg-i", "implicit"), ("wppg", "gaussian")):
        cfg, train = _wppg_configs(by[algo])
        assert (cfg.policy, cfg.K, cfg.entropy_M, cfg.entropy_L, cfg.coupling) == (policy, 8, 8, 8, "energy")
        assert cfg.auto_tau and train.total_steps == 100_000 and train.eval_every == 5000
    cfg, _ = _wppg_configs(by["wppg-i-paper"])
    assert (cfg.coupling, cfg.K, cfg.entropy_M, cfg.entropy_L, cfg.auto_tau) == ("shared-latent", 8, 8, 8, False)
    assert "tau" not in by["sac"].hyperparameters
    # --set tau=auto: a bare word, read as the string; it reaches the WPPG variants only.
    assert parse_set(["tau=auto"]) == {"tau": "auto"}
    runs = {r.algo: r for r in spec.override(set_values=parse_set(["tau=auto"]), seeds=[0], envs=["Ant-v5"]).runs()}
    assert runs["wppg-i-paper"].hyperparameters["tau"] == "auto" and "tau" not in runs["sac"].hyperparameters
    assert _wppg_configs(runs["wppg-i-paper"])[0].auto_tau
    code, out, _ = run_cli(["bench", "run", "mujoco-cpu", "--dry-run", "--out", "/nonexistent/mujoco-cpu"])
    assert code == 0 and "80 runs, 8,000,000 env steps" in out
    assert "Ant-v5/wppg-i-paper/seed4: 100000 steps, new" in out and "(wppg-i with {'preset': 'paper'})" in out
