"""Model files from strangers, and saves that cannot destroy.

Every file here is crafted by the test, element by element (MAT v5) or with
h5py (MAT v7.3): tiny files that declare huge arrays, cells and structs,
huge empty sparse matrices, values nested thousands deep, MATLAB function
handles.  Loading each must raise a clear ``ValueError`` naming the file and
the field, without crashing the interpreter and without allocating what the
file merely declares (``tracemalloc`` measures the peak).  Saving must never
destroy an existing model or leave a partial file behind.
"""

import os
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import scipy.io

from simplenn import vl_simplenn
from simplenn.io import load_net, save_net
from simplenn.matfile import MAX_DEPTH, read_mat, to_python, write_mat

# --------------------------------------------------------------------------
# MAT v5 elements, written by hand (MATLAB's "MAT-File Format", little-endian)

MI_INT8, MI_UINT8, MI_INT32, MI_UINT32, MI_DOUBLE, MI_MATRIX, MI_COMPRESSED = 1, 2, 5, 6, 9, 14, 15
CELL, STRUCT, CHAR, SPARSE, DOUBLE, SINGLE, FUNCTION = 1, 2, 4, 5, 6, 7, 16


def element(mtype, payload, declared=None):
    """A data element: 8-byte tag (``declared`` overrides the byte count),
    the payload, padding to 8 bytes."""
    nbytes = len(payload) if declared is None else declared
    return struct.pack("<II", mtype, nbytes) + payload + bytes(-len(payload) % 8)


def matrix(cls, dims, name, *parts, declared=None, flags=0):
    """An miMATRIX element: array flags, dimensions, name, then ``parts``."""
    body = (element(MI_UINT32, struct.pack("<II", cls | flags, 0))
            + element(MI_INT32, struct.pack(f"<{len(dims)}i", *dims))
            + element(MI_INT8, name.encode()) + b"".join(parts))
    return struct.pack("<II", MI_MATRIX, len(body) if declared is None else declared) + body


def double(name, values, dims=None):
    values = np.asarray(values, np.float64)
    dims = dims or [1, values.size]
    return matrix(DOUBLE, dims, name, element(MI_DOUBLE, values.tobytes()))


def char(name, text):
    return matrix(CHAR, [1, len(text)], name,
                  element(4, np.array([ord(c) for c in text], "<u2").tobytes()))


def cell(name, dims, *items):
    return matrix(CELL, dims, name, *items)


def mstruct(name, dims, fields, *values, length=32):
    names = b"".join(f.encode().ljust(length, b"\0") for f in fields)
    return matrix(STRUCT, dims, name, element(MI_INT32, struct.pack("<i", length)),
                  element(MI_INT8, names), *values)


def compressed(matrix_element):
    data = zlib.compress(matrix_element)
    return struct.pack("<II", MI_COMPRESSED, len(data)) + data   # not padded


HEADER = b"MATLAB 5.0 MAT-file, crafted by test_io_hardening".ljust(116) + bytes(8) \
    + b"\x00\x01IM"


def write(tmp_path, *variables, name="crafted.mat"):
    path = tmp_path / name
    path.write_bytes(HEADER + b"".join(variables))
    return str(path)


def relu_layers():
    """``layers = {struct('type', 'relu')}``."""
    return cell("layers", [1, 1], mstruct("", [1, 1], ["type"], char("", "relu")))


def load_within(path, budget=16 << 20, error=ValueError, match=None):
    """load_net(path) must raise ``error`` matching ``match`` (and naming the
    file) with a peak of traced allocations under ``budget`` bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match) as info:
            load_net(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert os.path.basename(path) in str(info.value)
    assert peak < budget, f"{peak} bytes allocated"
    return str(info.value)


# --------------------------------------------------------------------------
# the helpers write what scipy reads

def test_the_crafted_elements_are_matlab_files(tmp_path):
    path = write(tmp_path, relu_layers(),
                 compressed(mstruct("meta", [1, 1], ["classes", "sizes"],
                                    cell("", [1, 2], char("", "cat"), char("", "dog")),
                                    double("", [3, 4]))))
    net = load_net(path)
    assert [layer.type for layer in net.layers] == ["relu"]
    assert net.meta.classes == ["cat", "dog"]
    np.testing.assert_array_equal(net.meta.sizes, [[3.0, 4.0]])


# --------------------------------------------------------------------------
# sizes declared but not there

def test_an_element_declaring_4_gib_in_a_tiny_file(tmp_path):
    path = write(tmp_path, relu_layers(),
                 matrix(DOUBLE, [65536, 8192], "meta",
                        element(MI_DOUBLE, bytes(64), declared=2 ** 32 - 8),
                        declared=2 ** 32 - 8))
    assert os.path.getsize(path) < 512
    message = load_within(path, match=r"crafted\.mat: meta: declares 4294967288 bytes but only "
                                      r"\d+ remain in the file")
    assert "truncated or crafted" in message


def test_compressed_data_declaring_4_gib(tmp_path):
    # the declared element is inside a compressed stream: its absence shows
    # only once the stream is inflated, chunk by chunk
    inner = mstruct("meta", [1, 1], ["weights"],
                    matrix(SINGLE, [32768, 32768], "", element(7, bytes(64),
                                                               declared=2 ** 32 - 8)))
    path = write(tmp_path, relu_layers(), compressed(inner))
    message = load_within(path, match="crafted.mat: .*(data end before|declares)")
    assert "truncated or crafted" in message


def test_numeric_dimensions_that_do_not_match_the_data(tmp_path):
    path = write(tmp_path, relu_layers(),
                 mstruct("meta", [1, 1], ["mean"],
                         matrix(DOUBLE, [100000, 100000], "", element(MI_DOUBLE, bytes(8)))))
    load_within(path, match=r"crafted\.mat: meta\.mean: declares a 100000 x 100000 double "
                            r"array \(10000000000 elements\) but its real part holds 8 bytes")


@pytest.mark.parametrize("pack", [lambda m: m, compressed], ids=["plain", "compressed"])
def test_a_cell_array_of_40000_x_40000(tmp_path, pack):
    path = write(tmp_path, relu_layers(),
                 pack(mstruct("meta", [1, 1], ["classes"], cell("", [40000, 40000]))))
    load_within(path, match=r"crafted\.mat: meta\.classes: declares a 40000 x 40000 cell "
                            r"array \(1600000000 cells\) but holds only \d+ bytes")


@pytest.mark.parametrize("pack", [lambda m: m, compressed], ids=["plain", "compressed"])
def test_a_struct_array_of_40000_x_40000(tmp_path, pack):
    path = write(tmp_path, pack(mstruct("layers", [40000, 40000], ["type", "name"])))
    load_within(path, match=r"crafted\.mat: layers: declares a 40000 x 40000 struct array "
                            r"\(1600000000 elements with 2 fields\) but holds only")


def test_a_struct_array_without_fields(tmp_path):
    path = write(tmp_path, relu_layers(), mstruct("meta", [40000, 40000], []))
    load_within(path, match=r"meta: declares a 40000 x 40000 struct array without fields")


def test_a_char_array_without_its_text(tmp_path):
    path = write(tmp_path, relu_layers(),
                 matrix(CHAR, [40000, 40000], "meta", element(4, b"")))
    load_within(path, match=r"meta: declares a 40000 x 40000 char array but holds 0 bytes")


def test_negative_dimensions(tmp_path):
    path = write(tmp_path, relu_layers(), cell("meta", [-1, 3]))
    load_within(path, match=r"meta: negative dimensions \[-1, 3\]")


def test_cells_missing_from_a_compressed_stream(tmp_path):
    # the count fits the declared size, but the inflated data end after the
    # first cell
    body = cell("meta", [1, 3], char("", "a"))
    path = write(tmp_path, relu_layers(),
                 compressed(struct.pack("<II", MI_MATRIX, 4096) + body[8:]))
    load_within(path, match="crafted.mat: the data end before what an element declares")


# --------------------------------------------------------------------------
# sparse matrices stay sparse

def empty_sparse(name, m, n):
    return matrix(SPARSE, [m, n], name, element(MI_INT32, b""),
                  element(MI_INT32, bytes(4 * (n + 1))), element(MI_DOUBLE, b""))


def test_an_empty_100000_x_100000_sparse_matrix_stays_sparse(tmp_path):
    import scipy.sparse

    path = write(tmp_path, relu_layers(),
                 compressed(mstruct("meta", [1, 1], ["adjacency"],
                                    empty_sparse("", 100000, 100000))))
    assert os.path.getsize(path) < 2000
    tracemalloc.start()
    try:
        net = load_net(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    adjacency = net.meta.adjacency
    assert scipy.sparse.issparse(adjacency)
    assert adjacency.shape == (100000, 100000) and adjacency.nnz == 0
    assert peak < 16 << 20


def test_a_sparse_matrix_as_layer_weights_is_refused(tmp_path):
    layer = mstruct("", [1, 1], ["type", "weights"], char("", "conv"),
                    cell("", [1, 2], empty_sparse("", 100000, 100000), double("", [0.0])))
    path = write(tmp_path, compressed(cell("layers", [1, 1], layer)))
    load_within(path, match=r"crafted\.mat: layers\{1\}\.weights\{1\} is a 100000 x 100000 "
                            r"sparse matrix; layer weights must be full arrays")


def test_a_sparse_matrix_missing_its_column_starts(tmp_path):
    sparse = matrix(SPARSE, [100000, 100000], "meta", element(MI_INT32, b""),
                    element(MI_INT32, bytes(8)), element(MI_DOUBLE, b""))
    path = write(tmp_path, relu_layers(), sparse)
    load_within(path, match=r"meta: declares a 100000 x 100000 sparse matrix but holds 2 of "
                            r"its 100001 column starts")


def test_small_sparse_matrices_still_read():
    import scipy.sparse

    value = scipy.sparse.csc_matrix(np.array([[0.0, 2.0], [1.0, 0.0]]))
    assert scipy.sparse.issparse(to_python(value, "x"))


# --------------------------------------------------------------------------
# nesting

def _nested(depth, head_body):
    """A number nested ``depth`` deep in arrays whose body starts with
    ``head_body`` and ends with the inner value (built without copying the
    growing inner bytes at every level)."""
    inner = double("", [1.0])
    heads, length = [], len(inner)
    for _ in range(depth):
        heads.append(struct.pack("<II", MI_MATRIX, len(head_body) + length) + head_body)
        length += len(heads[-1])
    return b"".join(reversed(heads)) + inner


def nested_cells(depth):
    return _nested(depth, cell("", [1, 1])[8:])


def nested_structs(depth):
    return _nested(depth, mstruct("", [1, 1], ["inner"], length=8)[8:])


def _rename(variable, name):
    """The top-level miMATRIX ``variable`` (written with the name "") named
    ``name``."""
    tag, body = variable[:8], variable[8:]
    flags, dims = body[:16], body[16:16 + 8 + struct.unpack("<I", body[20:24])[0]]
    dims += bytes(-len(dims) % 8)
    rest = body[16 + len(dims) + 8:]
    named = flags + dims + element(MI_INT8, name.encode()) + rest
    return struct.pack("<II", MI_MATRIX, len(named)) + named


def test_deeply_nested_cells_do_not_crash(tmp_path):
    # about 33 KB: scipy's reader recurses in C over this file until the
    # interpreter dies (a segmentation fault, with scipy 1.17)
    path = write(tmp_path, relu_layers(), compressed(_rename(nested_cells(16000), "meta")))
    assert os.path.getsize(path) < 40000
    message = load_within(path, match=rf"crafted\.mat: meta(\{{1\}}){{{MAX_DEPTH}}}: values "
                                      rf"nested more than {MAX_DEPTH} deep")
    assert "no network is nested that deep" in message


def test_deeply_nested_structs_are_a_value_error(tmp_path):
    # compressed, so that a small file nests very deep
    path = write(tmp_path, relu_layers(), compressed(_rename(nested_structs(5000), "meta")))
    assert os.path.getsize(path) < 40000
    load_within(path, match=rf"meta(\.inner){{{MAX_DEPTH}}}: values nested more than "
                            rf"{MAX_DEPTH} deep")


def test_nesting_up_to_the_limit_reads(tmp_path):
    # meta (depth 1) -> its field (2) -> ... -> the number at depth MAX_DEPTH
    deepest = MAX_DEPTH - 2
    path = write(tmp_path, relu_layers(),
                 mstruct("meta", [1, 1], ["deep"], nested_cells(deepest)))
    value = load_net(path).meta.deep
    for _ in range(deepest - 1):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == [1]
    path = write(tmp_path, relu_layers(),
                 mstruct("meta", [1, 1], ["deep"], nested_cells(deepest + 1)))
    load_within(path, match=f"values nested more than {MAX_DEPTH} deep")


# --------------------------------------------------------------------------
# MATLAB function handles

def function_handle(name, function):
    """A MATLAB function handle as MATLAB saves it: a struct with the MATLAB
    install path first, then the function."""
    inner = mstruct("", [1, 1], ["function", "type", "file"],
                    char("", function), char("", "simple"), char("", ""))
    handle = mstruct("", [1, 1], ["matlabroot", "separator", "sentinel", "function_handle"],
                     char("", "/usr/local/MATLAB/R2017a"), char("", "/"), char("", "@"), inner)
    return matrix(FUNCTION, [1, 1], name, handle)


def test_a_function_handle_is_named_by_its_function(tmp_path):
    layer = mstruct("", [1, 1], ["type", "forward"], char("", "custom"),
                    function_handle("", "myForward"))
    path = write(tmp_path, cell("layers", [1, 1], layer))
    net = load_net(path)
    with pytest.raises(TypeError) as info:
        net.layers[0].forward(None, None, None)
    assert "'myForward'" in str(info.value) and "MATLAB" in str(info.value)
    assert "/usr/local" not in str(info.value) and "R2017a" not in repr(net.layers[0].forward)


# --------------------------------------------------------------------------
# MAT v7.3 (HDF5)

def v73(tmp_path, build, name="crafted73.mat"):
    h5py = pytest.importorskip("h5py")
    path = str(tmp_path / name)
    with h5py.File(path, "w") as f:
        f.create_group("#refs#")
        relu = f["#refs#"].create_group("relu")
        relu.attrs["MATLAB_class"] = np.bytes_("struct")
        t = relu.create_dataset("type", data=np.array([[ord(c)] for c in "relu"], np.uint16))
        t.attrs["MATLAB_class"] = np.bytes_("char")
        layers = f.create_dataset("layers", data=np.array([[relu.ref]], h5py.ref_dtype))
        layers.attrs["MATLAB_class"] = np.bytes_("cell")
        build(f, h5py)
    return path


def test_v73_dataset_declaring_huge_dimensions(tmp_path):
    def build(f, h5py):
        meta = f.create_group("meta")
        meta.attrs["MATLAB_class"] = np.bytes_("struct")
        big = meta.create_dataset("mean", shape=(100000, 100000), dtype=np.float64)
        big.attrs["MATLAB_class"] = np.bytes_("double")

    path = v73(tmp_path, build)
    assert os.path.getsize(path) < 20000
    load_within(path, match=r"crafted73\.mat: meta\.mean: declares a 100000 x 100000 double "
                            r"array \(80000000000 bytes\) but the file holds 0 bytes of it")


def test_v73_compressed_dataset_declaring_huge_dimensions(tmp_path):
    def build(f, h5py):
        big = f.create_dataset("meta", shape=(50000, 50000), dtype=np.float32,
                               chunks=(1000, 1000), compression="gzip")
        big[:1000, :1000] = 1.0      # one chunk is there, the rest is not
        big.attrs["MATLAB_class"] = np.bytes_("single")

    path = v73(tmp_path, build)
    load_within(path, match=r"crafted73\.mat: meta: declares a 50000 x 50000 single array")


def test_v73_cell_declaring_huge_dimensions(tmp_path):
    def build(f, h5py):
        big = f.create_dataset("meta", shape=(40000, 40000), dtype=h5py.ref_dtype)
        big.attrs["MATLAB_class"] = np.bytes_("cell")

    load_within(v73(tmp_path, build), match=r"meta: declares a 40000 x 40000 cell array")


def test_v73_cyclic_references(tmp_path):
    def build(f, h5py):
        loop = f["#refs#"].create_dataset("loop", shape=(1, 1), dtype=h5py.ref_dtype)
        loop.attrs["MATLAB_class"] = np.bytes_("cell")
        loop[0, 0] = loop.ref
        meta = f.create_dataset("meta", data=np.array([[loop.ref]], h5py.ref_dtype))
        meta.attrs["MATLAB_class"] = np.bytes_("cell")

    load_within(v73(tmp_path, build), match=rf"meta(\{{1\}}){{{MAX_DEPTH}}}: values nested "
                                            rf"more than {MAX_DEPTH} deep")


def test_v73_empty_huge_sparse_stays_sparse(tmp_path):
    import scipy.sparse

    def build(f, h5py):
        meta = f.create_group("meta")
        meta.attrs["MATLAB_class"] = np.bytes_("struct")
        group = meta.create_group("adjacency")
        group.attrs["MATLAB_class"] = np.bytes_("double")
        group.attrs["MATLAB_sparse"] = np.uint64(100000)
        group.create_dataset("jc", data=np.zeros(100001, np.uint64), compression="gzip")

    adjacency = load_net(v73(tmp_path, build)).meta.adjacency
    assert scipy.sparse.issparse(adjacency) and adjacency.shape == (100000, 100000)
    assert adjacency.nnz == 0 and adjacency.dtype == np.float64


def test_v73_function_handle_is_not_run(tmp_path):
    def build(f, h5py):
        meta = f.create_group("meta")
        meta.attrs["MATLAB_class"] = np.bytes_("struct")
        handle = meta.create_dataset("forward", data=np.zeros((1, 1), np.uint32))
        handle.attrs["MATLAB_class"] = np.bytes_("function_handle")

    net = load_net(v73(tmp_path, build))
    with pytest.raises(TypeError, match="MATLAB function handle .*cannot run in Python"):
        net.meta.forward()


# --------------------------------------------------------------------------
# save_net: never destroys, never half-writes

def small_net(seed=0):
    w = np.random.default_rng(seed).standard_normal((3, 3, 1, 2)).astype(np.float32)
    return {"layers": [{"type": "conv", "weights": [w, np.zeros(2, np.float32)]},
                       {"type": "relu"}]}


def _leftovers(folder):
    return sorted(p for p in os.listdir(folder) if p != "net.mat")


def test_a_full_disk_while_overwriting_keeps_the_old_model(tmp_path, monkeypatch):
    path = tmp_path / "net.mat"
    save_net(path, small_net(0))
    before = path.read_bytes()

    def full_disk(stream, *args, **kwargs):
        stream.write(b"MATLAB 5.0 MAT-file, half written")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scipy.io, "savemat", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_net(path, small_net(1))
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    np.testing.assert_array_equal(load_net(path).layers[0].weights[0],
                                  small_net(0)["layers"][0]["weights"][0])


def test_an_unstorable_value_in_a_structured_array_writes_nothing(tmp_path):
    table = np.zeros((1, 2), dtype=[("name", object), ("value", object)])
    table[0, 0] = ("a", np.ones(2))
    table[0, 1] = ("b", {1, 2})            # a set: MATLAB has nothing for it
    path = tmp_path / "net.mat"
    with pytest.raises(ValueError, match=r"save_net: meta\.table\(2\)\.value has a value of "
                                         r"type set"):
        save_net(path, {"layers": [], "meta": {"table": table}})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_a_callable_in_a_structured_array_is_a_value_error(tmp_path):
    table = np.zeros((1, 1), dtype=[("forward", object)])
    table[0, 0] = (print,)
    path = tmp_path / "net.mat"
    with pytest.raises(ValueError, match=r"save_net: meta\.table\.forward holds a Python "
                                         r"callable \(print\)"):
        save_net(path, {"layers": [], "meta": {"table": table}})
    assert os.listdir(tmp_path) == []


def test_a_structured_array_round_trips(tmp_path):
    table = np.zeros((1, 2), dtype=[("name", object), ("value", object)])
    table[0, 0] = ("a", np.ones((1, 2)))
    table[0, 1] = ("b", 2.5)
    net = load_net(save_net(tmp_path / "net.mat", {"layers": [], "meta": {"table": table}}))
    assert [entry.name for entry in net.meta.table] == ["a", "b"]
    np.testing.assert_array_equal(net.meta.table[0].value, np.ones((1, 2)))
    assert net.meta.table[1].value == 2.5


def test_scipy_failing_mid_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.mat"
    with pytest.raises(Exception):
        # an object scipy cannot store, past to_mat's checks
        write_mat(path, {"x": np.array([[object()]], dtype=object)})
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------
# custom layers whose forward is not callable

def test_a_custom_layer_with_a_string_forward_names_the_layer_and_field():
    net = {"layers": [{"type": "relu"}, {"type": "relu"}, {"type": "relu"},
                      {"type": "custom", "name": "conv2", "forward": "myForward",
                       "backward": lambda l, a, b: a}]}
    x = np.ones((2, 2, 1, 1), np.float32)
    with pytest.raises(TypeError, match=r"vl_simplenn: layer 4 'conv2' \(net\.layers\[3\]\) "
                                        r"is a custom layer whose 'forward' must be callable, "
                                        r"got str 'myForward'"):
        vl_simplenn(net, x)


def test_a_custom_layer_with_a_missing_backward_callable():
    net = {"layers": [{"type": "custom", "forward": lambda l, a, b: b, "backward": None}]}
    x = np.ones((2, 2, 1, 1), np.float32)
    with pytest.raises(TypeError, match=r"layer 1 \(net\.layers\[0\]\) is a custom layer whose "
                                        r"'backward' must be callable, got NoneType"):
        vl_simplenn(net, x, np.ones((2, 2, 1, 1), np.float32))


def test_read_mat_gives_the_variables(tmp_path):
    path = write(tmp_path, relu_layers())
    assert sorted(read_mat(path)) == ["layers"]


def test_v73_references_repeating_one_dataset(tmp_path):
    # 1 MB of data, reached 300 times: read once, shared (not 300 MB)
    def build(f, h5py):
        block = f["#refs#"].create_dataset("block", data=np.ones((512, 256)))
        block.attrs["MATLAB_class"] = np.bytes_("double")
        meta = f.create_group("meta")
        meta.attrs["MATLAB_class"] = np.bytes_("struct")
        many = meta.create_dataset("many", data=np.full((300, 1), block.ref, h5py.ref_dtype))
        many.attrs["MATLAB_class"] = np.bytes_("cell")

    tracemalloc.start()
    try:
        net = load_net(v73(tmp_path, build))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(net.meta.many) == 300 and np.shares_memory(net.meta.many[0], net.meta.many[-1])
    assert peak < 64 << 20


def test_v73_references_multiplying_values(tmp_path):
    # each level holds 16 references to the level below: 16 ** 6 values
    def build(f, h5py):
        below = f["#refs#"].create_dataset("leaf", data=np.ones((1, 1)))
        below.attrs["MATLAB_class"] = np.bytes_("double")
        for level in range(6):
            node = f["#refs#"].create_dataset(f"n{level}",
                                              data=np.full((16, 1), below.ref, h5py.ref_dtype))
            node.attrs["MATLAB_class"] = np.bytes_("cell")
            below = node
        meta = f.create_dataset("meta", data=np.array([[below.ref]], h5py.ref_dtype))
        meta.attrs["MATLAB_class"] = np.bytes_("cell")

    load_within(v73(tmp_path, build), match=r"crafted73\.mat: meta.*values add up to more than "
                                            r"1032 times its size")


def test_a_million_empty_cells_in_a_small_compressed_file(tmp_path):
    # a million empty values inflate to 8 MB from about 8 KB: each would
    # become Python objects (gigabytes) if scipy read them.  (At most 16384
    # values, or one per 16 bytes of a larger file.)
    empty = struct.pack("<II", MI_MATRIX, 0)
    body = cell("meta", [1, 10 ** 6])
    data = zlib.compressobj()
    packed = data.compress(struct.pack("<II", MI_MATRIX, len(body) - 8 + 8 * 10 ** 6)
                           + body[8:])
    chunk = empty * 65536
    for _ in range(10 ** 6 // 65536):
        packed += data.compress(chunk)
    packed += data.compress(empty * (10 ** 6 % 65536)) + data.flush()
    path = write(tmp_path, relu_layers(),
                 struct.pack("<II", MI_COMPRESSED, len(packed)) + packed)
    assert os.path.getsize(path) < 20000
    # refused by the scan, before scipy reads anything (tracemalloc would
    # only slow the scan down here)
    with pytest.raises(ValueError, match=r"crafted\.mat: meta\{\d+\}: the file holds more "
                                         r"than 16384 values \(at most one per 16 bytes"):
        load_net(path)


# --------------------------------------------------------------------------
# dagnn.load_net reads through the same checks

@pytest.mark.parametrize("variable, message", [
    (lambda: matrix(DOUBLE, [65536, 8192], "params", element(MI_DOUBLE, bytes(64),
                                                              declared=2 ** 32 - 8),
                    declared=2 ** 32 - 8), r"params: declares 4294967288 bytes"),
    (lambda: compressed(mstruct("params", [40000, 40000], ["name", "value"])),
     r"params: declares a 40000 x 40000 struct array"),
    (lambda: compressed(_rename(nested_cells(16000), "vars")),
     rf"vars(\{{1\}}){{{MAX_DEPTH}}}: values nested more than {MAX_DEPTH} deep"),
])
def test_dagnn_load_net_refuses_crafted_files(tmp_path, variable, message):
    import dagnn

    path = write(tmp_path, variable(), name="dag.mat")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"dag\.mat: " + message):
            dagnn.load_net(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_a_mat_v4_file_is_refused(tmp_path):
    path = tmp_path / "old.mat"
    scipy.io.savemat(str(path), {"layers": np.ones((2, 2))}, format="4")
    with pytest.raises(ValueError, match=r"old\.mat: a MAT v4 file, which cannot hold a network"):
        load_net(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_file_has_the_permissions_of_a_plain_open(tmp_path, umask):
    # the atomic write goes through a private (0600) temporary file; the
    # model must still be readable as any file the user writes
    previous = os.umask(umask)
    try:
        save_net(tmp_path / "net.mat", small_net(0))
        with open(tmp_path / "plain.bin", "w"):
            pass
    finally:
        os.umask(previous)
    mode = os.stat(tmp_path / "net.mat").st_mode & 0o777
    assert mode == 0o666 & ~umask
    assert mode == os.stat(tmp_path / "plain.bin").st_mode & 0o777
