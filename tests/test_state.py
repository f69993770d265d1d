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
def split(path):
    """(header dict, payload bytes) of a document file."""
    head, _, payload = pathlib.Path(path).read_bytes().partition(b"\n")
    return json.loads(head), payload


def test_document_layout_and_hashes(tmp_path):
    path = tmp_path / "doc.json"
    a = np.arange(3.0)
    s = np.array(["ab", "c"])
    st.write_document(path, "test/1", {"a": a, "b": {"c": 1}, "s": s})
    assert os.listdir(tmp_path) == ["doc.json"]                     # one file, no temp left
    header, payload = split(path)
    assert list(header) == ["format", "schema", "arrays", "payload_sha256", "body", "sha256"]
    assert header["format"] == st.DOCUMENT_FORMAT == "zp_ref.document/2"
    assert header["schema"] == "test/1"
    assert header["body"] == {"a": {"__ndarray__": "a0"}, "b": {"c": 1},
                              "s": {"__ndarray__": "a1"}}
    assert header["arrays"] == {"a0": {"dtype": "<f8", "shape": [3], "offset": 0, "nbytes": 24},
                                "a1": {"dtype": "<U2", "shape": [2], "offset": 24, "nbytes": 16}}
    assert payload == a.tobytes() + s.tobytes()
    assert header["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    rest = dict(header)
    del rest["sha256"]
    assert header["sha256"] == hashlib.sha256(st.canonical_json(rest)).hexdigest()
    back = st.read_document(path, "test/1")
    assert_same(back, {"a": a, "b": {"c": 1}, "s": s})


def test_document_without_arrays_is_plain_json(tmp_path):
    st.write_document(tmp_path / "d.json", "test/1", {"x": [1, 2]})
    assert os.listdir(tmp_path) == ["d.json"]
    assert json.loads((tmp_path / "d.json").read_text())["body"] == {"x": [1, 2]}
    assert st.read_document(tmp_path / "d.json", "test/1") == {"x": [1, 2]}


def _rewrite(path, header=None, body=None, payload=None):
    """Edit a document and recompute its hashes, as a crafted (hash-valid) file."""
    doc, old_payload = split(path)
    payload = old_payload if payload is None else payload
    if header:
        header(doc)
    if body:
        body(doc["body"])
    doc["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    doc.pop("sha256")
    doc["sha256"] = hashlib.sha256(st.canonical_json(doc)).hexdigest()
    pathlib.Path(path).write_bytes(json.dumps(doc).encode() + b"\n" + payload)


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
    header, _ = split(path)
    assert header["schema"] == st.STATE_SCHEMA == "zp_ref.state/1"
    assert header["body"]["class"] == "zp_ref.diagnostics.DiagnosticMonitor"


def test_truncated_header_refused(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\n") // 2])
    with pytest.raises(ValueError, match="truncated"):
        st.load_state(path)


def test_truncated_arrays_refused(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        st.load_state(path)


def test_edited_header_refused(saved):
    _, path = saved
    data = path.read_bytes()
    assert b'"n_updates": 6' in data
    path.write_bytes(data.replace(b'"n_updates": 6', b'"n_updates": 7'))
    with pytest.raises(ValueError, match="modified"):
        st.load_state(path)


def test_edited_arrays_refused(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        st.load_state(path)


def test_other_schema_version_refused(saved):
    _, path = saved
    _rewrite(path, header=lambda d: d.update(schema="zp_ref.state/2"))
    with pytest.raises(ValueError, match=r"zp_ref\.state/2.*zp_ref\.state/1"):
        st.load_state(path)


def test_other_format_refused(saved):
    _, path = saved
    _rewrite(path, header=lambda d: d.update(format="zp_ref.document/3"))
    with pytest.raises(ValueError, match=r"format 'zp_ref\.document/3'"):
        st.load_state(path)


@pytest.mark.parametrize("name", ["builtins.dict", "os.system", "zp_ref.notamodule.Evil"])
def test_class_outside_registry_refused_without_import(saved, name):
    _, path = saved
    _rewrite(path, body=lambda b: b.update({"class": name}))
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


def test_bad_value_leaves_existing_file_untouched(saved, tmp_path):
    _, path = saved
    before = path.read_bytes()
    with pytest.raises(TypeError):
        st.write_document(path, st.STATE_SCHEMA, {"x": np.array([object()])})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["monitor.json"]


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
    with pytest.raises(TypeError, match="body must be a dict"):
        st.write_document(tmp_path / "x.json", "t/1", [1])
    with pytest.raises(TypeError, match="data must be bytes"):
        st.atomic_write_bytes(tmp_path / "x.json", "text")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------- sweep 2: files
def sampler_state(calls, pool=64):
    """An ImportanceSampler after ``calls`` batches of a ``pool``-sized pool (its draw
    counts are an array, so its file has a payload)."""
    from zp_ref.sampling import ImportanceSampler
    s = ImportanceSampler(seed=5, backend="numpy")
    x = np.linspace(-1.0, 1.0, pool)
    for _ in range(calls):
        s.sample_batch(x, x - 0.3, 16)
    return s


@pytest.mark.parametrize("names", [("ckpt_lr0.01", "ckpt_lr0.05"), ("ckpt.json", "ckpt.bak"),
                                   ("ckpt", "ckpt.json", "ckpt.npz.json")])
def test_names_differing_in_a_suffix_never_share_a_file(tmp_path, names):
    paths = [st.save_state(tmp_path / name, sampler_state(i + 1)) for i, name in enumerate(names)]
    assert sorted(os.listdir(tmp_path)) == sorted(names)              # one file per state
    assert [st.load_state(p).calls for p in paths] == list(range(1, len(names) + 1))


def test_folder_as_target_refused_before_writing(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    for target in (folder, tmp_path / "link"):
        if target.name == "link":
            target.symlink_to(folder)
        with pytest.raises(ValueError, match="is a folder"):
            st.save_state(target, sampler_state(1))
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "link"]
    assert os.listdir(folder) == ["keep.txt"]


def test_symlinked_state_file_loads_and_saves_through_the_link(tmp_path):
    (tmp_path / "runs").mkdir()
    real = st.save_state(tmp_path / "runs" / "ckpt_3.json", sampler_state(3))
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    assert st.load_state(link).calls == 3
    st.save_state(link, sampler_state(4))
    assert link.is_symlink() and os.readlink(link) == str(real)       # the link stays
    assert st.load_state(real).calls == 4 and st.load_state(link).calls == 4
    assert sorted(os.listdir(tmp_path / "runs")) == ["ckpt_3.json"]


def test_fifo_refused_without_blocking(tmp_path):
    import threading
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    outcome = []

    def load():
        try:
            st.load_state(fifo)
        except ValueError as exc:
            outcome.append(str(exc))
    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "load_state blocked on a FIFO"
    assert len(outcome) == 1 and "is a FIFO, not a regular file" in outcome[0]
    with pytest.raises(ValueError, match="not a regular file"):
        st.save_state(fifo, sampler_state(1))
    with pytest.raises(ValueError, match="is a folder, not a regular file"):
        st.load_state(tmp_path)


def test_deep_json_is_a_value_error_not_recursion_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ValueError, match=r"nesting depth 200000 exceeds 100"):
        st.load_state(path)
    st.save_state(path, sampler_state(1))                             # hash-valid but deep
    deep = []
    for _ in range(st.MAX_JSON_DEPTH):
        deep = [deep]
    _rewrite(path, body=lambda b: b.update(state=deep))
    with pytest.raises(ValueError, match="nesting depth"):
        st.load_state(path)
    with pytest.raises(ValueError, match="nests 10[0-9] levels deep"):  # refused on writing too
        st.write_document(tmp_path / "w.json", "t/1", {"x": deep})
    assert not (tmp_path / "w.json").exists()


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1e999"])
def test_non_strict_json_numbers_refused(saved, literal):
    _, path = saved
    data = path.read_bytes()
    assert data.count(b'"n_updates": 6') == 1
    path.write_bytes(data.replace(b'"n_updates": 6', b'"n_updates": ' + literal))
    with pytest.raises(ValueError, match="not allowed|overflows float64"):
        st.load_state(path)


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.update(shape=[10**10], nbytes=8 * 10**10),
     "declare 80000000000 bytes, the file holds 512"),
    (lambda a: a.update(shape=[2**40, 2**40]), "needs"),
    (lambda a: a.update(dtype="|O"), "dtype"),
    (lambda a: a.update(dtype="<U0", shape=[10**18], nbytes=0), "dtype"),
    (lambda a: a.update(shape=[-1]), "shape"),
    (lambda a: a.update(offset=8), "starts at byte 8"),
    (lambda a: a.update(extra=1), "exactly dtype, shape, offset, nbytes"),
])
def test_crafted_array_headers_refused_before_allocating(tmp_path, edit, message):
    import tracemalloc
    path = st.save_state(tmp_path / "s.json", sampler_state(1))
    _rewrite(path, header=lambda h: edit(h["arrays"]["a0"]))
    assert path.stat().st_size < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            st.load_state(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000                                           # bytes, not gigabytes


# ----------------------------------------------------------------- sweep 2: older layout
def write_legacy(path, schema, body, compress=False):
    """A document of the older two-file layout (JSON + ``<stem>.npz``), as zp_ref wrote
    it before ``zp_ref.document/2``."""
    import io
    arrays = {}
    doc = {"schema": schema, **st.to_jsonable(body, arrays, "body"), "arrays": None}
    if arrays:
        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        data = buf.getvalue()
        npz = pathlib.Path(path).with_suffix(".npz")
        npz.write_bytes(data)
        doc["arrays"] = {"file": npz.name, "sha256": hashlib.sha256(data).hexdigest(),
                         "keys": sorted(arrays)}
    doc["sha256"] = hashlib.sha256(st.canonical_json(doc)).hexdigest()
    pathlib.Path(path).write_text(json.dumps(doc))


def test_older_two_file_layout_still_loads(tmp_path):
    s = sampler_state(2)
    write_legacy(tmp_path / "old.json", st.STATE_SCHEMA,
                 {"class": st.class_name(s), "state": s.state_dict()})
    assert sorted(os.listdir(tmp_path)) == ["old.json", "old.npz"]
    back = st.load_state(tmp_path / "old.json")
    assert_same(_normal(back.state_dict()), _normal(s.state_dict()))
    (tmp_path / "old.npz").unlink()
    with pytest.raises(ValueError, match="missing"):
        st.load_state(tmp_path / "old.json")


def test_older_layout_npz_that_expands_is_refused(tmp_path):
    """A ~20 kB .npz whose member inflates to 20 MB (a zip bomb in small) is refused
    from its zip directory, before anything is decompressed."""
    import tracemalloc
    write_legacy(tmp_path / "bomb.json", "t/1", {"x": np.zeros(2_500_000)}, compress=True)
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="compressed or oversized members"):
            st.read_document(tmp_path / "bomb.json", "t/1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


# ----------------------------------------------------------------- sweep 2: crashes
CRASH_CHILD = r"""
import os, signal, sys
import numpy as np
from zp_ref import state as st
from zp_ref.sampling import ImportanceSampler
path, step = sys.argv[1], sys.argv[2]
s = ImportanceSampler(seed=5, backend="numpy")
x = np.linspace(-1.0, 1.0, 64)
for _ in range(2):
    s.sample_batch(x, x - 0.3, 16)
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
real = {name: getattr(os, name) for name in ("fsync", "chmod", "replace", "fdopen")}

class HalfWriter:
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def write(self, data):
        self.f.write(data[: len(data) // 2]); self.f.flush(); die()

if step == "mid-write":
    os.fdopen = lambda fd, mode: HalfWriter(real["fdopen"](fd, mode))
elif step == "after-replace":
    os.replace = lambda a, b: (real["replace"](a, b), die())
elif step == "after-folder-fsync":
    from zp_ref import _atomic
    _atomic._fsync_folder = lambda folder: die()
else:
    setattr(os, step.split("-")[1], die)
st.save_state(path, s)
print("survived")
"""


@pytest.mark.parametrize("step, survivor", [
    ("before-fsync", 1), ("mid-write", 1), ("before-chmod", 1), ("before-replace", 1),
    ("after-replace", 2), ("after-folder-fsync", 2)])
def test_kill_at_any_step_leaves_the_old_or_the_new_state(tmp_path, step, survivor):
    """A SIGKILL at each step of save_state (the writer dies; no cleanup runs): the
    path loads the old state before the rename and the new one from the rename on."""
    import subprocess
    path = st.save_state(tmp_path / "ckpt.json", sampler_state(1))
    child = subprocess.run([sys.executable, "-c", CRASH_CHILD, str(path), step],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -9 and "survived" not in child.stdout, child.stderr
    assert st.load_state(path).calls == survivor
    leftovers = [p for p in os.listdir(tmp_path) if p != "ckpt.json"]
    assert all(p.startswith(".ckpt.json.") and p.endswith(".tmp") for p in leftovers)


WRITER_CHILD = r"""
import sys
import numpy as np
from zp_ref.state import save_state
from zp_ref.sampling import ImportanceSampler
path, tag, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = ImportanceSampler(seed=tag, backend="numpy")
x = np.linspace(-1.0, 1.0, 200_000)
s.sample_batch(x, x - 0.3, 16)          # 1.6 MB of draw counts: a slow write
for _ in range(trials):
    save_state(path, s)
"""


def test_concurrent_writers_always_leave_a_loadable_file(tmp_path):
    """Three processes save 15 times each to one path while this one keeps loading it:
    every load succeeds and gives one writer's whole state; all writers exit 0."""
    import subprocess
    path = st.save_state(tmp_path / "ckpt.json", sampler_state(1))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER_CHILD, str(path), str(tag), "15"],
                                stderr=subprocess.PIPE, text=True) for tag in (11, 12, 13)]
    seen = set()
    while any(w.poll() is None for w in writers):
        seen.add(st.load_state(path).seed)
    assert [w.wait(timeout=300) for w in writers] == [0, 0, 0], [w.stderr.read() for w in writers]
    final = st.load_state(path)
    assert final.seed in (11, 12, 13) and final.calls == 1 and final.sample_counts.size == 200_000
    assert seen <= {5, 11, 12, 13} and seen & {11, 12, 13}
    assert os.listdir(tmp_path) == ["ckpt.json"]                     # no temp files left


# ----------------------------------------------------------------- sweep 2: crafted states
def test_importance_counts_that_overflow_int64_refused(tmp_path):
    path = st.save_state(tmp_path / "s.json", sampler_state(1, pool=4))

    def overflow(body):
        body["state"]["total_samples"] = 0                            # 4 * 2**62 wraps to 0
    _rewrite(path, body=overflow, payload=np.full(4, 2**62, np.int64).tobytes())
    with pytest.raises(ValueError, match="summing exactly"):
        st.load_state(path)


def _leaves(obj, where=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, where + (k,))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj[:3]):
            yield from _leaves(v, where + (i,))
    else:
        yield where


def test_crafted_monitor_states_fail_at_load_or_never(tmp_path):
    """Every leaf of a saved monitor replaced by a wrong value (hash-valid): load_state
    refuses it with ValueError, or the monitor then updates, summarises and exports."""
    m = small_monitor(tmp_path)
    path = tmp_path / "m.json"
    base = _normal(m.state_dict())
    where = list(_leaves(base))
    assert len(where) > 100
    bad_values = ["x", -1, [1, "a"], {}, 2.5]
    escaped = []
    for leaf in where:
        for bad in bad_values:
            state = _normal(m.state_dict())
            node = state
            for key in leaf[:-1]:
                node = node[key]
            node[leaf[-1]] = bad
            try:
                st.write_document(path, st.STATE_SCHEMA, {"class": st.class_name(m),
                                                          "state": state})
                loaded = st.load_state(path)
            except (ValueError, TypeError):
                continue
            try:
                loaded.update(7, {"loss_train": 0.5}, q_values=np.array([0.3, 2.0]),
                              gradients={"w": np.ones(2)}, tags=[0, 1])
                loaded.update_batch(np.array([0.1]), weights=np.array([1.0]),
                                    indices=np.array([0]), tags=[0])
                loaded.get_summary()
                loaded.export_diagnostics(8)
            except Exception as exc:                                  # noqa: BLE001
                escaped.append((leaf, bad, repr(exc)[:80]))
    assert escaped == []


def test_foreign_exceptions_of_a_state_become_value_errors(tmp_path, monkeypatch):
    from zp_ref.schedule import DeltaSchedule
    path = st.save_state(tmp_path / "d.json", DeltaSchedule())
    for exc in (KeyError("k"), IndexError("i"), OverflowError("o"), RecursionError("r")):
        def crafted(state, exc=exc):
            raise exc
        monkeypatch.setattr(DeltaSchedule, "from_state_dict", classmethod(
            lambda cls, state, exc=exc: crafted(state)))
        with pytest.raises(ValueError, match=f"malformed \\({type(exc).__name__}"):
            st.load_state(path)


def test_q_is_only_for_samplers_with_a_tree(tmp_path):
    from zp_ref.schedule import DeltaSchedule
    path = st.save_state(tmp_path / "d.json", DeltaSchedule())
    with pytest.raises(TypeError, match="q: a zp_ref.schedule.DeltaSchedule state takes no q"):
        st.load_state(path, q=lambda x: x[:, 0])


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


def test_one_state_protocol_for_every_class():
    """Every state class writes ``version`` == state.STATE_VERSION and refuses another
    version, a non-dict and an unexpected key with the one error text of check_state."""
    from zp_ref.refinement import ActiveSampler
    objs = [zp_ref.ImportanceSampler(seed=1), zp_ref.CurriculumScheduler(),
            zp_ref.BandCurriculum(), zp_ref.DeltaSchedule(), DiagnosticMonitor(),
            zp_ref.IntegratedSampler("uniform"),
            ActiveSampler(q=zp_ref.Polynomial([-0.1, 1.0]), backend="numpy")]
    for obj in objs:
        owner = type(obj).__name__
        state = obj.state_dict()
        assert state["version"] == st.STATE_VERSION, owner
        with pytest.raises(ValueError, match=f"^{owner} state has version 2; this zp_ref "
                                             f"reads version 1$"):
            obj.load_state_dict({**state, "version": 2})
        with pytest.raises(ValueError, match=rf"^{owner} state: missing keys \[\], "
                                             rf"unexpected keys \['surplus'\]$"):
            obj.load_state_dict({**state, "surplus": 1})
        with pytest.raises(TypeError, match=f"^{owner} state must be a dict"):
            type(obj).from_state_dict([1])


def test_active_sampler_state_with_the_removed_config_fields_loads():
    """States written while ActiveSamplerConfig had refinement_ratio and
    min_points_per_region (no effect) load with them dropped, to the same tree."""
    from zp_ref.refinement import ActiveSampler
    s = ActiveSampler(zp_ref.ActiveSamplerConfig(initial_grid_size=8),
                      q=zp_ref.Polynomial([-0.1, 1.0]), backend="numpy")
    s.refine()
    state = s.state_dict()
    old = {**state, "config": {**state["config"], "refinement_ratio": 3,
                               "min_points_per_region": 5}}
    back = ActiveSampler.from_state_dict(old)
    assert back.config == s.config
    assert np.array_equal(back.get_current_grid(), s.get_current_grid())
