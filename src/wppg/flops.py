"""A FLOP model of one gradient step of each off-policy algorithm, and the matrix products that
make it, read back from the compiled program to check the model.

Only matrix products are counted (2 m n k per product): at the paper's sizes they are over 95% of
the arithmetic, and they are what a roofline is measured on. Notation: B batch, D obs_dim, d
act_dim, hidden widths h_1..h_L, K action samples, M / L entropy centres / baselines, m latent_dim.

Network passes, for a layer with R rows, fan-in I and fan-out O (2 R I O each):
- forward: every layer;
- backward to the parameters: dW of every layer, dX of every layer but the first (inputs are data);
- backward to the action input: dX of every layer down to the action block, no dW.
The critics and the implicit policy split their first layer into a state block (B rows) and a
sample block (B K rows), see `wppg.networks.StateSampleMLP`; the twin critics count twice. An
implicit policy with latent_input='last' runs all its layers but the sample block of the last hidden
layer and the output layer on B rows (`wppg.networks.LateSampleMLP`).
Passes over K samples per state run in chunks of about `CHUNK_ROWS` rows
(`wppg.algorithms.base.sample_chunks`), each chunk recomputing the small state block.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import jax


@dataclass(frozen=True)
class Layer:
    rows: int
    fan_in: int
    fan_out: int
    first: bool = False  # its input is data (no dX needed to reach the parameters)
    state_block: bool = False  # the state block of a split first layer (never on the path to the action)

    @property
    def flops(self) -> int:
        return 2 * self.rows * self.fan_in * self.fan_out


def mlp_layers(rows: int, in_dim: int, hidden: Sequence[int], out_dim: int) -> list[Layer]:
    """Layers of an MLP over `rows` inputs of width `in_dim`."""
    widths = [in_dim, *hidden, out_dim]
    return [Layer(rows, widths[i], widths[i + 1], first=i == 0) for i in range(len(widths) - 1)]


def state_sample_layers(
    states: int, samples: int, state_dim: int, sample_dim: int, hidden: Sequence[int], out_dim: int
) -> list[Layer]:
    """Layers of a `StateSampleMLP`: the state block on `states` rows, the rest on `samples` rows."""
    layers = [
        Layer(states, state_dim, hidden[0], first=True, state_block=True),
        Layer(samples, sample_dim, hidden[0], first=True),
    ]
    widths = [*hidden, out_dim]
    layers += [Layer(samples, widths[i], widths[i + 1]) for i in range(len(widths) - 1)]
    return layers


def late_sample_layers(
    states: int, samples: int, state_dim: int, sample_dim: int, hidden: Sequence[int], out_dim: int
) -> list[Layer]:
    """Layers of a `LateSampleMLP`: all hidden layers but the last, and the last one's state block,
    on `states` rows; the last one's sample block and the output layer on `samples` rows."""
    widths = [state_dim, *hidden[:-1]]
    layers = [Layer(states, widths[i], widths[i + 1], first=i == 0, state_block=True) for i in range(len(widths) - 1)]
    layers.append(Layer(states, widths[-1], hidden[-1], first=len(widths) == 1, state_block=True))
    layers += [Layer(samples, sample_dim, hidden[-1], first=True), Layer(samples, hidden[-1], out_dim)]
    return layers


Product = tuple[int, int, int]  # (m, k, n): an [m, k] @ [k, n] matrix product, 2 m k n FLOPs


def forward(layers: list[Layer]) -> list[Product]:
    return [(x.rows, x.fan_in, x.fan_out) for x in layers]


def backward_to_params(layers: list[Layer]) -> list[Product]:
    """dW = X^T dY ([I, R] @ [R, O]) for every layer; dX = dY W^T ([R, O] @ [O, I]) but for data inputs."""
    return [(x.fan_in, x.rows, x.fan_out) for x in layers] + [
        (x.rows, x.fan_out, x.fan_in) for x in layers if not x.first
    ]


def backward_to_action(layers: list[Layer]) -> list[Product]:
    """dX of every layer on the path from the output down to the sample (action) block."""
    return [(x.rows, x.fan_out, x.fan_in) for x in layers if not x.state_block]


def gradient_step_products(
    algo: str,
    obs_dim: int,
    act_dim: int,
    hidden: Sequence[int],
    batch: int,
    K: int = 1,
    entropy_M: int = 0,
    entropy_L: int = 0,
    latent_dim: int | None = None,
    target_samples: int | None = None,
    latent_input: str = "first",
) -> dict[str, list[Product]]:
    """The matrix products of one gradient step, by part. algo: 'sac', 'wppg' (Gaussian) or 'wppg-i'.

    Parts: the soft target (policy samples, target critics), the critic regression (forward and
    backward of the online twins on the batch), the actor step. Twin-critic products appear twice.
    `target_samples` (None: K) and `latent_input` as in `WPPGConfig`; an actor step every d-th
    gradient step (`policy_delay`) is `mean_step_flops`'s, not part of one step's products.
    """
    from wppg.algorithms.base import sample_chunks

    B, D, d, h = batch, obs_dim, act_dim, tuple(hidden)

    def per_chunk(samples: int, make, passes) -> list[Product]:
        """Products of `passes` over `samples` per state, run in `sample_chunks` chunks as the
        algorithms do (each chunk recomputes the state block of the first layer)."""
        chunks = sample_chunks(B, samples)
        return [p for _ in range(chunks) for f in passes for p in f(make(B * samples // chunks))]

    def critic(rows: int) -> list[Layer]:
        return state_sample_layers(B, rows, D, d, h, 1)

    def policy(rows: int) -> list[Layer]:
        if algo == "wppg-i" and latent_input == "last":
            return late_sample_layers(B, rows, D, latent_dim, h, d)
        if algo == "wppg-i":
            return state_sample_layers(B, rows, D, latent_dim, h, d)
        return mlp_layers(B, D, h, 2 * d)  # the Gaussian's network runs once per state

    def twin(products: list[Product]) -> list[Product]:
        return products * 2

    if algo == "sac":
        K = 1
    T = K if target_samples is None or algo == "sac" else target_samples
    n_soft = T + (entropy_M + max(0, entropy_L - T) if algo != "sac" else 0)
    if algo == "wppg-i" and latent_input == "last":  # one pass over all samples: no chunks
        actor = (
            forward(policy(B * K))
            + backward_to_params(policy(B * K))
            + twin(per_chunk(K, critic, [forward, backward_to_action]))
        )
        soft_policy = forward(policy(B * n_soft))
    elif algo == "wppg-i":  # the whole actor step runs chunk by chunk
        actor = per_chunk(K, lambda r: policy(r), [forward, backward_to_params]) + twin(
            per_chunk(K, critic, [forward, backward_to_action]))  # fmt: skip
        soft_policy = per_chunk(n_soft, policy, [forward])
    else:
        actor = (
            forward(policy(B * K))
            + backward_to_params(policy(B * K))
            + twin(per_chunk(K, critic, [forward, backward_to_action]))
        )
        soft_policy = forward(policy(B * n_soft))
    return {
        "soft_target": soft_policy + twin(per_chunk(T, critic, [forward])),
        "critic_regression": twin(forward(critic(B)) + backward_to_params(critic(B))),
        "actor": actor,
    }


def mean_step_flops(*args, policy_delay: int = 1, **kwargs) -> dict[str, float]:
    """Matmul FLOPs per gradient step averaged over `policy_delay` steps, one of which has an actor
    step (`WPPGConfig.policy_delay`); other arguments as `gradient_step_products`."""
    parts: dict[str, float] = dict(gradient_step_flops(*args, **kwargs))
    parts["actor"] /= policy_delay
    parts["total"] = parts["soft_target"] + parts["critic_regression"] + parts["actor"]
    return parts


def product_flops(products: list[Product]) -> int:
    return sum(2 * m * k * n for m, k, n in products)


def gradient_step_flops(*args, **kwargs) -> dict[str, int]:
    """Matmul FLOPs of one gradient step by part and in total (arguments of `gradient_step_products`)."""
    parts = {name: product_flops(p) for name, p in gradient_step_products(*args, **kwargs).items()}
    parts["total"] = sum(parts.values())
    return parts


_DOT = re.compile(
    r"stablehlo\.dot_general[^\n]*?contracting_dims = \[([\d, ]*)\] x \[[\d, ]*\][^\n]*?: \(tensor<([\dx]+)xf32>, tensor<[\dx]+xf32>\) -> tensor<([\dx]*)x?f32>"
)


def matmuls_of(fn, *args) -> Counter:
    """The matrix products of `fn(*args)` as a Counter of (lhs shape, contracting dims, out shape)
    -> count, read from the lowered (pre-optimisation) program; their FLOPs are 2 prod(out)
    prod(contracted). A scan's body is listed once."""
    text = jax.jit(fn).lower(*args).as_text()
    found: Counter = Counter()
    for contracting, lhs, out in _DOT.findall(text):
        lhs_shape = tuple(int(x) for x in lhs.split("x"))
        dims = tuple(int(x) for x in contracting.replace(" ", "").split(",") if x)
        out_shape = tuple(int(x) for x in out.split("x") if x)
        found[(lhs_shape, dims, out_shape)] += 1
    return found


def matmul_flops(products: Counter) -> int:
    """Total FLOPs of a `matmuls_of` Counter."""
    total = 0
    for (lhs, dims, out), n in products.items():
        k = 1
        for i in dims:
            k *= lhs[i]
        size = 1
        for x in out:
            size *= x
        total += 2 * size * k * n
    return total
