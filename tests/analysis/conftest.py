"""Hand-built sample trees with the STORE.md layout, for exact checks of the estimators."""

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.store.schema import safe_name


def build_tree(
    *,
    num_chains=3,
    num_draws=20,
    num_burnin_steps=4,
    batch_sampling=4,
    n_positions=5,
    observables=(("a", 6), ("b", 4)),
    n_beta=7.5,
    seed=0,
    token_data=True,
    input_ids_seed=123,
):
    """A tree like sample() writes (num_steps_bw_draws = 1), filled with random float32 losses."""
    rng = np.random.default_rng(seed)
    total_steps = num_burnin_steps + num_draws
    data = {
        "init_loss": (("chain", "token_pos"), rng.uniform(1, 2, (num_chains, n_positions))),
        "sampling_loss_micro": (
            ("chain", "step", "batch_sampling", "token_pos"),
            rng.uniform(1, 3, (num_chains, total_steps, batch_sampling, n_positions)),
        ),
        "n_beta": ((), n_beta),
    }
    id_rng = np.random.default_rng(input_ids_seed)
    for raw_name, rows in observables:
        name = safe_name(raw_name)  # array names use the store's identifier-safe ids
        # A shared per-draw factor makes the rows correlated, like a posterior would.
        common = rng.normal(size=(num_chains, num_draws, 1, 1))
        noise = rng.normal(size=(num_chains, num_draws, rows, n_positions))
        data[f"loss_{name}"] = (
            ("chain", "draw", f"batch_{name}", "token_pos"),
            2 + 0.5 * common + 0.3 * noise,
        )
        if token_data:
            data[f"input_ids_{name}"] = (
                (f"batch_{name}", "token"),
                id_rng.integers(0, 50, (rows, n_positions + 1)),
            )
        else:
            data[f"indices_{name}"] = ((f"batch_{name}",), id_rng.permutation(100)[:rows])
    ds = xr.Dataset(data)
    for name in ds.data_vars:
        if ds[name].dtype == np.float64 and name != "n_beta":
            ds[name] = ds[name].astype(np.float32)
    ds.attrs["metadata"] = {
        "config": {
            "sampler": {
                "n_beta": n_beta,
                "num_burnin_steps": num_burnin_steps,
                "num_chains": num_chains,
                "num_draws": num_draws,
                "num_steps_bw_draws": 1,
            },
            "tokenizer_context_length": n_positions + 1,
        }
    }
    return xr.DataTree(ds)


@pytest.fixture
def make_tree():
    return build_tree
