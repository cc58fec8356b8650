"""Checkpoint resume (llm.c's test) and saves killed at random points.

* Train N steps, ``fastnn.save`` the model, the optimizer state and the random generator's state,
  train M more steps. A fresh process (subprocess) builds the model anew, loads the checkpoint
  and trains M steps: its M losses and final parameters are bitwise those of the uninterrupted
  run. On the CPU and on the emulated CUDA device (skipped while a layer has no CUDA kernel).
* A process saving checkpoints in a loop is SIGKILLed after a random delay, many times: the
  target file always loads, is complete and self-consistent (one whole version), and is never
  older than the last save that returned. (tests/test_serialization.py kills at two fixed points.)
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn as fnn
from fastnn import optim
from fastnn import random as frandom

import op_cases as C
from conftest import DEVICES

N_STEPS, M_STEPS = 5, 4
KILL_TRIALS = int(os.environ.get("FASTNN_KILL_TRIALS", "4"))
HERE = os.path.dirname(os.path.abspath(__file__))


def _fresh(device):
    model = C.tiny_model(device, seed=5)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    return model, opt


def _checkpoint(model, opt):
    return {"model": model.state_dict(), "optim": opt.state_dict(),
            "rng": frandom.generator().bit_generator.state}


_RESUME_CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = {path!r}
    import fastnn as fnn
    from fastnn import random as frandom
    import op_cases as C
    from test_resume import _fresh, M_STEPS
    fnn.set_num_threads({threads})
    fnn.manual_seed(12345)          # a different state: everything must come from the checkpoint
    model, opt = _fresh({device!r})
    ck = fnn.load({ck!r})
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optim"])
    frandom.generator().bit_generator.state = ck["rng"]
    x, y = C.tiny_data({device!r})
    losses = C.train_steps(model, opt, x, y, M_STEPS)
    sys.stdout.buffer.write(losses.tobytes() + b"".join(C.params_bytes(model)))
""")


@pytest.mark.parametrize("device", DEVICES)
def test_resume_in_fresh_process_is_bitwise(device, tmp_path):
    threads = 2
    before = fnn.get_num_threads()
    fnn.set_num_threads(threads)
    try:
        model, opt = _fresh(device)
        x, y = C.tiny_data(device)
        C.train_steps(model, opt, x, y, N_STEPS)
        ck = tmp_path / "step5.fnn"
        fnn.save(_checkpoint(model, opt), ck)
        losses = C.train_steps(model, opt, x, y, M_STEPS)
    except Exception as e:  # noqa: BLE001
        C.skip_if_no_kernel(e, device)
    finally:
        fnn.set_num_threads(before)
    expected = losses.tobytes() + b"".join(C.params_bytes(model))
    code = _RESUME_CHILD.format(path=[HERE] + sys.path, threads=threads, device=device, ck=str(ck))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600,
                         env=dict(os.environ, FASTNN_CUDA_EMULATE="1"))
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    got_losses = np.frombuffer(out.stdout[:4 * M_STEPS], np.float32)
    np.testing.assert_array_equal(got_losses, losses)  # readable message first
    assert out.stdout == expected, "parameters after resuming differ from the uninterrupted run"


def test_resume_needs_the_optimizer_state(tmp_path):
    """The bitwise test is not vacuous: resuming without the optimizer's moments diverges."""
    model, opt = _fresh("cpu")
    x, y = C.tiny_data()
    C.train_steps(model, opt, x, y, N_STEPS)
    ck = _checkpoint(model, opt)
    losses = C.train_steps(model, opt, x, y, M_STEPS)
    model2, opt2 = _fresh("cpu")
    model2.load_state_dict(ck["model"])
    frandom.generator().bit_generator.state = ck["rng"]
    losses2 = C.train_steps(model2, opt2, x, y, M_STEPS)
    assert losses2.tobytes() != losses.tobytes()


# ---- SIGKILL at random points -----------------------------------------------------------------
_SAVER_CHILD = textwrap.dedent("""
    import sys, numpy as np
    sys.path[:0] = {path!r}
    import fastnn as fnn
    target = {target!r}
    k = {start}
    while True:
        k += 1
        w = np.full((4, 1 << 19), k, np.float32)      # 8 MiB: a save takes long enough to be hit
        fnn.save({{"version": k, "w": fnn.tensor(w), "tail": list(range(k % 50))}}, target)
        print(k, flush=True)                          # this version is durable now
""")


def _check_complete(ck):
    k = ck["version"]
    w = ck["w"].numpy()
    assert w.shape == (4, 1 << 19) and (w == k).all(), f"version {k}: tensor data from another version"
    assert ck["tail"] == list(range(k % 50))
    return k


def test_save_killed_at_random_points(tmp_path):
    target = str(tmp_path / "ck.fnn")
    fnn.save({"version": 0, "w": fnn.tensor(np.zeros((4, 1 << 19), np.float32)), "tail": []}, target)
    rnd = random.Random(int(os.environ.get("FASTNN_KILL_SEED", "2026")))
    durable = 0
    for trial in range(KILL_TRIALS):
        code = _SAVER_CHILD.format(path=sys.path, target=target, start=durable)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            first = child.stdout.readline()  # wait until it is saving in a loop
            assert first.strip(), "the saver child died before its first save"
            time.sleep(rnd.uniform(0.0, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait(60)
            done = [int(line) for line in [first] + child.stdout.readlines() if line.strip()]
        finally:
            if child.poll() is None:
                child.kill()
            child.stdout.close()
        k = _check_complete(fnn.load(target))  # never torn, never missing
        assert k >= done[-1], f"trial {trial}: version {done[-1]} was reported saved, the file holds {k}"
        assert k <= done[-1] + 1
        durable = k
    assert durable >= KILL_TRIALS  # every child completed at least its first save
