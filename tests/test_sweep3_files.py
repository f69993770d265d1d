"""Reliability sweep 3 (issue 21), files, NaN and kernels: NaN Q found whatever the
weight formula (weight_power=0 included) on every backend and path; the CUDA kernel's
a**-p when a**p underflows; clear messages for overflowing band weights and an
overflowing --coeffs bound; atomic writes of every file the CLI, the demo and the
study write; save_state keeps the umask and the mode of the file it replaces."""
import json
import os
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

from zp_ref.draw_table import DrawTable
from zp_ref.sampling import sample_indices
from zp_ref.sampling_from_q import sample_from_q
from zp_ref.weighting import _importance_weights_numpy, importance_weights

#: Large enough for several 2**16-entry chunks and the parallel kernels (auto: cpu).
N_CPU = 300_007
#: Under the CUDA simulator inputs stay small.
N_CUDA = 1500
NAN_AT = (5, 1200)
POWERS = (0.0, 0.5, 2.0)


def pool_with_nan(n):
    q = np.linspace(-1.0, 1.0, n) + 1e-3
    q[list(NAN_AT)] = np.nan
    return q


def cases():
    return [(p, b) for p in POWERS for b in ("numpy", "cpu", "auto", "cuda")]


def size_for(backend):
    return N_CUDA if backend == "cuda" else N_CPU


# ------------------------------------------------------------------ NaN, every backend
@pytest.mark.parametrize("p, backend", cases())
@pytest.mark.parametrize("normalize", [False, True])
def test_nan_raises_whatever_the_power(p, backend, normalize):
    """nan_policy="raise": two NaNs are refused with their count and first index for
    every power, weight_power=0 (NaN**0 == 1) included."""
    q = pool_with_nan(size_for(backend))
    with pytest.raises(ValueError, match=r"q holds 2 NaN value\(s\), first at index 5"):
        importance_weights(q, weight_power=p, normalize=normalize, backend=backend)


@pytest.mark.parametrize("p, backend", cases())
def test_nan_omitted_gets_weight_zero(p, backend):
    """nan_policy="omit": a NaN weighs exactly 0 and the rest equals the oracle on q with
    the NaNs replaced by +inf (rtol 1e-12; bit for bit for p in 0, 1/2, 2)."""
    q = pool_with_nan(size_for(backend))
    with pytest.warns(RuntimeWarning, match="2 NaN"):
        w = importance_weights(q, weight_power=p, normalize=False, nan_policy="omit",
                               backend=backend)
    expected = _importance_weights_numpy(np.where(np.isnan(q), np.inf, q), p, 1e-6, 100.0,
                                         1.0, normalize=False)
    assert w[list(NAN_AT)].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("p, backend", cases())
def test_sample_from_q_nan(p, backend):
    """sample_from_q refuses NaN under "raise"; under "omit" it never draws a NaN entry
    and equals sample_indices of the omitted weights on the same backend."""
    q = pool_with_nan(size_for(backend))
    n = 300 if backend == "cuda" else 50_000
    with pytest.raises(ValueError, match=r"q holds 2 NaN value\(s\), first at index 5"):
        sample_from_q(q, n, seed=3, weight_power=p, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        idx = sample_from_q(q, n, seed=3, weight_power=p, nan_policy="omit", backend=backend)
        w = importance_weights(q, weight_power=p, normalize=False, nan_policy="omit",
                               backend=backend)
    assert not np.isin(list(NAN_AT), idx).any()
    np.testing.assert_array_equal(idx, sample_indices(w, n, seed=3, backend=backend))


@pytest.mark.parametrize("backend", ["numpy", "cpu", "cuda"])
def test_draw_table_refuses_nan_weights_and_omits(backend):
    """DrawTable refuses NaN weights on every backend; fed the omitted weights of a
    weight_power=0 pool it never draws a NaN entry."""
    q = pool_with_nan(size_for(backend))
    w = np.ones_like(q)
    w[list(NAN_AT)] = np.nan
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\), first at index 5"):
        DrawTable(w, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w0 = importance_weights(q, weight_power=0.0, normalize=False, nan_policy="omit",
                                backend=backend)
    idx = DrawTable(w0, backend=backend).sample(2000, seed=1)
    assert not np.isin(list(NAN_AT), idx).any()


@pytest.mark.parametrize("p", POWERS)
def test_dask_draws_find_nan_whatever_the_power(p):
    """The Dask weights and draws (chunks read q on cpu) refuse NaN with
    weight_power=0 too, normalised or not; under "omit" the draws are the in-memory
    ones and skip the NaNs."""
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    from zp_ref.bridges import dask as db
    q = pool_with_nan(N_CPU)
    qd = da.from_array(q, chunks=(70_000,))
    with dask.config.set(scheduler="synchronous"):
        for normalize in (False, True):
            with pytest.raises(ValueError, match=r"q holds 2 NaN value\(s\), first at index 5"):
                db.sample_indices(db.importance_weights(qd, weight_power=p,
                                                        normalize=normalize), 100, seed=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            wd = db.importance_weights(qd, weight_power=p, normalize=False, nan_policy="omit")
            idx = db.sample_indices(wd, 50_000, seed=2)
            w = importance_weights(q, weight_power=p, normalize=False, nan_policy="omit",
                                   backend="cpu")
    assert not np.isin(list(NAN_AT), idx).any()
    np.testing.assert_array_equal(idx, sample_indices(w, 50_000, seed=2, backend="cpu"))


# ------------------------------------------------------------------ a**p underflowing
@pytest.mark.parametrize("p", [2.0, 1.0, 0.5, 3.0, 2.5])
def test_cuda_weights_when_a_power_underflows(p):
    """min_q_abs=1e-300: |q|**p underflows to 0, 1/0 is inf, capped at max_weight, on
    every backend (the CUDA simulator raised ZeroDivisionError): the same weights and
    the same draws as numpy, bit for bit."""
    q = np.array([0.0, 1e-200, -1e-170, 1e-3, 0.5, -2.0, np.inf, 1e300] * 40)
    kw = dict(weight_power=p, min_q_abs=1e-300, normalize=False)
    expected = importance_weights(q, backend="numpy", **kw)
    assert expected[0] == 100.0 and expected[6] == 0.0
    for backend in ("cpu", "cuda"):
        with warnings.catch_warnings():      # the simulator's NumPy scalars: 1e300**p
            warnings.simplefilter("ignore", RuntimeWarning)
            w = importance_weights(q, backend=backend, **kw)
            idx = sample_from_q(q, 200, seed=9, weight_power=p, min_q_abs=1e-300,
                                backend=backend)
        np.testing.assert_array_equal(w, expected)
        np.testing.assert_array_equal(idx, sample_indices(expected, 200, seed=9,
                                                          backend=backend))


# ------------------------------------------------------------------ clear messages
def test_stratified_importance_overflow_names_the_weight_settings():
    """Exact zeros with a tiny min_q_abs: each weight is the largest float, their sum
    overflows; the message names the settings (the user passed no weights)."""
    from zp_ref.bands import DEFAULT_EDGES, stratified_sample
    q = np.array([0.0, 0.0, 0.5, 1.0, 2.0] * 10)
    k = len(DEFAULT_EDGES) + 1
    for backend in ("numpy", "cpu"):
        with pytest.raises(ValueError) as info:
            stratified_sample(q, 10, mix=[1.0 / k] * k, seed=1, within="importance",
                              min_q_abs=1e-200, backend=backend)
        message = str(info.value)
        assert "rescale them" not in message
        for word in ("band 0", "min_q_abs=1e-200", "max_weight", "weight_power=2"):
            assert word in message, (word, message)


def test_band_curriculum_overflow_names_its_config_fields():
    """BandCurriculum(weight_power=60): 1e-6**-60 overflows; the message names
    BandCurriculum's fields weight_power and within, and nothing is half-updated."""
    from zp_ref.curriculum import BandCurriculum
    q = np.array([0.0, 0.0, 0.5, 1.0, 2.0] * 10)
    c = BandCurriculum(weight_power=60, backend="numpy")
    epoch = c.epochs_per_stage * (c.n_stages - 1)            # the near stage draws band 0
    with pytest.raises(ValueError) as info:
        c.sample(q, 10, epoch)
    message = str(info.value)
    assert "rescale them" not in message
    for word in ("BandCurriculum", "weight_power=60", "within='uniform'"):
        assert word in message, (word, message)
    assert c.n_calls == 0                                      # nothing half-updated


def test_refine_coeffs_whose_root_bound_overflows(capsys, tmp_path):
    """--coeffs=1,1e-308: the Cauchy bound 1e308 gives an interval of infinite width;
    one line that says so and points at --bounds, not at grid_bounds."""
    from zp_ref.apps.cli import main
    code = main(["refine", "--coeffs=1,1e-308", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--coeffs" in err and "overflows" in err and "--bounds" in err
    assert "grid_bounds" not in err


# ------------------------------------------------------------------ atomic writes
class HalfWriteFigure:
    """A figure whose savefig writes half an image and then fails like a full disk."""

    def __init__(self, error=None):
        self.error = error or OSError(28, "No space left on device")

    def savefig(self, f, **kwargs):
        f.write(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
        raise self.error


def test_atomic_savefig_failing_half_way_keeps_the_old_file(tmp_path):
    from zp_ref._atomic import WriteError, atomic_savefig
    path = tmp_path / "plot.png"
    path.write_bytes(b"old image")
    with pytest.raises(WriteError) as info:
        atomic_savefig(HalfWriteFigure(), path, dpi=50)
    assert path.read_bytes() == b"old image"
    assert os.listdir(tmp_path) == ["plot.png"]                 # no temporary file left
    assert info.value.errno == 28
    assert str(info.value) == (f"could not write {path}: No space left on device (the "
                               f"previous file is unchanged)")


def test_atomic_savefig_writes_the_image_matplotlib_writes(tmp_path):
    """The same bytes as fig.savefig(path) for png, format from the suffix."""
    from matplotlib.figure import Figure

    from zp_ref._atomic import atomic_savefig
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "direct.png", dpi=40, metadata={"Software": None})
    atomic_savefig(fig, tmp_path / "atomic.png", dpi=40, metadata={"Software": None})
    assert (tmp_path / "atomic.png").read_bytes() == (tmp_path / "direct.png").read_bytes()
    atomic_savefig(fig, tmp_path / "vector.svg")
    assert (tmp_path / "vector.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_atomic_write_json_encodes_before_touching_the_file(tmp_path):
    from zp_ref._atomic import atomic_write_json
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": [1, 2]})
    before = path.read_bytes()
    assert json.loads(before) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["x.json"]


def _fail_on(monkeypatch, name):
    """Make the atomic write of the file called ``name`` fail half way (the others
    proceed); returns the list of paths written through zp_ref._atomic."""
    from zp_ref import _atomic
    real = _atomic.atomic_write
    seen = []

    def write(path, fill):
        seen.append(os.path.basename(path))
        if os.path.basename(path) != name:
            return real(path, fill)

        def half(f):
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(path, half)
    monkeypatch.setattr(_atomic, "atomic_write", write)
    return seen


def test_refine_full_disk_keeps_old_files_and_prints_one_line(capsys, tmp_path, monkeypatch):
    """A write failing half way through tree.png: exit 1, one line on stderr naming the
    file, tree.png and poles.json byte-identical to the previous run's, no temp files."""
    from zp_ref.apps.cli import main
    argv = ["refine", "--coeffs=-2,0,1", "--out", str(tmp_path)]
    assert main(argv) == 0
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    assert set(before) == {"tree.png", "poles.json"}
    capsys.readouterr()
    seen = _fail_on(monkeypatch, "tree.png")
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1
    assert "could not write" in err and "tree.png" in err and "No space left" in err
    assert "Traceback" not in err and seen == ["tree.png"]
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before


def test_every_file_of_refine_and_demo_is_written_atomically(capsys, tmp_path, monkeypatch):
    """Every file the refine and demo commands leave in --out went through
    zp_ref._atomic.atomic_write; a demo plot failing half way keeps its old bytes."""
    from zp_ref.apps.cli import main
    seen = _fail_on(monkeypatch, "none")
    assert main(["refine", "--out", str(tmp_path / "r")]) == 0
    assert sorted(seen) == sorted(os.listdir(tmp_path / "r")) == ["poles.json", "tree.png"]
    demo = ["demo", "--epochs", "3", "--batches", "1", "--batch-size", "32",
            "--pool-size", "200", "--seed", "7", "--out", str(tmp_path / "d")]
    seen.clear()
    assert main(demo) == 0
    files = sorted(os.listdir(tmp_path / "d"))
    assert sorted(seen) == files and len(files) == 8
    before = (tmp_path / "d" / "q_histogram.png").read_bytes()
    capsys.readouterr()
    _fail_on(monkeypatch, "q_histogram.png")
    assert main(demo) == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "q_histogram.png" in err
    assert (tmp_path / "d" / "q_histogram.png").read_bytes() == before
    assert not [p for p in os.listdir(tmp_path / "d") if p.endswith(".tmp")]


SIGINT_CHILD = r"""
import sys, time
from matplotlib.figure import Figure
from zp_ref.apps.cli import main
real = Figure.savefig
def slow(self, f, **kw):
    if not hasattr(f, "write"):          # a path: written in place
        f = open(f, "wb")
    f.write(b"\x89PNG half an image")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
Figure.savefig = slow
sys.exit(main(["refine", "--coeffs=-2,0,1", "--out", sys.argv[1]]))
"""


def test_sigint_during_the_png_write_keeps_the_old_png(tmp_path):
    """zp-ref refine interrupted by SIGINT while tree.png is being written: exit 130,
    one line on stderr, the previous tree.png intact, no temporary file left."""
    import signal
    from zp_ref.apps.cli import main
    assert main(["refine", "--coeffs=-2,0,1", "--out", str(tmp_path)]) == 0
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", SIGINT_CHILD, str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:                       # the write has begun
            if line.strip() == "writing":
                break
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted" in err
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before


# ------------------------------------------------------------------ permissions
@pytest.fixture
def umask_077():
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def small_state():
    from zp_ref.schedule import DeltaSchedule
    return DeltaSchedule()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_save_state_new_file_follows_the_umask(tmp_path, umask_077):
    """umask 077: a new checkpoint (and a new plot) is 0600, not 0644."""
    from matplotlib.figure import Figure

    from zp_ref._atomic import atomic_savefig
    from zp_ref.state import save_state
    assert mode(save_state(tmp_path / "ckpt.json", small_state())) == 0o600
    assert mode(atomic_savefig(Figure(figsize=(1, 1)), tmp_path / "p.png")) == 0o600


def test_save_state_new_file_with_umask_022(tmp_path):
    from zp_ref.state import save_state
    old = os.umask(0o022)
    try:
        assert mode(save_state(tmp_path / "ckpt.json", small_state())) == 0o644
    finally:
        os.umask(old)


@pytest.mark.parametrize("existing", [0o600, 0o640, 0o444])
def test_save_state_keeps_the_mode_of_the_file_it_replaces(tmp_path, existing):
    """An existing checkpoint keeps its mode whatever the umask (0600 stays 0600)."""
    from zp_ref.state import load_state, save_state
    path = tmp_path / "ckpt.json"
    save_state(path, small_state())
    os.chmod(path, existing)
    old = os.umask(0o022)
    try:
        save_state(path, small_state())
    finally:
        os.umask(old)
    assert mode(path) == existing
    assert load_state(path).__class__.__name__ == "DeltaSchedule"
