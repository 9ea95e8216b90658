"""compute_susceptibilities against a direct numpy evaluation of the formula in SAMPLING.md."""

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.analysis import (
    compute_susceptibilities,
    susceptibilities,
    unflatten_susceptibilities,
)

OBS = (("pile", 4), ("probe_x", 3), ("probe-y", 2))


@pytest.fixture
def wr_map(make_tree):
    return {
        "full": make_tree(observables=OBS, seed=1),
        "l0h0": make_tree(observables=OBS, seed=2),
        "l1": make_tree(observables=OBS, seed=3),
    }


def _reference(wr_map, sampling, probe):
    """chi_r[b, t] by explicit loops over chains and draws."""
    full = wr_map["full"].to_dataset()
    l0 = full["init_loss"].values.astype(np.float64).mean()
    full_pt_mean = full[f"loss_{sampling}"].values.astype(np.float64).mean()
    full_probe = full[f"loss_{probe}"].values.astype(np.float64)
    out = {}
    for name, tree in wr_map.items():
        ds = tree.to_dataset()
        s = ds[f"loss_{sampling}"].values.astype(np.float64)
        o = ds[f"loss_{probe}"].values.astype(np.float64)
        c, d, b, t = o.shape
        chi = np.zeros((b, t))
        for bi in range(b):
            for ti in range(t):
                e_phi = e_phi_pt = e_phi_o = 0.0
                for ci in range(c):
                    for di in range(d):
                        pt = s[ci, di].mean()
                        phi = pt - l0
                        e_phi += phi
                        e_phi_pt += phi * pt
                        e_phi_o += phi * o[ci, di, bi, ti]
                n = c * d
                e_phi, e_phi_pt, e_phi_o = e_phi / n, e_phi_pt / n, e_phi_o / n
                delta = full_pt_mean - full_probe[:, :, bi, ti].mean()
                chi[bi, ti] = e_phi_pt - e_phi_o - e_phi * delta
        out[name] = chi
    return out


def test_susceptibilities_match_the_formula_evaluated_directly(wr_map):
    result = compute_susceptibilities(wr_map, "pile", include_full=True)
    view = unflatten_susceptibilities(result)
    for probe, rows in (("probe_x", 3), ("probe_y", 2)):
        expected = _reference(wr_map, "pile", probe)
        for name in wr_map:
            got = view.sel(restriction=name, observable=probe).values[:rows]
            np.testing.assert_allclose(got, expected[name], rtol=1e-6, atol=1e-9)


def test_output_layout_is_devinterp_susceptibilities_v2(wr_map):
    result = compute_susceptibilities(wr_map, "pile")
    sus = result["susceptibilities"]
    assert sus["sus"].dims == ("sus_flat", "wr")
    # As devinterp 2.0.1: the restrictions only, the full run is the reference.
    assert sus["wr"].values.tolist() == ["l0h0", "l1"]
    assert sus.attrs["dataset_id_to_name"] == ["probe_x", "probe_y"]
    assert sus["sus"].shape == (3 * 5 + 2 * 5, 2)
    for coord in ("dataset_id", "batch", "target_position"):
        assert sus[coord].dims == ("sus_flat",)
    assert sus["target_position"].values[:5].tolist() == [1, 2, 3, 4, 5]
    ctx = result["context"]
    assert ctx["input_ids"].dims == ("ctx_flat",)
    assert ctx["input_ids"].size == 3 * 6 + 2 * 6
    assert set(ctx.coords) >= {"dataset_id", "batch", "position"}


def test_the_full_runs_own_column_is_an_explicit_option(wr_map):
    with_full = compute_susceptibilities(wr_map, "pile", include_full=True)["susceptibilities"]
    without = compute_susceptibilities(wr_map, "pile")["susceptibilities"]
    assert with_full["wr"].values.tolist() == ["full", "l0h0", "l1"]
    np.testing.assert_array_equal(with_full["sus"].sel(wr="l1"), without["sus"].sel(wr="l1"))


def test_full_first_even_when_listed_later(wr_map):
    reordered = {"l1": wr_map["l1"], "full": wr_map["full"], "l0h0": wr_map["l0h0"]}
    sus = compute_susceptibilities(reordered, "pile", include_full=True)["susceptibilities"]
    assert sus["wr"].values.tolist() == ["full", "l1", "l0h0"]


def test_only_the_full_run_and_no_column_asked_for_is_refused(wr_map):
    with pytest.raises(ValueError, match="include_full=True"):
        compute_susceptibilities({"full": wr_map["full"]}, "pile")


def test_context_holds_each_probes_token_ids(wr_map):
    result = compute_susceptibilities(wr_map, "pile")
    ctx = result["context"].to_dataset()
    ids = ctx["input_ids"].values[ctx["dataset_id"].values == 1].reshape(2, 6)
    np.testing.assert_array_equal(ids, wr_map["full"].to_dataset()["input_ids_probe_y"].values)


def test_unflattened_view_has_restriction_observable_batch_position(wr_map):
    view = unflatten_susceptibilities(compute_susceptibilities(wr_map, "pile"))
    assert view.dims == ("restriction", "observable", "batch", "position")
    assert view.shape == (2, 2, 3, 5)
    assert np.isnan(view.sel(observable="probe_y").values[:, 2:]).all()  # only 2 rows


def test_two_identical_restrictions_have_equal_susceptibilities(make_tree):
    same = make_tree(observables=OBS, seed=5)
    result = compute_susceptibilities(
        {"full": make_tree(observables=OBS, seed=4), "a": same, "b": same}, "pile"
    )
    sus = result["susceptibilities"]["sus"]
    np.testing.assert_array_equal(sus.sel(wr="a").values, sus.sel(wr="b").values)


def test_include_sampling_task_adds_it_as_a_probe(wr_map):
    result = compute_susceptibilities(wr_map, "pile", include_sampling_task=True)
    assert result["susceptibilities"].attrs["dataset_id_to_name"] == ["pile", "probe_x", "probe_y"]


def test_observable_names_select_probes_by_user_facing_name(wr_map):
    result = compute_susceptibilities(wr_map, "pile", observable_names=["probe-y"])
    assert result["susceptibilities"].attrs["dataset_id_to_name"] == ["probe_y"]


def test_missing_full_restriction_raises(wr_map):
    wr_map.pop("full")
    with pytest.raises(ValueError, match="'full'"):
        compute_susceptibilities(wr_map, "pile")


def test_sampling_task_not_among_observables_raises_keyerror(wr_map):
    with pytest.raises(KeyError, match="sampling_task 'wiki'"):
        compute_susceptibilities(wr_map, "wiki")


def test_no_probe_observable_raises(make_tree):
    only_pile = {"full": make_tree(observables=(("pile", 4),))}
    with pytest.raises(ValueError, match="no probe observable"):
        compute_susceptibilities(only_pile, "pile")


def test_unknown_probe_name_raises_keyerror(wr_map):
    with pytest.raises(KeyError, match="unknown observable"):
        compute_susceptibilities(wr_map, "pile", observable_names=["nope"])


def test_tree_without_probe_losses_names_the_run_and_array(wr_map):
    ds = wr_map["l1"].to_dataset().drop_vars("loss_probe_x")
    wr_map["l1"] = xr.DataTree(ds)
    with pytest.raises(KeyError, match=r"run 'l1'.*loss_probe_x"):
        compute_susceptibilities(wr_map, "pile")


def test_runs_on_different_rows_are_refused(wr_map, make_tree):
    wr_map["l1"] = make_tree(observables=OBS, seed=3, input_ids_seed=999)
    with pytest.raises(ValueError, match="different rows"):
        compute_susceptibilities(wr_map, "pile")


def test_full_run_without_init_loss_raises_keyerror(wr_map):
    wr_map["full"] = xr.DataTree(wr_map["full"].to_dataset().drop_vars("init_loss"))
    with pytest.raises(KeyError, match="init_loss"):
        compute_susceptibilities(wr_map, "pile")


def test_susceptibilities_refuses_restrictions_without_full_before_sampling():
    with pytest.raises(ValueError, match="'full'"):
        susceptibilities(
            None, None, {"pile": 0, "p": 0}, {"l0": "l0"}, sampling_task="pile", lr=1e-3, n_beta=1.0
        )


def test_susceptibilities_refuses_a_sampling_task_that_is_not_an_observable():
    with pytest.raises(KeyError, match="sampling_task 'wiki'"):
        susceptibilities(
            None, None, {"pile": 0}, {"full": None}, sampling_task="wiki", lr=1e-3, n_beta=1.0
        )


def test_susceptibilities_refuses_observables_without_a_probe():
    with pytest.raises(ValueError, match="no probe observable"):
        susceptibilities(
            None, None, {"pile": 0}, {"full": None}, sampling_task="pile", lr=1e-3, n_beta=1.0
        )
