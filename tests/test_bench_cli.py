"""`fastnn bench` CLI at test sizes (--tiny): table, JSON + schema, plot, refusal of a wrong
kernel, "not available" for a missing one, exit codes. Nothing here asserts a speed."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import fastnn
from fastnn.bench import runner, schema

TINY = ["--tiny", "--repeats", "2", "--no-malloc-child"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # Probe cache in a temporary file; plain output; restore fastnn's thread count.
    monkeypatch.setenv("FASTNN_BENCH_CACHE", str(tmp_path / "probes.json"))
    monkeypatch.setenv("FASTNN_BENCH_PLAIN", "1")
    before = fastnn.get_num_threads()
    yield
    fastnn.set_num_threads(before)


def _run(capsys, *argv):
    rc = runner.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _has(op):
    return hasattr(fastnn.ops, op) and hasattr(fastnn._C, {"attention": "attention_forward"}.get(op, op))


needs_attention = pytest.mark.skipif(not _has("attention"), reason="attention kernel not in this build")
needs_gemm = pytest.mark.skipif(not _has("gemm"), reason="gemm kernel not in this build")


def test_help_and_usage_errors(capsys):
    rc, out, _ = _run(capsys, "--help")
    assert rc == 0 and "--numpy-best" in out and "Exit codes" in out
    assert _run(capsys, "nosuchsuite")[0] == 2
    rc, _, err = _run(capsys, "gemm", "--threads", "0")
    assert rc == 2 and "--threads" in err and "got 0" in err
    rc, _, err = _run(capsys, "gemm", "--baselines", "numpy,jax")
    assert rc == 2 and "jax" in err
    assert _run(capsys, "gemm", "--repeats", "0")[0] == 2


def test_cli_dispatch_keeps_working(capsys):
    from fastnn import cli

    assert cli.main(["bench", "--help"]) == 0
    assert "fastnn bench" in capsys.readouterr().out


@needs_attention
def test_table_and_json_validate(tmp_path, capsys):
    path = tmp_path / "r.json"
    rc, out, err = _run(capsys, "attention", *TINY, "--baselines", "numpy", "--threads", "1", "--json", str(path))
    assert rc == 0, err
    assert "== attention ==" in out and "fastnn ms [min-max]" in out and "numpy* ms" in out
    assert "attention fwd" in out and "B1 H2 N24 D16 causal" in out
    assert "\r" not in err  # no progress line when stderr is not a terminal
    doc = json.loads(path.read_text())
    schema.validate(doc)                       # jsonschema when installed
    schema.validate(doc, use_jsonschema=False)  # the built-in validator
    assert doc["machine"]["threads"] == 1 and doc["size"] == "tiny" and doc["exit_code"] == 0
    # where the time went: the main process only (no child with --no-malloc-child and no --numpy-best)
    assert [(p["suite"], p["phase"]) for p in doc["phases"]] == [("attention", "main")]
    assert doc["phases"][0]["seconds"] > 0 and "(attention main " in out
    cases = doc["cases"]
    assert len(cases) == 4 and all(c["status"] == "ok" for c in cases)
    for c in cases:
        names = {r["name"] for r in c["results"]}
        assert {"fastnn", "numpy", "numpy[out=]"} <= names
        f = next(r for r in c["results"] if r["name"] == "fastnn")
        assert f["min_ms"] <= f["median_ms"] <= f["max_ms"] and f["repeats"] >= 2
        # speedup vs numpy = its fastest variant's same-process ratio
        best = min(r["ratio"] for r in c["results"] if r["peer"] == "numpy")
        assert c["speedup"]["numpy"] == pytest.approx(best)
        assert c["rate"] > 0
    assert any(r.get("peak_extra_bytes") is not None for c in cases for r in c["results"])
    # the returned outputs are told apart from workspace: B1 H2 N24 D16 float32 is 3072 bytes per tensor;
    # fwd returns o, fwd+bwd returns o, dq, dk, dv (fastnn's logsumexp is passed on, not returned)
    for c in cases:
        outs = {r["name"]: r.get("output_bytes") for r in c["results"] if r.get("peak_extra_bytes") is not None}
        fwd = c["op"] == "attention fwd"
        assert outs["fastnn"] == outs["numpy"] == (3072 if fwd else 4 * 3072)
        assert all(r["peak_extra_bytes"] >= r["output_bytes"] for r in c["results"] if r.get("output_bytes"))

    # bench/make_results.py turns the same JSON into RESULTS.md, labelled as a non-full run
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "make_results", pathlib.Path(__file__).resolve().parent.parent / "bench" / "make_results.py")
    mr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mr)
    md_path = tmp_path / "RESULTS.md"
    assert mr.main([str(path), "-o", str(md_path)]) == 0
    md = md_path.read_text()
    assert "This is a `tiny` run" in md and "## attention" in md and "| attention fwd | B1 H2 N24 D16 |" in md
    assert doc["command"] in md


def test_schema_rejects_malformed_documents():
    doc = {"schema_version": 1, "tool": "fastnn bench", "command": "fastnn bench", "date": "d", "size": "tiny",
           "settings": {"repeats": 1, "warmup": 1, "baselines": ["numpy"], "numpy_best": False, "device": "cpu",
                        "threads": 1},
           "machine": {"cpu_model": "x", "simd_level": "avx2", "threads": 1, "device": "cpu", "env": {}, "blas": [],
                       "versions": {"fastnn": "0", "numpy": "1", "python": "3", "torch": None}},
           "limits": {}, "cases": [], "unavailable": [], "notes": [], "exit_code": 0}
    for use in (True, False):
        schema.validate(doc, use_jsonschema=use)
        bad = copy.deepcopy(doc)
        del bad["machine"]["cpu_model"]
        with pytest.raises(schema.SchemaError, match="cpu_model"):
            schema.validate(bad, use_jsonschema=use)
        bad = copy.deepcopy(doc)
        bad["settings"]["repeats"] = "many"
        with pytest.raises(schema.SchemaError):
            schema.validate(bad, use_jsonschema=use)
        bad = copy.deepcopy(doc)
        bad["cases"] = [{"suite": "gemm"}]
        with pytest.raises(schema.SchemaError):
            schema.validate(bad, use_jsonschema=use)


@needs_attention
def test_wrong_kernel_is_refused(tmp_path, capsys, monkeypatch):
    real = fastnn.ops.attention

    def off_by_a_bit(q, k, v, **kw):
        out = real(q, k, v, **kw)
        if isinstance(out, tuple):
            return out
        a = np.array(out, copy=True)
        a[0, 0, 0, 0] += 1e-2  # one element, slightly: the gate must still see it
        return fastnn.from_numpy(a)
    monkeypatch.setattr(fastnn.ops, "attention", off_by_a_bit)
    path = tmp_path / "r.json"
    rc, out, err = _run(capsys, "attention", *TINY, "--baselines", "numpy", "--only", "fwd/", "--json", str(path))
    assert rc == 3
    assert "REFUSED" in err and "output 0 is wrong" in err and "index (0, 0, 0, 0)" in err
    assert "REFUSED" in out
    doc = json.loads(path.read_text())
    schema.validate(doc)
    refused = [c for c in doc["cases"] if c["status"] == "refused"]
    assert refused and all(c["results"] == [] for c in refused)  # nothing timed
    assert doc["exit_code"] == 3


@needs_attention
def test_wrong_peer_is_refused_but_fastnn_is_timed(capsys, monkeypatch):
    from fastnn.bench import suites

    real = suites.NumpyAttention.forward
    # the float32 peer is broken; the float64 reference (same class) is not
    monkeypatch.setattr(suites.NumpyAttention, "forward",
                        lambda self: np.zeros_like(self.q) if self.q.dtype == np.float32 else real(self))
    rc, out, err = _run(capsys, "attention", *TINY, "--baselines", "numpy", "--only", "fwd/")
    assert rc == 0
    assert "peer refused" in err and "numpy" in err
    assert "attention fwd" in out


def test_missing_kernel_is_not_available(capsys, monkeypatch):
    monkeypatch.delattr(fastnn.ops, "gemm", raising=False)
    rc, out, _ = _run(capsys, "gemm", *TINY, "--baselines", "numpy")
    assert rc == 0
    assert "gemm: not available in this build" in out


def test_train_suite_runs_or_reports_unavailable(capsys):
    pytest.importorskip("torch")
    rc, out, err = _run(capsys, "train", *TINY, "--only", "MLP")
    assert rc == 0, err
    assert "== train ==" in out
    assert "train MLP 784-128-10" in out or "not available in this build" in out
    assert "REFUSED" not in out


@needs_attention
def test_only_keeps_the_cases_matching_any_of_its_substrings(tmp_path, capsys):
    # e.g. `fastnn bench attention --only N2048,N4096`: comma-separated alternatives, spaces trimmed
    path = tmp_path / "r.json"
    rc, out, err = _run(capsys, "attention", *TINY, "--baselines", "", "--json", str(path),
                        "--only", "fwd/B1 H2 N24 D16 causal, fwd+bwd/B1 H2 N24 D16")
    assert rc == 0, err
    doc = json.loads(path.read_text())
    schema.validate(doc)
    assert sorted(c["id"] for c in doc["cases"]) == [
        "attention/attention fwd+bwd/B1 H2 N24 D16", "attention/attention fwd+bwd/B1 H2 N24 D16 causal",
        "attention/attention fwd/B1 H2 N24 D16 causal"]
    rc, out, err = _run(capsys, "attention", *TINY, "--baselines", "", "--json", str(path), "--only", "N4096")
    assert rc == 0, err
    assert json.loads(path.read_text())["cases"] == []


@needs_gemm
def test_plot_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "r.png"
    rc, out, err = _run(capsys, "gemm", *TINY, "--baselines", "numpy", "--plot", str(png))
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_an_error(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *a, **kw):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    monkeypatch.delattr(fastnn.ops, "gemm", raising=False)
    rc, _, err = _run(capsys, "gemm", *TINY, "--baselines", "", "--plot", str(tmp_path / "x.png"))
    assert rc == 1 and "matplotlib" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.skipif(not hasattr(fastnn._C, "_probe_fma_gflops"), reason="probes not in this build")
def test_probe_is_cached(tmp_path, capsys):
    rc, out, _ = _run(capsys, "--probe", "--tiny")
    assert rc == 0 and "measured now" in out and "GFLOP/s" in out and "GB/s" in out
    cache = json.loads((tmp_path / "probes.json").read_text())
    (key, val), = cache.items()
    assert key.endswith("|tiny") and val["fma_gflops"] > 0 and val["triad_gbs"] > 0 and val["adam_gbs"] > 0
    rc, out, _ = _run(capsys, "--probe", "--tiny")
    assert rc == 0 and "cached" in out


@pytest.mark.skipif(not hasattr(fastnn._C, "_probe_adam_pattern"), reason="probes not in this build")
def test_adam_limit_is_also_probed_on_the_same_buffers(tmp_path, capsys):
    # #6: the fraction of the bandwidth limit is reported twice: against the cached probe and against
    # the same probe loop timed on the case's buffers in the same rounds as fastnn (both printed).
    path = tmp_path / "a.json"
    rc, out, err = _run(capsys, "adam", *TINY, "--baselines", "numpy", "--only", "adam step", "--json", str(path))
    assert rc == 0, err
    assert "same-buffer probe" in out and "cached probe" in out
    doc = json.loads(path.read_text())
    schema.validate(doc)
    schema.validate(doc, use_jsonschema=False)
    (case,) = doc["cases"]
    (probe,) = [r for r in case["results"] if r["peer"] == "limit"]
    f = next(r for r in case["results"] if r["peer"] == "fastnn")
    assert probe["ratio"] > 0 and probe["repeats"] == f["repeats"]
    assert case["fraction_of_same_window_limit"] == pytest.approx(probe["ratio"])
    assert case["limit_same_window"] == pytest.approx(case["rate"] / probe["ratio"])
    assert "limit" not in case["speedup"] and "numpy" in case["speedup"]
    assert case["fraction_of_limit"] == pytest.approx(case["rate"] / case["limit"])
    # a set that fits in L3 is timed in the steady state (suites.ADAM_STEADY_CALLS), and says so
    assert case["calls_per_sample"] == 8 and "mean of 8 back-to-back calls" in out


def test_alternate_averages_back_to_back_calls(monkeypatch):
    from fastnn.bench import core

    clock = [0.0]
    monkeypatch.setattr(core.time, "perf_counter", lambda: clock[0])
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1
        clock[0] += 1.0  # every call of a takes 1 s, ...

    def b():
        calls["b"] += 1
        # ... b's first call of each sample 3 s (waking its threads), its second 2 s
        clock[0] += {2: 3.0, 3: 2.0}.get(calls["b"] % 5, 1.0)

    times = core.alternate([a, b], repeats=3, warmup=1, calls=4)
    assert calls == {"a": 1 + 3 * 5, "b": 1 + 3 * 5}  # warm-up, then per sample 1 untimed + 4 timed
    assert times == [[1.0] * 3, [1.25] * 3]  # the untimed first call is left out, the mean of the 4 kept


@needs_gemm
def test_numpy_best_child_process(tmp_path, capsys):
    path = tmp_path / "r.json"
    rc, out, err = _run(capsys, "gemm", *TINY, "--baselines", "numpy", "--numpy-best", "--only", "48x40x24",
                        "--json", str(path))
    assert rc == 0, err
    doc = json.loads(path.read_text())
    (case,) = doc["cases"]
    child = [r for r in case["results"] if r["process"] == "blas-best child"]
    assert child and child[0]["peer"] == "numpy" and child[0]["ratio"] > 0, doc["notes"]
    assert case["speedup"]["numpy"] == pytest.approx(min(r["ratio"] for r in case["results"] if r["peer"] == "numpy"))


def test_overhead_suite_reports_us_per_op(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "o.json"
    rc, out, err = _run(capsys, "overhead", *TINY, "--json", str(path))
    assert rc == 0, err
    assert "== overhead ==" in out and "us/op" in out and "REFUSED" not in out
    doc = json.loads(path.read_text())
    ops = {c["op"]: c for c in doc["cases"]}
    assert {"_C.binary (raw)", "x + x", "Linear fwd", "train step (MLP 4-4-2)", "Adam.step (4 tensors)"} <= set(ops)
    for c in ops.values():
        f = next(r for r in c["results"] if r["peer"] == "fastnn")
        # rate = microseconds per op = the fastnn median over the ops in one timed call
        assert c["unit"] == "us/call" and c["rate"] == pytest.approx(f["median_ms"] * 1e3 / c["work"])


def test_child_ratio_is_the_median_of_per_round_ratios():
    # rounds 2-3 of fastnn hit by a burst of load: a ratio of medians would say 2.0, the
    # per-round pairing keeps the unaffected rounds' 4.0
    peer = [4.0, 4.0, 4.0, 4.0, 4.0]
    fnn = [1.0, 3.0, 3.0, 1.0, 1.0]
    assert runner.paired_ratio(peer, fnn) == pytest.approx(4.0)
    assert runner.paired_ratio([], []) is None


def _drifting_child_run(monkeypatch, size):
    """A Run whose first child times fastnn at 3x its main-process time, the second at 1.1x."""
    run = runner.Run.__new__(runner.Run)
    run.notes, run.ui, run.size = [], runner.report.Progress(enabled=False), size
    rec = {"id": "c", "status": "ok", "results": [dict(name="fastnn", peer="fastnn", process="main", median_ms=1.0,
                                                       min_ms=1.0, max_ms=1.0, repeats=3, best=False, ratio=1.0)],
           "refused": [], "work": 1.0, "samples": None, "unit": "GB/s", "limit_kind": "none", "threads": 1}
    children = iter([{"cases": {"c": {"times": {"fastnn": [3e-3] * 3, "numpy[out=]": [6e-3] * 3}}}},
                     {"cases": {"c": {"times": {"fastnn": [1.1e-3] * 3, "numpy[out=]": [5e-3] * 3}}}}])
    calls = []
    monkeypatch.setattr(runner.Run, "_run_child", lambda self, *a: calls.append(a) or next(children))
    monkeypatch.setattr(runner.Run, "_finish", lambda self, r: None)
    run.child_pass("adam", [rec], "blas-best", {}, (), lambda r: ["numpy[out=]"])
    return run, rec, calls


def test_child_pass_retries_a_drifting_child_and_keeps_the_closer_run(monkeypatch):
    run, rec, calls = _drifting_child_run(monkeypatch, "full")
    assert len(calls) == 2  # the first child's fastnn was 3x the main process's: run again
    child = rec["results"][-1]
    assert child["fastnn_in_child_ms"] == pytest.approx(1.1) and child["ratio"] == pytest.approx(5 / 1.1)
    assert child["child_attempts"] == 2 and not run.notes


def test_quick_tour_runs_each_child_once_and_notes_a_drift(monkeypatch):
    # bare `fastnn bench` must stay inside its time limit: no second child, but the drift is said
    run, rec, calls = _drifting_child_run(monkeypatch, "quick")
    assert len(calls) == 1
    child = rec["results"][-1]
    assert child["fastnn_in_child_ms"] == pytest.approx(3.0) and child["child_attempts"] == 1
    assert len(run.notes) == 1 and "3 ms in the blas-best child vs 1 ms in the main process" in run.notes[0]


@needs_gemm
@pytest.mark.skipif(not hasattr(fastnn._C, "_probe_fma_gflops"), reason="probes not in this build")
def test_stale_fma_peak_is_reprobed(tmp_path, capsys):
    # A cached FMA peak below a measured GEMM rate was probed on a busy machine: the run re-measures it
    # once and reports every FMA-bound case against the new value (not at thousands of per cent).
    from fastnn.bench import machine

    key = machine.probe_key(1, tiny=True)
    stale = {"fma_gflops": 1e-3, "triad_gbs": 1.0, "adam_gbs": 1.0, "probe_floats": 1 << 20,
             "measured_at": "2000-01-01T00:00:00+0000"}
    (tmp_path / "probes.json").write_text(json.dumps({key: stale}))
    rc, out, _ = _run(capsys, "gemm", *TINY, "--threads", "1", "--baselines", "", "--json", str(tmp_path / "r.json"))
    assert rc == 0 and "was below a measured rate" in out and "re-probed now" in out
    fresh = json.loads((tmp_path / "probes.json").read_text())[key]["fma_gflops"]
    assert fresh > 1e-3
    doc = json.loads((tmp_path / "r.json").read_text())
    fma_cases = [c for c in doc["cases"] if c["limit_kind"] == "fma" and c.get("rate")]
    assert fma_cases and all(c["limit"] == pytest.approx(fresh) for c in fma_cases)
    assert out.count("re-probed now") == 1
