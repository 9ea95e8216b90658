"""compute_bif against direct numpy correlations on hand-built trees, plus its properties."""

import numpy as np
import pytest
import xarray as xr

from devinterp_ui.analysis import compute_bif


def _stacked_losses(tree, keys=("a", "b")):
    ds = tree.to_dataset()
    return np.concatenate([ds[f"loss_{k}"].values for k in keys], axis=2).astype(np.float64)


def _reference_token(losses, stat=np.corrcoef):
    """(chain, draw, row, pos) -> (row, row, pos, pos) by np.corrcoef / np.cov over samples."""
    c, d, n, p = losses.shape
    series = losses.reshape(c * d, n * p).T
    return stat(series).reshape(n, p, n, p).transpose(0, 2, 1, 3)


def test_token_bif_matches_numpy_corrcoef_over_stacked_chains_and_draws(make_tree):
    tree = make_tree()
    out = compute_bif(tree, batch_size=4)
    expected = _reference_token(_stacked_losses(tree))
    assert out["influences"].dims == ("batch_1", "batch_2", "target_position", "target_position_T")
    np.testing.assert_allclose(out["influences"].values, expected, atol=1e-6)


def test_sequence_bif_matches_numpy_corrcoef_of_position_means(make_tree):
    tree = make_tree()
    out = compute_bif(tree, correlation_method="sequence", batch_size=3)
    losses = _stacked_losses(tree).mean(axis=-1)
    c, d, n = losses.shape
    expected = np.corrcoef(losses.reshape(c * d, n).T)
    assert out["influences"].dims == ("batch_1", "batch_2")
    np.testing.assert_allclose(out["influences"].values, expected, atol=1e-6)


def test_chain_mean_reduction_correlates_chain_averaged_draws(make_tree):
    tree = make_tree()
    out = compute_bif(tree, correlation_method="sequence", reduce_chain_dimension_method="mean")
    losses = _stacked_losses(tree).mean(axis=(0, 3))  # (draw, row)
    np.testing.assert_allclose(out["influences"].values, np.corrcoef(losses.T), atol=1e-6)


def test_covariance_mode_matches_np_cov(make_tree):
    tree = make_tree()
    out = compute_bif(tree, compute_covariance=True, batch_size=5)
    expected = _reference_token(_stacked_losses(tree), stat=np.cov)
    np.testing.assert_allclose(out["influences"].values, expected, rtol=1e-5, atol=1e-7)


def test_a_rows_bif_with_itself_is_one(make_tree):
    out = compute_bif(make_tree(), correlation_method="sequence")
    np.testing.assert_allclose(np.diag(out["influences"].values), 1.0, atol=1e-6)


def test_token_bif_of_a_position_with_itself_is_one(make_tree):
    values = compute_bif(make_tree())["influences"].values
    n, _, p, _ = values.shape
    diag = values[np.arange(n), np.arange(n)][:, np.arange(p), np.arange(p)]
    np.testing.assert_allclose(diag, 1.0, atol=1e-6)


def test_bif_matrix_is_symmetric(make_tree):
    values = compute_bif(make_tree(), batch_size=4)["influences"].values
    np.testing.assert_allclose(values, values.transpose(1, 0, 3, 2), atol=1e-6)


def test_block_size_does_not_change_the_result(make_tree):
    tree = make_tree()
    one = compute_bif(tree, batch_size=1)["influences"].values
    big = compute_bif(tree, batch_size=100)["influences"].values
    np.testing.assert_allclose(one, big, atol=1e-6)


def test_average_tokenwise_bif_is_the_mean_over_position_pairs(make_tree):
    tree = make_tree()
    full = compute_bif(tree)["influences"].values
    averaged = compute_bif(tree, average_tokenwise_bif=True)["influences"]
    assert averaged.dims == ("batch_1", "batch_2")
    np.testing.assert_allclose(averaged.values, full.mean(axis=(2, 3)), atol=1e-6)


def test_batch_index_ranges_select_rows_of_the_concatenated_observables(make_tree):
    tree = make_tree()
    full = compute_bif(tree)["influences"]
    part = compute_bif(tree, batch_index_range_1=[0, 7], batch_index_range_2=range(2, 5))
    assert part["batch_1"].values.tolist() == [0, 7]
    assert part["batch_2"].values.tolist() == [2, 3, 4]
    np.testing.assert_allclose(part["influences"].values, full.values[[0, 7]][:, 2:5], atol=1e-6)
    assert part["observable_1"].values.tolist() == ["a", "b"]


def test_loss_keys_choose_observables_and_their_order(make_tree):
    tree = make_tree()
    out = compute_bif(tree, correlation_method="sequence", loss_keys=["b"])
    losses = _stacked_losses(tree, keys=("b",)).mean(axis=-1)
    c, d, n = losses.shape
    np.testing.assert_allclose(
        out["influences"].values, np.corrcoef(losses.reshape(c * d, n).T), atol=1e-6
    )
    assert out["input_ids"].sizes["batch"] == 4


def test_input_ids_are_the_rows_concatenated_in_key_order(make_tree):
    tree = make_tree()
    ds = tree.to_dataset()
    out = compute_bif(tree, loss_keys=["b", "a"])
    assert out["input_ids"].dims == ("batch", "position")
    expected = np.concatenate([ds["input_ids_b"].values, ds["input_ids_a"].values])
    np.testing.assert_array_equal(out["input_ids"].values, expected)
    assert out["observable"].values.tolist() == ["b"] * 4 + ["a"] * 6


def test_target_positions_are_one_based(make_tree):
    out = compute_bif(make_tree(n_positions=5))
    assert out["target_position"].values.tolist() == [1, 2, 3, 4, 5]


def test_non_token_trees_return_row_indices(make_tree):
    tree = make_tree(token_data=False)
    out = compute_bif(tree, correlation_method="sequence")
    assert out["indices"].dims == ("batch",)


def test_unwritten_draws_are_dropped(make_tree):
    tree = make_tree(num_chains=2, num_draws=10)
    ds = tree.to_dataset()
    ds["loss_a"][1, 6:] = np.nan
    ds["loss_b"][1, 6:] = np.nan
    out = compute_bif(xr.DataTree(ds), correlation_method="sequence")
    losses = np.concatenate([ds["loss_a"].values, ds["loss_b"].values], axis=2).mean(axis=-1)
    samples = np.concatenate([losses[0], losses[1, :6]])
    np.testing.assert_allclose(out["influences"].values, np.corrcoef(samples.T), atol=1e-6)


def test_unknown_loss_key_raises_keyerror_listing_available(make_tree):
    with pytest.raises(KeyError, match=r"unknown loss key.*\['a', 'b'\]"):
        compute_bif(make_tree(), loss_keys=["nope"])


def test_tree_without_observables_raises_keyerror(make_tree):
    with pytest.raises(KeyError, match="no observable"):
        compute_bif(make_tree(observables=()))


def test_unknown_correlation_method_raises(make_tree):
    with pytest.raises(ValueError, match="correlation_method"):
        compute_bif(make_tree(), correlation_method="pairs")


def test_out_of_range_batch_index_raises(make_tree):
    with pytest.raises(ValueError, match="batch_index_range_2"):
        compute_bif(make_tree(), batch_index_range_2=[10])


def test_tree_without_row_ids_names_the_missing_arrays(make_tree):
    ds = make_tree().to_dataset().drop_vars(["input_ids_a", "input_ids_b"])
    with pytest.raises(KeyError, match="indices_a"):
        compute_bif(xr.DataTree(ds))


def test_something_other_than_a_tree_raises_typeerror():
    with pytest.raises(TypeError, match="DataTree"):
        compute_bif({"loss_a": 1})
