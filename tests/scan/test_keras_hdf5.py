"""HDF5 files read by PyTables (pandas.read_hdf, HDFStore): PyTables unpickles every byte-string
attribute that ends with "." and every row of an object VLArray, so those are scanned as pickles
(attack A1-20: a pickled `non_index_axes` attribute ran on pd.read_hdf and passed)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import gate_fails, rules, scan_file

from bastion.findings import Severity

h5py = pytest.importorskip("h5py")
MARKER = "bastion-marker"


class _System:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"echo {MARKER}",))


def _pandas_like(path: Path, attribute: bytes | None = None, row: bytes | None = None) -> None:
    """The layout pandas' table format writes: /df (group) and /df/table (dataset)."""
    with h5py.File(path, "w") as h5:
        group = h5.create_group("df")
        group.attrs["pandas_type"] = np.bytes_(b"frame_table")
        table = group.create_dataset("table", data=np.arange(3))
        table.attrs["CLASS"] = np.bytes_(b"TABLE")
        table.attrs["TITLE"] = np.bytes_(b"Created by pandas.")  # ends with "." yet no pickle
        table.attrs["non_index_axes"] = np.bytes_(pickle.dumps([(1, ["a", "b"])], protocol=0))
        if attribute is not None:
            table.attrs["non_index_axes"] = np.bytes_(attribute)
        if row is not None:
            objects = group.create_dataset("block0_values", (1,), dtype=h5py.vlen_dtype(np.uint8))
            objects[0] = np.frombuffer(row, dtype=np.uint8)
            objects.attrs["CLASS"] = np.bytes_(b"VLARRAY")
            objects.attrs["PSEUDOATOM"] = np.bytes_(b"object")


def test_pickled_attribute_is_scanned(tmp_path: Path) -> None:
    path = tmp_path / "features.h5"
    _pandas_like(path, attribute=pickle.dumps(_System(), protocol=0))
    assert "PKL001" in rules(scan_file(path), Severity.CRITICAL)


@pytest.mark.parametrize("protocol", [0, 2])
def test_variable_length_string_attribute_is_scanned(tmp_path: Path, protocol: int) -> None:
    """Attack A1-35: h5py returns str (or fails to decode) for a variable-length ASCII string
    attribute; PyTables returns its bytes and unpickles them."""
    path = tmp_path / "features.h5"
    _pandas_like(path)
    payload = pickle.dumps(_System(), protocol=0)
    if protocol:  # binary opcodes (bytes >= 0x80, which h5py cannot decode as ASCII), no NUL
        command = f"echo {MARKER}".encode()
        payload = b"\x80\x02cposix\nsystem\n\x8c" + bytes([len(command)]) + command + b"\x85R."
    with h5py.File(path, "a") as h5:
        attrs = h5["df/table"].attrs
        del attrs["non_index_axes"]
        if protocol == 0:
            attrs.create(
                "non_index_axes", payload.decode("ascii"), dtype=h5py.string_dtype("ascii")
            )
        else:
            type_id = h5py.h5t.C_S1.copy()
            type_id.set_size(h5py.h5t.VARIABLE)
            space = h5py.h5s.create(h5py.h5s.SCALAR)
            attribute = h5py.h5a.create(h5["df/table"].id, b"non_index_axes", type_id, space)
            data = np.array([payload], dtype=h5py.string_dtype("ascii")).reshape(())
            attribute.write(data, mtype=h5py.h5t.py_create(h5py.string_dtype("ascii")))
    assert "PKL001" in rules(scan_file(path), Severity.CRITICAL)


def test_pickled_object_row_is_scanned(tmp_path: Path) -> None:
    path = tmp_path / "features.h5"
    _pandas_like(path, row=pickle.dumps([_System()], protocol=2))
    assert "PKL001" in rules(scan_file(path), Severity.CRITICAL)


def test_pandas_like_file_with_plain_pickled_metadata_passes(tmp_path: Path) -> None:
    path = tmp_path / "features.h5"
    _pandas_like(path, row=pickle.dumps(np.array(["x", "y"], dtype=object), protocol=2))
    result = scan_file(path)
    assert not gate_fails(result), result.findings


def test_real_pytables_unpickles_the_attribute(tmp_path: Path) -> None:
    """Proof with the real loader where PyTables is installed (not a test dependency)."""
    pytest.importorskip("tables")
    path = tmp_path / "features.h5"
    _pandas_like(path, attribute=pickle.dumps(_System(), protocol=0))
    code = (
        "import tables\nwith tables.open_file('features.h5') as h5:\n"
        " h5.root.df.table._v_attrs.non_index_axes"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert MARKER in out.stdout + out.stderr
