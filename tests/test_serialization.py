"""fastnn.save / fastnn.load: round trips, atomic replacement, corrupted-file detection."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn import nn, optim


def test_round_trip_nested(tmp_path):
    rng = np.random.default_rng(0)
    obj = {
        "model": {"w": fnn.tensor(rng.standard_normal((3, 4)).astype(np.float32)),
                  "i": fnn.tensor(np.arange(5)), "m": fnn.tensor(np.array([True, False]))},
        "opt": {"state": {0: {"step": 3, "exp_avg": fnn.tensor(np.ones(2, np.float32))}},
                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": False, "params": [0]}]},
        "epoch": 7, "name": "run-α", "nothing": None, "nan": float("nan"), "scalar": fnn.tensor(np.float32(2.5)),
        "empty": fnn.tensor(np.zeros((0, 3), np.float32)), "f64": np.arange(3, dtype=np.float64),
    }
    p = tmp_path / "a.fnn"
    fnn.save(obj, p)
    back = fnn.load(p)
    np.testing.assert_array_equal(back["model"]["w"].numpy(), obj["model"]["w"].numpy())
    assert back["model"]["i"].dtype == fnn.int64 and back["model"]["m"].dtype == fnn.bool_
    assert back["opt"]["state"][0]["step"] == 3  # int keys survive
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["epoch"] == 7 and back["name"] == "run-α" and back["nothing"] is None
    assert np.isnan(back["nan"]) and back["scalar"].item() == 2.5
    assert tuple(back["empty"].shape) == (0, 3) and back["f64"].dtype == fnn.float64
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_model_and_optimizer_state(tmp_path):
    fnn.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    o = optim.AdamW(m.parameters(), lr=0.01)
    m(fnn.tensor(np.ones((2, 3), np.float32))).sum().backward()
    o.step()
    fnn.save({"model": m.state_dict(), "optim": o.state_dict()}, tmp_path / "ck")
    ck = fnn.load(tmp_path / "ck")
    fnn.manual_seed(1)
    m2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m2.load_state_dict(ck["model"])
    o2 = optim.AdamW(m2.parameters(), lr=0.5)
    o2.load_state_dict(ck["optim"])
    for a, b in zip(m.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert o2.param_groups[0]["lr"] == 0.01
    assert o2.state[id(m2[0].weight)]["step"] == 1


def test_unsupported_objects(tmp_path):
    with pytest.raises(TypeError, match="set"):
        fnn.save({"a": {1, 2}}, tmp_path / "x")
    with pytest.raises(TypeError, match="keys"):
        fnn.save({(1, 2): 3}, tmp_path / "x")
    assert not os.path.exists(tmp_path / "x")


def _good(tmp_path):
    p = tmp_path / "good.fnn"
    fnn.save({"w": fnn.tensor(np.arange(1000, dtype=np.float32)), "k": 1}, p)
    return p, p.read_bytes()


@pytest.mark.parametrize("mutate,msg", [
    (lambda b: b[:len(b) // 2], "truncated"),
    (lambda b: b[:10], "too short"),
    (lambda b: b"", "too short"),
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\0" * 64, "padded"),
    (lambda b: b[:-100] + bytes([b[-100] ^ 0xFF]) + b[-99:], "checksum"),
    (lambda b: b"PK\x03\x04" + b[4:], "magic"),
    (lambda b: b[:8] + b"\x09\x00\x00\x00" + b[12:], "version"),
    (lambda b: b[:20] + b"{" * 30 + b[50:], "header"),
])
def test_corrupted_files(tmp_path, mutate, msg):
    p, raw = _good(tmp_path)
    p.write_bytes(mutate(raw))
    with pytest.raises(ValueError, match=msg):
        fnn.load(p)


def test_foreign_files(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones(3))
    import pickle
    (tmp_path / "b.pkl").write_bytes(pickle.dumps({"a": 1}))
    for f in ("a.npz", "b.pkl"):
        with pytest.raises(ValueError, match="not a valid fastnn checkpoint"):
            fnn.load(tmp_path / f)


_CHILD = textwrap.dedent("""
    import os, sys, time, numpy as np
    sys.path[:0] = {path!r}
    import fastnn as fnn
    if {slow_fsync}:
        real = os.fsync
        def slow(fd):
            print("FSYNC", flush=True); time.sleep(60); real(fd)
        os.fsync = slow
    big = fnn.tensor(np.full((64, 1024, 1024), 7.0, np.float32))  # 256 MiB
    print("START", flush=True)
    fnn.save({{"w": big}}, {target!r})
    print("DONE", flush=True)
""")


@pytest.mark.parametrize("slow_fsync", [False, True])
def test_killed_save_leaves_old_file(tmp_path, slow_fsync):
    """A save SIGKILLed while writing (or before its rename) leaves the previous checkpoint
    intact and loadable."""
    target = tmp_path / "ck.fnn"
    fnn.save({"w": fnn.tensor(np.arange(10, dtype=np.float32)), "v": "old"}, target)
    code = _CHILD.format(path=sys.path, slow_fsync=slow_fsync, target=str(target))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "START"
        if slow_fsync:
            assert child.stdout.readline().strip() == "FSYNC"
        else:
            deadline = time.time() + 30
            while not any(f.name.endswith(".tmp") and f.stat().st_size > 0 for f in tmp_path.iterdir()):
                assert time.time() < deadline, "the child never started writing"
                time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    back = fnn.load(target)  # never a torn file
    if slow_fsync or "v" in back:  # killed before the rename (always, with the slowed fsync)
        assert back["v"] == "old"
        np.testing.assert_array_equal(back["w"].numpy(), np.arange(10))
    else:  # the kill landed after os.replace: then the new file is complete
        assert tuple(back["w"].shape) == (64, 1024, 1024) and float(back["w"][63, 1023, 1023]) == 7.0
