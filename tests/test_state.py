"""zp_ref.state: JSON + .npz documents, atomic writes, refusal of damaged files, the
state protocol round trip of every stateful class, and no pickle in the package."""
import ast
import hashlib
import json
import os
import pathlib
import sys

import numpy as np
import pytest

import zp_ref
from zp_ref import state as st
from zp_ref.diagnostics import DiagnosticConfig, DiagnosticMonitor


def assert_same(a, b, where="state"):
    """Exact recursive equality; arrays must agree in dtype, shape and bits."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def small_monitor(tmp_path):
    m = DiagnosticMonitor(DiagnosticConfig(export_path=str(tmp_path / "exports"),
                                           auto_export=False, max_history_length=4,
                                           monitor_q_min=False))
    q = np.array([3e-6, -2e-4, 0.05, -0.7, 4.0])
    for epoch in range(6):
        m.update(epoch, {"loss_train": 1.0 / (epoch + 1), "coverage_train": 0.9},
                 p_values=np.arange(5.0) + epoch, q_values=q * (epoch + 1),
                 gradients={"w": np.linspace(0, 1, 5)}, tags=[0, 0, 1, 3, 2])
        m.update_batch(q, weights=np.array([1.0, 2, 3, 4, 5]), indices=np.array([0, 1, 1, 2, 4]))
    return m


# ----------------------------------------------------------------- encoding
def test_jsonable_round_trip_is_exact():
    obj = {"f": 0.1, "nan": float("nan"), "inf": float("inf"), "ninf": -np.inf,
           "i": 2**64 - 1, "np_i": np.int32(-7), "np_f": np.float32(0.5), "b": np.bool_(True),
           "t": (1, (2.0, "x")), "l": [None, "s", [1]], "intkeys": {3: "a", (1, 2): "b"},
           "marker": {"__ndarray__": "not an array"},
           "a": np.arange(6, dtype=np.int64).reshape(2, 3), "u": np.array([2**64 - 1], np.uint64),
           "z": np.array([True, False]), "e": np.zeros(0), "s": np.array(["ab", "c"])}
    arrays = {}
    enc = st.to_jsonable(obj, arrays)
    text = json.dumps(enc, allow_nan=False)                  # strict JSON
    dec = st.from_jsonable(json.loads(text), arrays)
    expected = dict(obj, np_i=-7, np_f=0.5, b=True)
    assert_same(dec, expected)
    assert sorted(arrays) == ["a0", "a1", "a2", "a3", "a4"]


@pytest.mark.parametrize("bad", [np.array([object()]), {1, 2}, b"bytes", 1 + 2j])
def test_unstorable_values_raise_type_error_naming_the_position(bad):
    with pytest.raises(TypeError, match=r"state\['x'\]\[1\]"):
        st.to_jsonable({"x": [0, bad]}, {})


# ----------------------------------------------------------------- documents
def test_document_layout_and_hashes(tmp_path):
    path = tmp_path / "doc.json"
    st.write_document(path, "test/1", {"a": np.arange(3.0), "b": {"c": 1}})
    assert sorted(os.listdir(tmp_path)) == ["doc.json", "doc.npz"]   # no temp files left
    doc = json.loads(path.read_text())
    assert doc["schema"] == "test/1"
    assert doc["a"] == {"__ndarray__": "a0"} and doc["b"] == {"c": 1}
    npz = (tmp_path / "doc.npz").read_bytes()
    assert doc["arrays"] == {"file": "doc.npz", "keys": ["a0"],
                             "sha256": hashlib.sha256(npz).hexdigest()}
    body = dict(doc)
    del body["sha256"]
    assert doc["sha256"] == hashlib.sha256(st.canonical_json(body)).hexdigest()
    back = st.read_document(path, "test/1")
    assert_same(back, {"a": np.arange(3.0), "b": {"c": 1}})


def test_document_without_arrays_writes_no_npz(tmp_path):
    st.write_document(tmp_path / "d.json", "test/1", {"x": [1, 2]})
    assert os.listdir(tmp_path) == ["d.json"]
    assert st.read_document(tmp_path / "d.json", "test/1") == {"x": [1, 2]}


def _rewrite(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    doc.pop("sha256")
    doc["sha256"] = hashlib.sha256(st.canonical_json(doc)).hexdigest()
    path.write_text(json.dumps(doc))


@pytest.fixture
def saved(tmp_path):
    m = small_monitor(tmp_path)
    path = st.save_state(tmp_path / "monitor.json", m)
    return m, path


def test_save_load_monitor_round_trip(saved):
    m, path = saved
    back = st.load_state(path)
    assert type(back) is DiagnosticMonitor
    assert_same(back.state_dict(), m.state_dict())
    assert st.load_state(path, cls=DiagnosticMonitor).get_summary() == m.get_summary()
    doc = json.loads(path.read_text())
    assert doc["schema"] == st.STATE_SCHEMA == "zp_ref.state/1"
    assert doc["class"] == "zp_ref.diagnostics.DiagnosticMonitor"


def test_truncated_json_refused(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        st.load_state(path)


def test_truncated_npz_refused(saved):
    _, path = saved
    npz = path.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:-100])
    with pytest.raises(ValueError, match="sha256"):
        st.load_state(path)


def test_edited_json_refused(saved):
    _, path = saved
    text = path.read_text()
    assert '"n_updates": 6' in text
    path.write_text(text.replace('"n_updates": 6', '"n_updates": 7'))
    with pytest.raises(ValueError, match="modified"):
        st.load_state(path)


def test_edited_npz_refused(saved):
    _, path = saved
    npz = path.with_suffix(".npz")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["a0"] = arrays["a0"] + 1.0
    np.savez(npz, **arrays)
    with pytest.raises(ValueError, match="sha256"):
        st.load_state(path)


def test_missing_npz_refused(saved):
    _, path = saved
    path.with_suffix(".npz").unlink()
    with pytest.raises(ValueError, match="missing"):
        st.load_state(path)


def test_other_schema_version_refused(saved):
    _, path = saved
    _rewrite(path, lambda d: d.update(schema="zp_ref.state/2"))
    with pytest.raises(ValueError, match=r"zp_ref\.state/2.*zp_ref\.state/1"):
        st.load_state(path)


@pytest.mark.parametrize("name", ["builtins.dict", "os.system", "zp_ref.notamodule.Evil"])
def test_class_outside_registry_refused_without_import(saved, name):
    _, path = saved
    _rewrite(path, lambda d: d.update({"class": name}))
    with pytest.raises(ValueError, match="not a zp_ref state class"):
        st.load_state(path)
    assert "zp_ref.notamodule" not in sys.modules


def test_expected_class_mismatch_refused(saved):
    from zp_ref.schedule import DeltaSchedule
    _, path = saved
    with pytest.raises(ValueError, match="expected a zp_ref.schedule.DeltaSchedule"):
        st.load_state(path, cls=DeltaSchedule)


def test_unregistered_object_refused_before_writing(tmp_path):
    class Thing:
        def state_dict(self):
            return {}
    with pytest.raises(TypeError, match="cannot save"):
        st.save_state(tmp_path / "t.json", Thing())
    assert os.listdir(tmp_path) == []


def test_bad_value_leaves_existing_files_untouched(saved, tmp_path):
    _, path = saved
    before = {p: p.read_bytes() for p in (path, path.with_suffix(".npz"))}
    with pytest.raises(TypeError):
        st.write_document(path, st.STATE_SCHEMA, {"x": np.array([object()])})
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["monitor.json", "monitor.npz"]


def test_crash_during_replace_keeps_old_file_and_removes_temp(saved, tmp_path, monkeypatch):
    _, path = saved
    old = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(st.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        st.atomic_write_bytes(path, b"new content")
    assert path.read_bytes() == old
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_path_checks(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz"):
        st.write_document(tmp_path / "x.npz", "t/1", {})
    with pytest.raises(ValueError, match="does not exist"):
        st.write_document(tmp_path / "nope" / "x.json", "t/1", {})
    with pytest.raises(ValueError, match=r"reserved keys \['arrays'\]"):
        st.write_document(tmp_path / "x.json", "t/1", {"arrays": 1})
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- every stateful class
def _objects():
    """(name, build, advance) for every registered class: ``advance(obj)`` returns what
    the object produces next, so a loaded copy must produce the same."""
    from zp_ref import problems
    from zp_ref.curriculum import BandCurriculum, CurriculumConfig, CurriculumScheduler
    from zp_ref.integrated import create_integrated_sampler
    from zp_ref.refinement import ActiveSampler, ActiveSamplerConfig
    from zp_ref.sampling import ImportanceSampler
    from zp_ref.schedule import DeltaSchedule

    x = np.linspace(-1.0, 1.0, 200)
    q = x - 0.3
    prob = problems.get("simple_roots_1d")

    def imp_next(s):
        return [s.sample_batch(x, q, 16)[1] for _ in range(2)]

    def sched_build():
        s = CurriculumScheduler(CurriculumConfig(n_stages=3, stage_duration=2, warmup_epochs=0))
        for e in range(3):
            s.update(e, 0.9, 0.1)
        return s

    def sched_next(s):
        return [s.update(e, 0.95, 0.05) for e in range(3, 6)] + [s.get_sample_weights(x, q)]

    def band_build():
        c = BandCurriculum(epochs_per_stage=2, seed=4, backend="numpy")
        for e in range(3):
            c.sample(q, 12, e)
            c.update(e)
        return c

    def band_next(c):
        return [c.sample(q, 12, e)[0] for e in (3, 4, 5)]

    def active_build():
        a = ActiveSampler(ActiveSamplerConfig(initial_grid_size=8, grid_bounds=prob.bounds,
                                              max_refinement_level=6), q=prob.q, backend="numpy")
        return a.refine(max_rounds=2)

    def active_next(a):
        a.refine(max_rounds=1)
        return [a.sample(32, seed=1), a.n_evaluations, a.leaves()["lo"]]

    def integ_build():
        s = create_integrated_sampler("hybrid", q=prob.q, grid_bounds=prob.bounds, seed=5,
                                      backend="numpy", auto_export=False, adapt_frequency=1)
        s.sample_batch(x, q, 8, epoch=0)
        return s

    def integ_next(s):
        return [s.sample_batch(x, q, 8, epoch=e)[1]["indices"] for e in (1, 1, 2)]

    return [
        ("ImportanceSampler", lambda: _advanced(ImportanceSampler(seed=3, backend="numpy"),
                                                imp_next), imp_next),
        ("DeltaSchedule", lambda: DeltaSchedule(warmup_epochs=2, adaptive_delta=True),
         lambda s: [s.get_delta(e, q_min=1e-3) for e in range(6)]),
        ("CurriculumScheduler", sched_build, sched_next),
        ("BandCurriculum", band_build, band_next),
        ("ActiveSampler", active_build, active_next),
        ("IntegratedSampler", integ_build, integ_next),
    ]


def _advanced(obj, step):
    step(obj)
    return obj


@pytest.mark.parametrize("index", range(6))
def test_state_round_trip_continues_identically(tmp_path, index):
    name, build, advance = _objects()[index]
    obj = build()
    path = st.save_state(tmp_path / f"{name}.json", obj)
    loaded = st.load_state(path)
    assert type(loaded) is type(obj)
    assert st.class_name(obj) in st.STATE_CLASSES
    assert_same(_normal(loaded.state_dict()), _normal(obj.state_dict()))
    assert_same(_normal(advance(loaded)), _normal(advance(obj)))


def _normal(x):
    """Through the JSON encoding and back, so tuple/list spellings compare equal."""
    arrays = {}
    return st.from_jsonable(json.loads(json.dumps(st.to_jsonable(x, arrays))), arrays)


# ----------------------------------------------------------------- no pickle
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "joblib",
                  "marshal"}


def test_no_pickle_anywhere_in_the_package():
    root = pathlib.Path(list(zp_ref.__path__)[0])
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 8
    offences = []
    for f in files:
        tree = ast.parse(f.read_text(), filename=str(f))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offences += [f"{f.name}:{node.lineno} imports {n}" for n in names
                         if n.split(".")[0] in BANNED_MODULES]
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
                    isinstance(node.value, ast.Constant) and node.value.value is False):
                offences.append(f"{f.name}:{node.value.lineno} allow_pickle not False")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("load", "save") and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                offences.append(f"{f.name}:{node.lineno} torch.{node.func.attr} pickles")
    assert offences == []
