"""Benchmark specs: which algorithms, envs, seeds and budgets a suite runs, read from TOML.

A spec file (the shipped suites are in `wppg/bench/suites/`):

    name = "classic"                      # optional; default: the file name
    description = "..."                   # optional
    [common]                              # hyperparameters for every algorithm that has the field
    learning_starts = 1000
    [resources]                           # per run, default for every algorithm
    cpus = 1
    gpus = 0
    [algos.wppg-i]
    seeds = 5                             # seeds 0..4, or an explicit list [0, 3, 7]
    hyperparameters = { preset = "cpu" }  # only this algorithm; must be its fields
    resources = { cpus = 1, gpus = 0 }    # optional, overrides [resources]
    [envs."Pendulum-v1"]
    steps = 10000                         # env-step budget of each run on this env
    hyperparameters = { eval_every = 1000 }   # like [common], for this env only

Hyperparameters are the keyword arguments of `wppg.agent.make_agent` (the `TrainConfig` fields
and the algorithm's config fields, plus `preset` for the WPPG variants), or the ones the
external runner accepts. A run's hyperparameters are [common], then [envs.X], then [algos.Y]
(later wins). Names in [common] and [envs.X] go to every algorithm that has the field, and each
must be a field of at least one algorithm of the spec, so a misspelt name is still an error.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

# Names in specs that are not agent variants of `wppg.agent`: (variant, fixed fields, defaults).
ALIASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "sac-fixed": ("sac", {}, {"alpha": 0.2}),
    # The paper's WPPG-I exactly (`preset="paper"`: shared-latent projection, plug-in entropy, no box);
    # K and the rest stay settable.
    "wppg-i-paper": ("wppg-i", {"preset": "paper"}, {}),
    # WPPG with the pairing projection that was the default before the energy rule ('ot').
    "wppg-i-ot": ("wppg-i", {"coupling": "ot"}, {}),
    "wppg-ot": ("wppg", {"coupling": "ot"}, {}),
}
# Values an alias refuses, from any table or --set: sac-fixed is SAC with a fixed temperature.
ALIAS_REFUSED: dict[str, dict[str, Any]] = {"sac-fixed": {"alpha": "auto"}}
# Reference implementations run by `wppg.bench.external.run_external`.
EXTERNAL = ("sb3-sac", "sb3-ppo", "sbx-sac")
# Hyperparameters the harness sets itself, from `steps` and `seeds`.
RESERVED = ("total_steps", "seed")

SPEC_FIELDS = ("name", "description", "common", "resources", "algos", "envs")
ALGO_FIELDS = ("seeds", "hyperparameters", "resources")
ENV_FIELDS = ("steps", "hyperparameters")
RESOURCE_FIELDS = ("cpus", "gpus")


MAX_SEEDS = 10_000
"""Cap on the seeds of one algorithm in a spec."""
MAX_SEED = 2**31 - 1
"""Largest seed a spec may name."""


class SpecError(ValueError):
    """A benchmark spec that cannot be run: unknown algorithm, field or env, bad budget or seeds."""


class BenchError(RuntimeError):
    """The harness cannot go on: an optional dependency is missing, or a backend cannot reach OUT."""


@dataclass(frozen=True)
class Resources:
    """What one run asks for: CPU cores (also its thread count) and GPUs (a fraction is allowed)."""

    cpus: int = 1
    gpus: float = 0.0


@dataclass(frozen=True)
class Run:
    """One training run of a suite: an algorithm on an env at one seed for `steps` env steps."""

    env_id: str
    algo: str
    seed: int
    steps: int
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    @property
    def name(self) -> str:
        return f"{self.env_id}/{self.algo}/seed{self.seed}"

    def directory(self, out: Path) -> Path:
        """The run's directory: OUT/<env>/<algo>/seed<k>."""
        return Path(out) / self.env_id / self.algo / f"seed{self.seed}"

    def agent_arguments(self) -> tuple[str, dict[str, Any]]:
        """(variant, keyword arguments) of `wppg.agent.make_agent` for an algorithm of this package."""
        variant, fixed, defaults = ALIASES.get(self.algo, (self.algo, {}, {}))
        return variant, {**defaults, **self.hyperparameters, **fixed, "seed": self.seed, "total_steps": self.steps}

    @property
    def external(self) -> bool:
        return self.algo in EXTERNAL

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "resources": dataclasses.asdict(self.resources)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Run:
        return cls(
            env_id=d["env_id"], algo=d["algo"], seed=int(d["seed"]), steps=int(d["steps"]),
            hyperparameters=dict(d.get("hyperparameters", {})), resources=Resources(**d.get("resources", {})),
        )  # fmt: skip


@dataclass(frozen=True)
class AlgoSpec:
    seeds: tuple[int, ...]
    hyperparameters: dict[str, Any]
    resources: Resources


@dataclass(frozen=True)
class EnvSpec:
    steps: int
    hyperparameters: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    """A validated suite: `runs()` lists its runs, seed-major."""

    name: str
    description: str
    common: dict[str, Any]
    algos: dict[str, AlgoSpec]
    envs: dict[str, EnvSpec]
    source: str = ""

    def runs(self) -> list[Run]:
        """Every run, seed-major (all algorithms and envs at the first seed, then the second...),
        so that a suite stopped early has every algorithm at a few seeds."""
        seeds = sorted({s for a in self.algos.values() for s in a.seeds})
        out = []
        for seed in seeds:
            for env_id, env in self.envs.items():
                for algo, a in self.algos.items():
                    if seed in a.seeds:
                        hp = {
                            **_accepted(algo, self.common),
                            **_accepted(algo, env.hyperparameters),
                            **a.hyperparameters,
                        }
                        out.append(Run(env_id, algo, seed, env.steps, hp, a.resources))
        return out

    def total_steps(self) -> int:
        return sum(r.steps for r in self.runs())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "common": self.common,
            "algos": {
                k: {
                    "seeds": list(a.seeds),
                    "hyperparameters": a.hyperparameters,
                    "resources": dataclasses.asdict(a.resources),
                }
                for k, a in self.algos.items()
            },
            "envs": {k: {"steps": e.steps, "hyperparameters": e.hyperparameters} for k, e in self.envs.items()},
        }

    def override(
        self,
        *,
        algos: list[str] | None = None,
        envs: list[str] | None = None,
        seeds: list[int] | None = None,
        steps: int | None = None,
        budget_scale: float | None = None,
        set_values: dict[str, Any] | None = None,
    ) -> Spec:
        """A copy filtered to `algos`/`envs`/`seeds`, with every budget replaced by `steps` or scaled
        by `budget_scale`, and `set_values` added to [common] (highest precedence: they also replace
        an algorithm's own value of the same field)."""
        for kind, wanted, have in (("algorithm", algos, self.algos), ("env", envs, self.envs)):
            unknown = sorted(set(wanted or []) - set(have))
            if unknown:
                raise SpecError(
                    f"--{'algos' if kind == 'algorithm' else 'envs'}: {unknown} not in spec {self.name!r} (it has {sorted(have)})"
                )
        if steps is not None and steps < 1:
            raise SpecError(f"--steps must be >= 1, got {steps}")
        if budget_scale is not None and budget_scale <= 0:
            raise SpecError(f"--budget-scale must be > 0, got {budget_scale}")
        set_values = dict(set_values or {})
        _check_hyperparameter_values(set_values, "--set")
        new_algos = {}
        for name, a in self.algos.items():
            if algos and name not in algos:
                continue
            kept = tuple(s for s in a.seeds if seeds is None or s in seeds)
            if kept:
                new_algos[name] = dataclasses.replace(
                    a, seeds=kept, hyperparameters={**a.hyperparameters, **_accepted(name, set_values)}
                )
        if not new_algos:
            raise SpecError("the filters leave no run")
        new_envs = {}
        for env_id, e in self.envs.items():
            if envs and env_id not in envs:
                continue
            n = (
                steps
                if steps is not None
                else max(1, round(e.steps * budget_scale))
                if budget_scale is not None
                else e.steps
            )
            new_envs[env_id] = EnvSpec(n, e.hyperparameters)
        spec = dataclasses.replace(self, algos=new_algos, envs=new_envs, common={**self.common, **set_values})
        _check_spread(spec.common, "--set/[common]", list(new_algos))
        _check_aliases(spec, "--set/[common]")
        return spec


def _check_aliases(spec: Spec, where: str) -> None:
    """Each run of an alias keeps what the alias means (`ALIAS_REFUSED`)."""
    for run in spec.runs():
        for key, value in ALIAS_REFUSED.get(run.algo, {}).items():
            if run.hyperparameters.get(key) == value:
                raise SpecError(f"{where}: {run.algo} refuses {key} = {value!r}; use {ALIASES[run.algo][0]} for that")


def _check_hyperparameter_values(hp: dict[str, Any], where: str) -> None:
    reserved = sorted(set(hp) & set(RESERVED))
    if reserved:
        raise SpecError(
            f"{where}: {reserved} are set by the harness (use `steps` in [envs.ID] and `seeds` in [algos.NAME])"
        )


# --- what each algorithm accepts ------------------------------------------------------------------
def available_algorithms() -> list[str]:
    """Algorithm names a spec may use now: the names of `wppg.registry`, looked up at call time
    (others may register more), the aliases and the external references."""
    from wppg import registry

    return sorted({*registry.names(), *ALIASES, *EXTERNAL})


def accepted_hyperparameters(algo: str) -> set[str] | None:
    """Hyperparameter names `algo` accepts (for this package's algorithms, from `wppg.registry`),
    or None when the harness cannot know (an external reference whose module does not say): its
    runner then checks them when the run starts. For an external reference, the names come from
    `wppg.bench.external.accepted_hyperparameters(algo)`
    where that module offers it."""
    if algo in EXTERNAL:
        try:
            from wppg.bench import external
        except ImportError:
            return None
        names = getattr(external, "accepted_hyperparameters", None)
        return None if names is None else set(names(algo)) - set(RESERVED)
    from wppg import registry
    from wppg.config import TrainConfig
    from wppg.onpolicy import OFF_POLICY_FIELDS

    variant, fixed, _ = ALIASES.get(algo, (algo, {}, {}))
    entry = registry.get(variant)
    names = entry.config_fields() | {f.name for f in dataclasses.fields(TrainConfig)}
    if entry.presets:
        names.add("preset")
    if entry.on_policy:
        names -= set(OFF_POLICY_FIELDS)  # the on-policy trainer refuses them
    return names - set(entry.fixed) - set(fixed) - set(RESERVED)


def _accepted(algo: str, hp: dict[str, Any]) -> dict[str, Any]:
    names = accepted_hyperparameters(algo)
    return dict(hp) if names is None else {k: v for k, v in hp.items() if k in names}


def _check_spread(hp: dict[str, Any], where: str, algos: list[str]) -> None:
    """Each name of a shared table must be a field of at least one algorithm of the spec."""
    for key in hp:
        if not any((names := accepted_hyperparameters(a)) is None or key in names for a in algos):
            raise SpecError(
                f"{where}: unknown hyperparameter {key!r}: no algorithm of the spec ({', '.join(algos)}) has it"
            )


# --- parsing --------------------------------------------------------------------------------------
def _table(raw: Any, where: str, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a table, got {type(raw).__name__} {raw!r}")
    if allowed is not None:
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise SpecError(f"{where}: unknown field(s) {unknown}; allowed: {list(allowed)}")
    return raw


def _int(value: Any, where: str, minimum: int, maximum: int = 2**53) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where} must be an integer >= {minimum}, got {value!r}")
    if value > maximum:
        raise SpecError(f"{where} must be at most {maximum}, got {value!r}")
    return value


def _resources(raw: Any, where: str, default: Resources) -> Resources:
    t = _table(raw, where, RESOURCE_FIELDS)
    cpus = _int(t.get("cpus", default.cpus), f"{where}.cpus", 1)
    gpus = t.get("gpus", default.gpus)
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0:
        raise SpecError(f"{where}.gpus must be a number >= 0, got {gpus!r}")
    return Resources(cpus, float(gpus))


def _seeds(raw: Any, where: str) -> tuple[int, ...]:
    if isinstance(raw, list):
        seeds = tuple(_int(s, f"{where} entry", 0, MAX_SEED) for s in raw)
        if not seeds or len(set(seeds)) != len(seeds) or len(seeds) > MAX_SEEDS:
            raise SpecError(f"{where} must be a non-empty list of at most {MAX_SEEDS} distinct seeds, got {raw!r}")
        return seeds
    return tuple(range(_int(raw, where, 1, MAX_SEEDS)))


def _check_env_id(env_id: str, where: str) -> None:
    import gymnasium as gym

    from wppg.envs import DMC_PREFIX

    if env_id.startswith(DMC_PREFIX):
        try:
            import shimmy  # noqa: F401  (registers the dm_control/ ids)
        except ImportError:
            raise SpecError(f"{where}: {env_id!r} needs dm-control and shimmy: pip install 'wppg[dmc]'") from None
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise SpecError(f"{where}: {env_id!r} is not a registered Gymnasium env ({e})") from e


def parse_spec(raw: dict[str, Any], name: str, source: str = "") -> Spec:
    """Validate a spec's TOML table; every error names the table and field at fault."""
    where = f"spec {name!r}"
    _table(raw, where, SPEC_FIELDS)
    name = raw.get("name", name)
    common = dict(_table(raw.get("common", {}), f"{where} [common]"))
    _check_hyperparameter_values(common, f"{where} [common]")
    default_res = _resources(raw.get("resources", {}), f"{where} [resources]", Resources())

    algos_raw = _table(raw.get("algos", {}), f"{where} [algos]")
    if not algos_raw:
        raise SpecError(f"{where} has no [algos.NAME] table")
    known = available_algorithms()
    algos: dict[str, AlgoSpec] = {}
    for algo, t in algos_raw.items():
        w = f"{where} [algos.{algo}]"
        if algo not in known:
            raise SpecError(f"{w}: unknown algorithm {algo!r}; available: {', '.join(known)}")
        t = _table(t, w, ALGO_FIELDS)
        if "seeds" not in t:
            raise SpecError(f"{w}: missing `seeds` (a count, or a list of seeds)")
        hp = dict(_table(t.get("hyperparameters", {}), f"{w}.hyperparameters"))
        _check_hyperparameter_values(hp, f"{w}.hyperparameters")
        names = accepted_hyperparameters(algo)
        unknown = sorted(set(hp) - names) if names is not None else []
        if unknown:
            raise SpecError(
                f"{w}.hyperparameters: unknown hyperparameter(s) {unknown} for {algo}; valid: {sorted(names)}"
            )
        algos[algo] = AlgoSpec(
            _seeds(t["seeds"], f"{w}.seeds"), hp, _resources(t.get("resources", {}), f"{w}.resources", default_res)
        )

    envs_raw = _table(raw.get("envs", {}), f"{where} [envs]")
    if not envs_raw:
        raise SpecError(f'{where} has no [envs."ID"] table')
    envs: dict[str, EnvSpec] = {}
    for env_id, t in envs_raw.items():
        w = f"{where} [envs.{env_id!r}]"
        t = _table(t, w, ENV_FIELDS)
        if "steps" not in t:
            raise SpecError(f"{w}: missing `steps` (the env-step budget of each run)")
        steps = _int(t["steps"], f"{w}.steps (the env-step budget)", 1)
        hp = dict(_table(t.get("hyperparameters", {}), f"{w}.hyperparameters"))
        _check_hyperparameter_values(hp, f"{w}.hyperparameters")
        _check_spread(hp, f"{w}.hyperparameters", list(algos))
        _check_env_id(env_id, w)
        envs[env_id] = EnvSpec(steps, hp)
    _check_spread(common, f"{where} [common]", list(algos))
    spec = Spec(name, str(raw.get("description", "")), common, algos, envs, source)
    _check_aliases(spec, where)
    return spec


# --- finding specs --------------------------------------------------------------------------------
def suite_names() -> list[str]:
    """Names of the suites shipped with the package."""
    folder = importlib_resources.files("wppg.bench") / "suites"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def suite_path(name: str) -> Path:
    return Path(str(importlib_resources.files("wppg.bench") / "suites" / f"{name}.toml"))


def read_raw(suite_or_path: str | Path) -> tuple[dict[str, Any], str, str]:
    """(TOML table, default name, text) of a shipped suite's name or a spec file's path."""
    path = Path(suite_or_path)
    if not path.exists():
        if str(suite_or_path) not in suite_names():
            raise SpecError(f"{suite_or_path!r} is neither a spec file nor a suite; suites: {', '.join(suite_names())}")
        path = suite_path(str(suite_or_path))
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from e
    return raw, path.stem, text


def load_spec(suite_or_path: str | Path) -> Spec:
    """Read and validate a shipped suite (by name) or a spec file (by path)."""
    raw, name, text = read_raw(suite_or_path)
    return parse_spec(raw, name, text)


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; a value is read as a TOML value (`3`, `1e-3`, `false`, `[32, 32]`,
    `"cpu"`), and a bare word that is not TOML as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out
