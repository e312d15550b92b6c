from __future__ import annotations

import numpy as np

from anonbench.cache import Cache, array_digest


def test_put_get_and_damaged_entries(tmp_path):
    c = Cache(tmp_path)
    d = array_digest(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert c.get("comp", "v1", d) is None
    c.put("comp", "v1", d, {"x": np.ones(3)})
    assert np.array_equal(c.get("comp", "v1", d)["x"], np.ones(3))
    assert c.get("comp", "v2", d) is None  # the version is part of the key
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written left behind
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(b"garbage")
    assert c.get("comp", "v1", d) is None


def test_digest_depends_on_shape_and_content():
    a = np.zeros((2, 3), np.uint8)
    assert array_digest(a) != array_digest(a.reshape(3, 2))
    b = a.copy()
    b[0, 0] = 1
    assert array_digest(a) != array_digest(b)
    assert array_digest(a) == array_digest(a.copy())


def test_atomic_open_replaces_whole_or_not_at_all(tmp_path):
    import stat

    import pytest

    from anonbench.cache import FILE_MODE, atomic_open

    target = tmp_path / "sub" / "f.bin"
    with atomic_open(target) as f:
        f.write(b"old")
    assert target.read_bytes() == b"old"
    assert stat.S_IMODE(target.stat().st_mode) == FILE_MODE  # not mkstemp's owner-only 0600
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"  # the reader never sees half a file
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]  # no temporary left
