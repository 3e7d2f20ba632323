"""The lab's experiments. Each takes a config dataclass (its fields are the CLI options) and
writes CSV files and a PNG into `out`; `run` is the shared iteration loop with diagnostics."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wppg.lab import diagnostics as dg
from wppg.lab.evaluation import GridMDP
from wppg.lab.grid import Grid
from wppg.lab.particles import ParticleConfig, initial_particles, kde_policy, particle_step, plugin_values
from wppg.lab.plots import plot_curves, plot_loglog
from wppg.lab.problems import PRESETS, make_problem
from wppg.lab.updates import QError, Update, make_update


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Run:
    """A trajectory: one row of diagnostics per iterate, and the last iterate."""

    rows: list[dict[str, float]]
    values: np.ndarray  # V^k per iterate, (K + 1, S)
    w: np.ndarray
    converged: bool

    def column(self, key: str) -> np.ndarray:
        return np.array([r[key] for r in self.rows])

    def self_gap(self) -> np.ndarray:
        """||V^k - V^last||_inf: distance to the scheme's own (approximate) fixed point."""
        return np.max(np.abs(self.values - self.values[-1]), axis=1)


def run(
    mdp: GridMDP,
    update: Update,
    w0: np.ndarray,
    max_iter: int,
    *,
    tol: float = 0.0,
    w2_every: int = 1,
    label: str = "",
) -> Run:
    """Iterate `update` from w0 for max_iter steps, or until ||w_{k+1} - w_k||_1 < tol.

    Rows: k, v_gap = ||V* - V^k||_inf, obj_gap = sum_s rho0(s) (V* - V^k)(s), w2_max/w2_mean over
    states (nan when skipped), kl_max = max_s KL(pi_k || pi*), mass_error of the step into k.
    """
    opt = mdp.optimum()
    rows, values = [], []
    w, info, converged = w0, {"mass_error": 0.0}, False
    t0 = time.time()
    for k in range(max_iter + 1):
        V = mdp.evaluate(w).V
        values.append(V)
        w2 = dg.w2_policies(mdp.grid, w, opt.w) if (k % w2_every == 0 or converged) else None
        rows.append(
            {
                "k": k,
                "v_gap": float(np.max(np.abs(opt.V - V))),
                "obj_gap": float(mdp.rho0 @ (opt.V - V)),
                "w2_max": float(np.max(w2)) if w2 is not None else math.nan,
                "w2_mean": float(np.mean(w2)) if w2 is not None else math.nan,
                "kl_max": float(np.max(dg.kl(w, opt.w))),
                "mass_error": float(info.get("mass_error", 0.0)),
            }
        )
        if converged or k == max_iter:
            break
        w_new, info = update(w, k)
        converged = tol > 0 and float(np.max(np.sum(np.abs(w_new - w), axis=1))) < tol
        w = w_new
        if label and time.time() - t0 > 10:
            log(f"  [{label}] k={k + 1} v_gap={rows[-1]['v_gap']:.3e}")
            t0 = time.time()
    return Run(rows, np.array(values), w, converged)


def write_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    """Write dict rows (union of keys, in first-seen order)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        wr.writerows(rows)


def _prepare(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return out


def truncation_mass(mdp: GridMDP) -> float:
    """Mass of pi* outside the truncated grid (unbounded setting), max over states: Q* is
    evaluated analytically on a grid twice as wide with the same spacing."""
    if mdp.grid.bounded:
        return 0.0
    g = mdp.grid
    wide = Grid(g.dim, 2 * g.half_width, 2 * g.n, False)
    a = np.broadcast_to(wide.nodes, (mdp.n_states,) + wide.nodes.shape)
    logp = mdp.q_at(mdp.optimum().V, a) / mdp.tau
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    outside = np.any(np.abs(wide.nodes) > g.half_width, axis=1)
    return float(np.max(p[:, outside].sum(axis=1) / p.sum(axis=1)))


# --------------------------------------------------------------------------------------------
# presets


def presets_table(eta: float = 0.1) -> list[dict[str, object]]:
    """One row per preset: settings, assumption checklist and computed theory constants."""
    rows = []
    for name, p in PRESETS.items():
        c = p.config
        mdp = GridMDP(make_problem(name))
        opt = mdp.optimum()
        alpha = dg.lsi_constant(mdp, opt.Q)
        rows.append(
            {
                "preset": name,
                "summary": p.summary,
                "S": c.n_states,
                "d": c.dim,
                "actions": f"box [-{c.half_width:g},{c.half_width:g}]^{c.dim}"
                if c.bounded
                else f"R^{c.dim} (grid [-{c.half_width:g},{c.half_width:g}]^{c.dim})",
                "grid": f"{c.n_grid}^{c.dim}",
                "gamma": c.gamma,
                "tau": c.tau,
                "beta": c.beta,
                "transitions": c.transition,
                **{k: ("yes" if v else "NO") for k, v in p.assumptions.items()},
                "lsi_alpha": alpha,
                f"predicted_factor(eta={eta:g})": dg.predicted_factor(alpha, c.tau, c.gamma, eta),
                "lip_grad_q*": dg.lipschitz_grad_q(mdp, opt.V),
                "truncation_mass": truncation_mass(mdp),
                "note": p.note,
            }
        )
    return rows


@dataclass(frozen=True)
class PresetsConfig:
    """List the presets with their assumption checklist and theory constants."""

    out: Path | None = None
    """Optional folder for presets.csv."""
    eta: float = 0.1
    """Step size used for the predicted contraction factor."""


def presets(cfg: PresetsConfig) -> list[dict[str, object]]:
    rows = presets_table(cfg.eta)
    for r in rows:
        log(f"{r['preset']:8s} {r['summary']}")
        for k, v in r.items():
            if k not in ("preset", "summary"):
                log(f"    {k}: {v:.4g}" if isinstance(v, float) else f"    {k}: {v}")
    if cfg.out is not None:
        write_csv(_prepare(cfg.out) / "presets.csv", rows)
    return rows


# --------------------------------------------------------------------------------------------
# (i) linear convergence


@dataclass(frozen=True)
class LinearConfig:
    """(i) Linear convergence of exact WPG, with fitted and predicted rates per preset."""

    out: Path
    """Output folder."""
    presets: tuple[str, ...] = ("gauss1d", "bumps1d", "box1d", "bumps2d", "box2d")
    """Presets to run."""
    eta: float = 0.1
    """Step size."""
    max_iter: int = 1500
    """Iteration cap in 1-D (each run stops earlier once ||w_{k+1} - w_k||_1 < tol)."""
    max_iter_2d: int = 200
    """Iteration cap in 2-D (each step costs far more there)."""
    tol: float = 1e-12
    """Convergence tolerance on the iterates."""
    w2_every_2d: int = 20
    """W2 (an exact OT solve per state) is computed every this many iterations in 2-D."""


def linear(cfg: LinearConfig) -> list[dict[str, object]]:
    out = _prepare(cfg.out)
    summary, traces = [], {}
    for name in cfg.presets:
        mdp = GridMDP(make_problem(name))
        two_d = mdp.grid.dim == 2
        log(f"(i) {name}: eta={cfg.eta}")
        r = run(
            mdp,
            make_update(mdp, "wpg", cfg.eta),
            mdp.initial_policy(),
            cfg.max_iter_2d if two_d else cfg.max_iter,
            tol=cfg.tol,
            w2_every=cfg.w2_every_2d if two_d else 1,
            label=name,
        )
        summary.append(_rate_summary(name, mdp, r, cfg.eta))
        log("    " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary[-1].items()))
        self_gap = r.self_gap()
        traces[name] = (r.column("k"), r.column("v_gap"), self_gap)
        write_csv(out / f"trace_{name}.csv", [dict(row, v_gap_self=g) for row, g in zip(r.rows, self_gap)])
    write_csv(out / "summary.csv", summary)
    plot_curves(
        out / "linear.png",
        {n: (k, g) for n, (k, g, _) in traces.items()},
        {n: (k, g) for n, (k, _, g) in traces.items()},
        xlabel="iteration k",
        titles=("||V* - V^k||_inf", "||V^k - V^inf_eta||_inf (own fixed point)"),
    )
    return summary


def _rate_summary(name: str, mdp: GridMDP, r: Run, eta: float) -> dict[str, object]:
    gap, self_gap = r.column("v_gap"), r.self_gap()
    floor = float(gap[-1])
    # The last iterate stands in for the fixed point; it is off by about 100 x its last step.
    lo = max(1e-10, 1e2 * float(np.max(np.abs(r.values[-1] - r.values[-2]))))
    rho_self, k0, k1 = dg.fit_rate(self_gap, lo, 0.3 * self_gap[0])
    rho_tail, _, _ = dg.fit_rate(self_gap, lo, 1e3 * lo)
    rho_star, _, _ = dg.fit_rate(gap, 10 * floor, 0.3 * gap[0])
    c = mdp.problem.config
    alpha = dg.lsi_constant(mdp, mdp.optimum().Q)
    w2 = r.column("w2_max")
    return {
        "preset": name,
        "eta": eta,
        "n_grid": c.n_grid,
        "iterations": len(gap) - 1,
        "converged": r.converged,
        "rate_self": rho_self,
        "fit_window": f"{k0}-{k1}",
        "rate_tail": rho_tail,
        "rate_to_star": rho_star,
        "rate_per_time": -math.log(rho_self) / eta if rho_self > 0 else math.nan,
        "predicted_factor": dg.predicted_factor(alpha, c.tau, c.gamma, eta),
        "lsi_alpha": alpha,
        "floor_v_gap": floor,
        "floor_w2_max": float(w2[~np.isnan(w2)][-1]),
        "floor_kl_max": float(r.column("kl_max")[-1]),
        "max_mass_error": float(np.max(r.column("mass_error"))),
    }


# --------------------------------------------------------------------------------------------
# (ii) bias floor against eta


@dataclass(frozen=True)
class EtaFloorConfig:
    """(ii) The fixed point's bias against eta, on two grids, with the fitted log-log slopes."""

    out: Path
    """Output folder."""
    preset: str = "gauss1d"
    """Preset."""
    etas: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
    """Step sizes (at least a decade)."""
    grids: tuple[int, ...] = (321, 641)
    """Grid sizes n; the floors must agree across them for the eta-bias to be real."""
    tol: float = 1e-12
    """Convergence tolerance on the iterates."""
    max_iter: int = 20000
    """Iteration cap per run."""


def fixed_point(mdp: GridMDP, update: Update, tol: float, max_iter: int, label: str) -> Run:
    """Run to the scheme's fixed point (keeps only the end of the trajectory cheap: W2 at the end)."""
    return run(mdp, update, mdp.initial_policy(), max_iter, tol=tol, w2_every=10**9, label=label)


def eta_floor(cfg: EtaFloorConfig) -> list[dict[str, object]]:
    out = _prepare(cfg.out)
    rows = []
    for n in cfg.grids:
        mdp = GridMDP(make_problem(cfg.preset, n_grid=n))
        opt = mdp.optimum()
        for eta in cfg.etas:
            r = fixed_point(mdp, make_update(mdp, "wpg", eta), cfg.tol, cfg.max_iter, f"n={n} eta={eta}")
            rows.append(
                {
                    "preset": cfg.preset,
                    "n_grid": n,
                    "eta": eta,
                    "iterations": len(r.rows) - 1,
                    "converged": r.converged,
                    "floor_v_gap": r.rows[-1]["v_gap"],
                    "floor_w2_max": float(np.max(dg.w2_policies(mdp.grid, r.w, opt.w))),
                    "floor_kl_max": r.rows[-1]["kl_max"],
                }
            )
            log(
                f"(ii) n={n} eta={eta}: iters={rows[-1]['iterations']} v_gap={rows[-1]['floor_v_gap']:.3e} "
                f"w2={rows[-1]['floor_w2_max']:.3e}"
            )
    fits = _loglog_fits(rows, "eta", ("floor_v_gap", "floor_w2_max", "floor_kl_max"))
    write_csv(out / "floors.csv", rows)
    write_csv(out / "fits.csv", fits)
    plot_loglog(
        out / "eta_floor.png",
        rows,
        "eta",
        ("floor_v_gap", "floor_w2_max"),
        fits,
        reference_slope=1.0,
        title=f"{cfg.preset}: fixed-point bias against eta",
    )
    return fits


def _loglog_fits(
    rows: list[dict[str, object]], x: str, ys: Sequence[str], group: str = "n_grid"
) -> list[dict[str, object]]:
    """Slope per (group, quantity) of y against x in log-log."""
    fits = []
    for n in dict.fromkeys(r[group] for r in rows):
        sub = [r for r in rows if r[group] == n]
        xs = np.array([r[x] for r in sub], dtype=float)
        for y in ys:
            ys_ = np.array([r[y] for r in sub], dtype=float)
            ok = ys_ > 0
            slope, pref = dg.fit_loglog(xs[ok], ys_[ok])
            fits.append({group: n, "quantity": y, "slope": slope, "prefactor": pref})
            log(f"    fit {group}={n} {y}: slope={slope:.3f} prefactor={pref:.3g}")
    return fits


# --------------------------------------------------------------------------------------------
# (iii) error floor against eps


@dataclass(frozen=True)
class EpsFloorConfig:
    """(iii) The error floor of inexact-Q WPG (and of SPI for comparison) against eps."""

    out: Path
    """Output folder."""
    preset: str = "gauss1d"
    """Preset."""
    eta: float = 0.1
    """WPG step size."""
    epss: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    """Error sizes (sup-norm of the perturbation of Q)."""
    random_iters: int = 600
    """Iterations for the 'random' error mode (no fixed point; the floor is the mean of the
    second half of the run)."""
    tol: float = 1e-12
    """Convergence tolerance for the 'fixed' mode."""
    max_iter: int = 5000
    """Iteration cap per run."""


def eps_floor(cfg: EpsFloorConfig) -> list[dict[str, object]]:
    out = _prepare(cfg.out)
    mdp = GridMDP(make_problem(cfg.preset))
    opt = mdp.optimum()
    rows = []
    for method in ("wpg", "spi"):
        # Reference: the same method's eps = 0 fixed point (pi* itself for SPI), so that the
        # eta-bias of WPG is not counted as an eps-effect.
        ref = fixed_point(mdp, make_update(mdp, method, cfg.eta), cfg.tol, cfg.max_iter, f"{method} eps=0")
        for eps in cfg.epss:
            for mode in ("fixed", "random"):
                upd = make_update(mdp, method, cfg.eta, QError(eps=eps, mode=mode))
                if mode == "fixed":
                    r = fixed_point(mdp, upd, cfg.tol, cfg.max_iter, f"{method} eps={eps}")
                    tail = slice(len(r.rows) - 1, None)
                else:
                    r = run(mdp, upd, mdp.initial_policy(), cfg.random_iters, w2_every=10**9)
                    tail = slice(len(r.rows) // 2, None)
                rows.append(
                    {
                        "group": f"{method}/{mode}",
                        "method": method,
                        "mode": mode,
                        "eps": eps,
                        "v_gap": float(np.mean(r.column("v_gap")[tail])),
                        "v_vs_eps0": float(np.mean(np.max(np.abs(r.values[tail] - ref.values[-1]), axis=1))),
                        "w2_vs_eps0": float(np.max(dg.w2_policies(mdp.grid, r.w, ref.w))),
                        "w2_to_star": float(np.max(dg.w2_policies(mdp.grid, r.w, opt.w))),
                    }
                )
                log(
                    f"(iii) {method} {mode} eps={eps}: v_gap={rows[-1]['v_gap']:.3e} "
                    f"vs eps=0: {rows[-1]['v_vs_eps0']:.3e} w2 vs eps=0: {rows[-1]['w2_vs_eps0']:.3e}"
                )
    fits = _loglog_fits(rows, "eps", ("v_vs_eps0", "w2_vs_eps0"), group="group")
    write_csv(out / "floors.csv", rows)
    write_csv(out / "fits.csv", fits)
    plot_loglog(
        out / "eps_floor.png",
        rows,
        "eps",
        ("v_vs_eps0", "w2_vs_eps0"),
        fits,
        reference_slope=1.0,
        title=f"{cfg.preset}: error floor against eps (eta={cfg.eta:g}), vs the eps=0 fixed point",
        group="group",
    )
    return fits


# --------------------------------------------------------------------------------------------
# (iv) rate against tau


@dataclass(frozen=True)
class TauRateConfig:
    """(iv) The fitted contraction rate of WPG against tau, with paper 2's bound."""

    out: Path
    """Output folder."""
    presets: tuple[str, ...] = ("gauss1d", "bumps1d")
    """Presets."""
    taus: tuple[float, ...] = (0.15, 0.2, 0.3, 0.5, 0.8, 1.2)
    """Temperatures."""
    eta: float = 0.05
    """Step size."""
    n_grid: int = 801
    """Grid size (fine enough for the smallest tau)."""
    max_iter: int = 3000
    """Iteration cap per run."""
    tol: float = 1e-12
    """Convergence tolerance."""


def tau_rate(cfg: TauRateConfig) -> list[dict[str, object]]:
    out = _prepare(cfg.out)
    rows = []
    for name in cfg.presets:
        for tau in cfg.taus:
            mdp = GridMDP(make_problem(name, tau=tau, n_grid=cfg.n_grid))
            r = fixed_point(mdp, make_update(mdp, "wpg", cfg.eta), cfg.tol, cfg.max_iter, f"{name} tau={tau}")
            s = _rate_summary(name, mdp, r, cfg.eta)
            s["tau"] = tau
            s["predicted_rate_per_time"] = 0.5 * s["lsi_alpha"] * tau * (1 - mdp.gamma)
            rows.append(s)
            log(
                f"(iv) {name} tau={tau}: rate/time={s['rate_per_time']:.4g} "
                f"bound={s['predicted_rate_per_time']:.3g} alpha={s['lsi_alpha']:.3g}"
            )
    write_csv(out / "rates.csv", rows)
    plot_loglog(
        out / "tau_rate.png",
        [dict(r, n_grid=r["preset"]) for r in rows],
        "tau",
        ("rate_per_time", "predicted_rate_per_time"),
        None,
        title=f"WPG contraction rate per unit time (eta={cfg.eta:g})",
    )
    return rows


# --------------------------------------------------------------------------------------------
# (v) WPG against KL-geometry methods


@dataclass(frozen=True)
class CompareConfig:
    """(v) WPG (grid and particles) against soft policy iteration and policy mirror descent."""

    out: Path
    """Output folder."""
    presets: tuple[str, ...] = ("gauss1d", "bumps1d", "box1d", "jump1d", "cold1d")
    """Presets."""
    eta: float = 0.1
    """WPG step size."""
    pmd_etas: tuple[float, ...] = (1.0, 10.0)
    """Mirror-descent step sizes (KL geometry; not comparable one-to-one with the W2 eta)."""
    iters: int = 300
    """Iterations per method."""
    particles: ParticleConfig = field(default_factory=ParticleConfig)
    """Particle variant (run on the first preset only)."""


def compare(cfg: CompareConfig) -> list[dict[str, object]]:
    out = _prepare(cfg.out)
    summary, curves = [], {}
    for i, name in enumerate(cfg.presets):
        mdp = GridMDP(make_problem(name))
        methods: dict[str, Callable[[], Run]] = {
            f"WPG eta={cfg.eta:g}": lambda: run(mdp, make_update(mdp, "wpg", cfg.eta), mdp.initial_policy(), cfg.iters),
            "SPI": lambda: run(mdp, make_update(mdp, "spi", 0.0), mdp.initial_policy(), cfg.iters),
        }
        for e in cfg.pmd_etas:
            methods[f"PMD eta={e:g}"] = lambda e=e: run(
                mdp, make_update(mdp, "pmd", e), mdp.initial_policy(), cfg.iters
            )
        if i == 0 and mdp.grid.dim == 1:
            methods[f"WPG particles N={cfg.particles.n_particles}"] = lambda: run_particles(
                mdp, cfg.eta, cfg.iters, cfg.particles
            )
        panel = {}
        for label, fn in methods.items():
            log(f"(v) {name}: {label}")
            r = fn()
            panel[label] = (r.column("k"), r.column("v_gap"))
            write_csv(out / f"trace_{name}_{label.replace(' ', '_').replace('=', '')}.csv", r.rows)
            summary.append(
                {
                    "preset": name,
                    "method": label,
                    "final_v_gap": r.rows[-1]["v_gap"],
                    "final_w2_max": r.rows[-1]["w2_max"],
                    "iters_to_1e-3": _first_below(r.column("v_gap"), 1e-3),
                    "iters_to_1e-8": _first_below(r.column("v_gap"), 1e-8),
                }
            )
        curves[name] = panel
    write_csv(out / "summary.csv", summary)
    plot_curves(out / "compare.png", *curves.values(), xlabel="iteration k", titles=tuple(curves), shared_legend=True)
    return summary


def _first_below(x: np.ndarray, level: float) -> int:
    idx = np.nonzero(x < level)[0]
    return int(idx[0]) if len(idx) else -1


def run_particles(mdp: GridMDP, eta: float, iters: int, cfg: ParticleConfig) -> Run:
    """Particle WPG; diagnostics use the KDE of the particles (value gap, KL) and the particles
    themselves (W2); the row also carries the plug-in value gap the update sees."""
    rng = np.random.default_rng(cfg.seed)
    opt = mdp.optimum()
    x = initial_particles(mdp, cfg, rng)
    rows, values = [], []
    for k in range(iters + 1):
        w = kde_policy(mdp.grid, x, cfg.kde_bandwidth)
        V = mdp.evaluate(w).V
        values.append(V)
        w2 = dg.w2_particles(mdp.grid, x, opt.w)
        rows.append(
            {
                "k": k,
                "v_gap": float(np.max(np.abs(opt.V - V))),
                "obj_gap": float(mdp.rho0 @ (opt.V - V)),
                "w2_max": float(np.max(w2)),
                "w2_mean": float(np.mean(w2)),
                "kl_max": float(np.max(dg.kl(w, opt.w))),
                "mass_error": 0.0,
                "plugin_v_gap": float(np.max(np.abs(opt.V - plugin_values(mdp, x, cfg.sigma, rng)))),
            }
        )
        if k < iters:
            x = particle_step(mdp, x, eta, cfg, rng, k=k)
    return Run(rows, np.array(values), w, False)


# --------------------------------------------------------------------------------------------
# (vi) grid refinement


@dataclass(frozen=True)
class GridConfig:
    """(vi) Grid refinement: the optimum, the fitted rate and the eta-bias on finer grids."""

    out: Path
    """Output folder."""
    presets: tuple[str, ...] = ("gauss1d", "box1d", "bumps2d")
    """Presets."""
    grids_1d: tuple[int, ...] = (81, 161, 321, 641, 1281)
    """Grid sizes in 1-D."""
    grids_2d: tuple[int, ...] = (25, 37, 51)
    """Grid sizes per axis in 2-D."""
    eta: float = 0.1
    """Step size."""
    max_iter: int = 3000
    """Iteration cap in 1-D."""
    max_iter_2d: int = 150
    """Iteration cap in 2-D."""
    tol: float = 1e-12
    """Convergence tolerance."""


def grid_refinement(cfg: GridConfig) -> list[dict[str, object]]:
    out = _prepare(cfg.out)
    rows = []
    for name in cfg.presets:
        two_d = PRESETS[name].config.dim == 2
        for n in cfg.grids_2d if two_d else cfg.grids_1d:
            mdp = GridMDP(make_problem(name, n_grid=n))
            r = run(
                mdp,
                make_update(mdp, "wpg", cfg.eta),
                mdp.initial_policy(),
                cfg.max_iter_2d if two_d else cfg.max_iter,
                tol=cfg.tol,
                w2_every=10**9,
                label=f"{name} n={n}",
            )
            opt = mdp.optimum()
            s = _rate_summary(name, mdp, r, cfg.eta)
            s["floor_w2_max"] = float(np.max(dg.w2_policies(mdp.grid, r.w, opt.w)))
            s["h"] = mdp.grid.h
            s["v_star_mean"] = float(np.mean(opt.V))
            rows.append(s)
            log(
                f"(vi) {name} n={n}: V*={s['v_star_mean']:.8f} rate={s['rate_self']:.5f} "
                f"floor={s['floor_v_gap']:.4e} w2={s['floor_w2_max']:.4e}"
            )
    write_csv(out / "refinement.csv", rows)
    plot_loglog(
        out / "grid.png",
        [dict(r, n_grid=r["preset"]) for r in rows],
        "h",
        ("floor_v_gap", "floor_w2_max"),
        None,
        title=f"grid refinement at eta={cfg.eta:g}",
    )
    return rows
