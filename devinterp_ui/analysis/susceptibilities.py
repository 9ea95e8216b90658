"""Per-token susceptibilities of probe observables to weight restrictions (Baker et al. 2025, C.4).

For each weight restriction r (a separate run; "full" = unrestricted), sampling task s and probe
observable o, with pt(c, d) the mean loss_s over rows and positions at draw d of chain c in run r,
L0 the mean init_loss of the full run and phi = pt - L0:

    chi_r[b, t] = E[phi pt] - E[phi loss_o[., ., b, t]] - E[phi] (Lbar_s,full - E_full[loss_o[., ., b, t]])

expectations over chains and draws of run r (Lbar_s,full: mean loss_s over the full run).
Output layout as devinterp 2.x (SusceptibilitiesV2): `/susceptibilities` with `sus`
(sus_flat, wr) and flat coords `dataset_id`, `batch`, `target_position`; `/context` with
`input_ids` (ctx_flat); attr `dataset_id_to_name`. As in devinterp 2.0.1, `wr` lists the
restrictions only: the "full" run is the reference every column is measured against (its own
column, which devinterp leaves out, is an explicit option: `include_full=True`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from devinterp_ui.analysis.sample_tree import (
    observable_ids,
    require_arrays,
    root_dataset,
    to_observable_id,
)

__all__ = [
    "compute_susceptibilities",
    "restriction_store_path",
    "susceptibilities",
    "unflatten_susceptibilities",
]


def compute_susceptibilities(
    wr_map: dict[str, xr.DataTree | xr.Dataset],
    sampling_task: str,
    observable_names: list[str] | None = None,
    include_sampling_task: bool = False,
    include_full: bool = False,
) -> xr.DataTree:
    """Susceptibilities from one sample tree per weight restriction.

    Args:
        wr_map: {restriction name: sample tree}; must contain "full" (the unrestricted run).
            Every run must have evaluated the same observables on the same rows.
        sampling_task: name (or store id) of the observable holding the sampling task's loss.
        observable_names: probes to compute (names or ids); default every observable except
            the sampling task (and including it with `include_sampling_task=True`).
        include_sampling_task: see above.
        include_full: also give the "full" run's own column (first), which devinterp 2.0.1
            leaves out.

    Returns:
        DataTree with `/susceptibilities` (`sus` float64 (sus_flat, wr); coords `dataset_id`,
        `batch`, `target_position` (1-based) on sus_flat, `wr` = restriction names in wr_map
        order, without "full" unless include_full) and `/context` (`input_ids` (ctx_flat) with coords `dataset_id`, `batch`,
        `position`; `indices` (ctx_flat) with `dataset_id`, `batch` for non-token data); both
        nodes carry attr `dataset_id_to_name` (probe ids, sorted). Use
        `unflatten_susceptibilities` for a (restriction, observable, batch, position) view.

    Draws that are not finite in a run (unwritten rows of a stopped run) are left out of that
    run's expectations.

    Raises ValueError without a "full" run, without a restriction besides it (unless
    include_full) or without a probe observable, KeyError when the sampling task or a probe is
    not among the observables or a tree lacks arrays it needs.
    """
    if "full" not in wr_map:
        raise ValueError(
            f"wr_map needs a 'full' entry (the unrestricted run), got {list(wr_map)}; sample once "
            "with param_masks=None (or create_param_masks(model, 'full')) and add it as 'full'."
        )
    full = root_dataset(wr_map["full"])
    available = observable_ids(full)
    sampling_id = to_observable_id(sampling_task)
    if sampling_id not in available:
        raise KeyError(
            f"sampling_task {sampling_task!r} is not among the observables {available}; the "
            "sampling data must also be passed as an observable so that its per-draw loss is "
            "recorded."
        )
    probes = _probe_ids(available, sampling_id, observable_names, include_sampling_task)
    columns = [w for w in wr_map if include_full or w != "full"]
    if include_full:
        columns = ["full", *(w for w in columns if w != "full")]
    if not columns:
        raise ValueError(
            "wr_map holds only the 'full' run, so there is no restriction to give a column; add "
            "a restricted run, or pass include_full=True for the full run's own column."
        )

    require_arrays(full, ["init_loss"], "compute_susceptibilities (full run)")
    init_loss = full["init_loss"].values
    l0 = float(np.mean(init_loss[np.isfinite(init_loss)]))
    full_pt, full_probes = _run_losses(full, sampling_id, probes, "full")
    full_valid = _valid_draws(full_pt, full_probes)
    full_sampling_mean = float(full_pt[full_valid].mean())
    # Lbar_s,full - E_full[loss_o[b, t]], per probe: (batch, position)
    delta = {o: full_sampling_mean - full_probes[o][full_valid].mean(axis=0) for o in probes}

    sus: dict[str, dict[str, np.ndarray]] = {}
    for wr_name in columns:
        ds = root_dataset(wr_map[wr_name])
        pt, probe_losses = _run_losses(ds, sampling_id, probes, wr_name)
        valid = _valid_draws(pt, probe_losses)
        pt_v = pt[valid]  # (samples,)
        phi = pt_v - l0
        e_phi, e_phi_pt = phi.mean(), (phi * pt_v).mean()
        sus[wr_name] = {}
        for o in probes:
            e_phi_probe = np.tensordot(phi, probe_losses[o][valid], axes=(0, 0)) / phi.size
            sus[wr_name][o] = e_phi_pt - e_phi_probe - e_phi * delta[o]

    context = {o: _context_ids(wr_map, o) for o in probes}
    return _build_tree(sus, columns, sorted(probes), context)


def _probe_ids(
    available: list[str],
    sampling_id: str,
    observable_names: list[str] | None,
    include_sampling_task: bool,
) -> list[str]:
    if observable_names is None:
        probes = [o for o in available if include_sampling_task or o != sampling_id]
    else:
        probes = [to_observable_id(n) for n in observable_names]
        unknown = [n for n, o in zip(observable_names, probes, strict=True) if o not in available]
        if unknown:
            raise KeyError(f"unknown observable(s) {unknown}; the full run has {available}")
    if not probes:
        raise ValueError(
            f"no probe observable: the runs record {available} and sampling_task is "
            f"{sampling_id!r}. Add an observable besides the sampling task, or pass "
            "include_sampling_task=True."
        )
    return probes


def _run_losses(
    ds: xr.Dataset, sampling_id: str, probes: list[str], wr_name: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """pt (chain*draw,) and each probe's losses (chain*draw, batch, position) of one run."""
    names = [f"loss_{o}" for o in dict.fromkeys([sampling_id, *probes])]
    require_arrays(ds, names, f"compute_susceptibilities (run {wr_name!r})")

    def flat(o: str) -> np.ndarray:
        da = ds[f"loss_{o}"].transpose("chain", "draw", f"batch_{o}", "token_pos")
        values = da.values.astype(np.float64)
        return values.reshape(-1, *values.shape[2:])

    pt = flat(sampling_id).mean(axis=(1, 2))
    return pt, {o: flat(o) for o in probes}


def _valid_draws(pt: np.ndarray, probes: dict[str, np.ndarray]) -> np.ndarray:
    valid = np.isfinite(pt)
    for losses in probes.values():
        valid &= np.isfinite(losses).all(axis=(1, 2))
    if not valid.any():
        raise ValueError("a run has no complete draw (every draw has unwritten losses)")
    return valid


def _context_ids(wr_map: dict[str, Any], obs: str) -> np.ndarray:
    """The probe's rows (token ids or dataset indices); every run must have used the same rows."""
    ref = None
    for wr_name, tree in wr_map.items():
        ds = root_dataset(tree)
        name = f"input_ids_{obs}" if f"input_ids_{obs}" in ds.variables else f"indices_{obs}"
        require_arrays(ds, [name], f"compute_susceptibilities (run {wr_name!r})")
        ids = ds[name].values
        if ref is None:
            ref, ref_name = ids, wr_name
        elif not np.array_equal(ref, ids):
            raise ValueError(
                f"observable {obs!r} was evaluated on different rows in runs {ref_name!r} and "
                f"{wr_name!r}; sample every restriction with the same observables and obs_seed."
            )
    return ref


def _build_tree(
    sus: dict[str, dict[str, np.ndarray]],
    wr_order: list[str],
    obs_order: list[str],
    context: dict[str, np.ndarray],
) -> xr.DataTree:
    columns, ds_ids, batches, positions = [], [], [], []
    for i, o in enumerate(obs_order):
        n_batch, n_pos = sus[wr_order[0]][o].shape
        b, t = np.meshgrid(np.arange(n_batch), np.arange(1, n_pos + 1), indexing="ij")
        ds_ids.append(np.full(b.size, i))
        batches.append(b.ravel())
        positions.append(t.ravel())
        columns.append(np.stack([sus[w][o].ravel() for w in wr_order], axis=-1))
    sus_ds = xr.Dataset(
        {"sus": (("sus_flat", "wr"), np.concatenate(columns, axis=0))},
        coords={
            "dataset_id": ("sus_flat", np.concatenate(ds_ids)),
            "batch": ("sus_flat", np.concatenate(batches)),
            "target_position": ("sus_flat", np.concatenate(positions)),
            "wr": wr_order,
        },
        attrs={"dataset_id_to_name": obs_order},
    )

    token = all(context[o].ndim == 2 for o in obs_order)
    ids, c_ids, c_batch, c_pos = [], [], [], []
    for i, o in enumerate(obs_order):
        rows = context[o]
        ids.append(rows.ravel())
        c_ids.append(np.full(rows.size, i))
        if token:
            b, p = np.meshgrid(np.arange(rows.shape[0]), np.arange(rows.shape[1]), indexing="ij")
            c_batch.append(b.ravel())
            c_pos.append(p.ravel())
        else:
            c_batch.append(np.arange(rows.shape[0]))
    ctx_coords = {
        "dataset_id": ("ctx_flat", np.concatenate(c_ids)),
        "batch": ("ctx_flat", np.concatenate(c_batch)),
    }
    if token:
        ctx_coords["position"] = ("ctx_flat", np.concatenate(c_pos))
    ctx_ds = xr.Dataset(
        {("input_ids" if token else "indices"): ("ctx_flat", np.concatenate(ids))},
        coords=ctx_coords,
        attrs={"dataset_id_to_name": obs_order},
    )
    return xr.DataTree.from_dict({"/susceptibilities": sus_ds, "/context": ctx_ds})


def unflatten_susceptibilities(result: xr.DataTree) -> xr.DataArray:
    """`sus` as (restriction, observable, batch, position); NaN where an observable has fewer rows.

    `position` is the 1-based target position; `observable` holds the probe ids.
    """
    node = result["susceptibilities"].to_dataset()
    names = list(node.attrs["dataset_id_to_name"])
    ds_id = node["dataset_id"].values
    batch = node["batch"].values
    pos = node["target_position"].values
    n_batch, n_pos = int(batch.max()) + 1, int(pos.max())
    out = np.full((node.sizes["wr"], len(names), n_batch, n_pos), np.nan)
    out[:, ds_id, batch, pos - 1] = node["sus"].values.T
    return xr.DataArray(
        out,
        dims=("restriction", "observable", "batch", "position"),
        coords={
            "restriction": node["wr"].values,
            "observable": names,
            "batch": np.arange(n_batch),
            "position": np.arange(1, n_pos + 1),
        },
        name="susceptibility",
    )


def susceptibilities(
    model: Any,
    dataset: Any,
    observables: dict[str, Any],
    weight_restrictions: dict[str, Any] | list[str],
    *,
    sampling_task: str,
    lr: float,
    n_beta: float,
    include_sampling_task: bool = False,
    observable_names: list[str] | None = None,
    include_full: bool = False,
    **sample_kwargs: Any,
) -> xr.DataTree:
    """Run `sample()` once per weight restriction and return `compute_susceptibilities`.

    Args:
        weight_restrictions: {name: restriction} where a restriction is a `create_param_masks`
            spec ("l0h1", ["l0 attn", "embed"], a glob, ...), a ready param_masks dict, or None
            (whole model); or a list of specs, each named by itself. Must contain "full".
        sampling_task: the observable holding the sampling data (must be in `observables`).
        output_path (in sample_kwargs): named as devinterp 2.0.1 names it, restriction r is
            stored at `<parent>/<stem>_<r><suffix>` of output_path (e.g. "runs/s.zarr" ->
            "runs/s_full.zarr", "runs/s_l0h1.zarr"), so that either package finds the other's
            cached runs. A restriction name holding a path separator is refused.
        include_full: see `compute_susceptibilities`.
        Other keywords go to every `sample()` call unchanged.
    """
    from devinterp_ui.analysis.param_masks import create_param_masks
    from devinterp_ui.sample import sample  # deferred: the package root imports this module

    if isinstance(weight_restrictions, list):
        weight_restrictions = {str(r): r for r in weight_restrictions}
    if "full" not in weight_restrictions:
        raise ValueError(
            f"weight_restrictions needs a 'full' entry, got {list(weight_restrictions)}; add "
            "'full': None (the unrestricted run every susceptibility is measured against)."
        )
    if sampling_task not in observables:
        raise KeyError(
            f"sampling_task {sampling_task!r} is not among the observables {list(observables)}; "
            "add the sampling data as an observable too."
        )
    if not include_sampling_task and not [o for o in observables if o != sampling_task]:
        raise ValueError(
            f"no probe observable: observables has only the sampling task {sampling_task!r}; add "
            "an observable to measure, or pass include_sampling_task=True."
        )
    base = sample_kwargs.pop("output_path", None)
    if base is not None:
        bad = [n for n in weight_restrictions if _unsafe_name(str(n))]
        if bad:
            raise ValueError(
                f"restriction names {bad} cannot name a store (they hold a path separator or are "
                "empty); rename them, e.g. with '_' for '/'."
            )
    wr_map: dict[str, xr.DataTree] = {}
    for name, spec in weight_restrictions.items():
        if spec is None or isinstance(spec, (str, list)):
            masks = create_param_masks(model, "full" if spec is None else spec)
        else:
            masks = spec
        kwargs = dict(sample_kwargs)
        if base is not None:
            kwargs["output_path"] = restriction_store_path(base, name)
        wr_map[name] = sample(
            model, dataset, observables, lr=lr, n_beta=n_beta, param_masks=masks, **kwargs
        )
    return compute_susceptibilities(
        wr_map,
        sampling_task,
        observable_names=observable_names,
        include_sampling_task=include_sampling_task,
        include_full=include_full,
    )


def restriction_store_path(output_path: str | Path, restriction: str) -> Path:
    """Where the one-call `susceptibilities` stores restriction `restriction`, as devinterp 2.0.1:
    `<parent>/<stem>_<restriction><suffix>` of `output_path`."""
    base = Path(str(output_path))
    return base.parent / f"{base.stem}_{restriction}{base.suffix}"


def _unsafe_name(name: str) -> bool:
    return not name or "/" in name or "\\" in name or "\0" in name or name in (".", "..")
