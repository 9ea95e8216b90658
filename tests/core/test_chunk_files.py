"""ChunkFiles writes the very bytes zarr writes, at the path zarr reads them from."""

import numpy as np
import pytest
import zarr
from zarr.codecs import BytesCodec, GzipCodec, ZstdCodec

from devinterp_ui.store.chunk_files import ChunkFiles


def make_array(root, dtype, shape, chunks, compressors=None):
    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    fill = np.nan if np.dtype(dtype).kind == "f" else 0
    return group.create_array(
        "a",
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=fill,
        serializer=BytesCodec(),
        compressors=compressors if compressors is not None else ZstdCodec(level=0),
    )


def chunk_files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "zarr.json" not in p.name
    }


@pytest.mark.parametrize(
    "dtype, shape, chunks",
    [
        ("float32", (3, 10), (1, 4)),  # (chain, step) metrics, edge chunk of 2 rows
        ("float32", (2, 5, 4, 7), (1, 5, 4, 7)),  # per-token losses
        ("int64", (2, 6, 3, 9), (1, 4, 3, 9)),  # token ids, edge chunk
    ],
)
def test_bytes_and_paths_match_zarr(tmp_path, dtype, shape, chunks):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        values = rng.standard_normal(shape).astype(dtype)
    else:
        values = rng.integers(0, 50_000, shape).astype(dtype)
    by_zarr = make_array(tmp_path / "zarr", dtype, shape, chunks)
    by_hand = make_array(tmp_path / "hand", dtype, shape, chunks)
    files = ChunkFiles.for_array(by_hand, tmp_path / "hand")
    assert files is not None

    rows = chunks[1]
    for chain in range(shape[0]):
        for k in range(-(-shape[1] // rows)):
            start, stop = k * rows, min((k + 1) * rows, shape[1])
            by_zarr[chain, start:stop] = values[chain, start:stop]
            # ChunkFiles takes the chunk's full shape: the edge chunk padded with fill value.
            block = np.full(chunks, by_zarr.fill_value, dtype=dtype)
            block[0, : stop - start] = values[chain, start:stop]
            files.write((chain, k, *[0] * (len(shape) - 2)), block)

    assert chunk_files(tmp_path / "hand") == chunk_files(tmp_path / "zarr")
    reread = zarr.open_array(str(tmp_path / "hand" / "a"), mode="r")
    np.testing.assert_array_equal(reread[...], values)


def test_other_codecs_are_left_to_zarr(tmp_path):
    gzip = make_array(tmp_path / "g", "float32", (2, 4), (1, 4), compressors=GzipCodec())
    assert ChunkFiles.for_array(gzip, tmp_path / "g") is None


def test_wrong_chunk_shape_is_refused(tmp_path):
    arr = make_array(tmp_path / "s", "float32", (2, 4), (1, 4))
    files = ChunkFiles.for_array(arr, tmp_path / "s")
    with pytest.raises(ValueError, match="chunk of shape"):
        files.write((0, 0), np.zeros((1, 3), dtype="float32"))


def test_no_partial_file_is_left(tmp_path):
    arr = make_array(tmp_path / "p", "float32", (1, 4), (1, 4))
    ChunkFiles.for_array(arr, tmp_path / "p").write((0, 0), np.ones((1, 4), dtype="float32"))
    assert not list((tmp_path / "p").rglob("*.partial"))
    np.testing.assert_array_equal(arr[...], np.ones((1, 4)))
