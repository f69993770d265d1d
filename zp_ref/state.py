"""Crash-safe, versioned persistence without pickle: JSON documents plus a ``.npz``
beside them for the NumPy arrays.

A *document* is a JSON object ``{"schema": ..., <body>, "arrays": ..., "sha256": ...}``.
Arrays inside the body are replaced by ``{"__ndarray__": "a<k>"}`` and stored under key
``a<k>`` in ``<stem>.npz``; ``"arrays"`` names that file and records its SHA-256;
``"sha256"`` is the SHA-256 of the canonical JSON of everything else, so an edit of
either file is detected. Both files are written atomically (temp file in the same
folder, fsync, ``os.replace``), the ``.npz`` first.

``save_state(path, obj)`` / ``load_state(path)`` store any object of the state protocol
(``state_dict()``, ``load_state_dict(state)``, classmethod ``from_state_dict(state)``)
whose class is in the registry below; classes are resolved by name from that fixed list,
never from a module named in a file. See docs/diagnostics.md, "State files".
"""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

STATE_SCHEMA = "zp_ref.state/1"

#: Classes ``load_state`` may build: qualified name -> (module, attribute), imported
#: lazily and only from this table.
STATE_CLASSES = {
    f"zp_ref.{mod}.{cls}": (f"zp_ref.{mod}", cls)
    for mod, cls in [
        ("sampling", "ImportanceSampler"),
        ("refinement", "ActiveSampler"),
        ("schedule", "DeltaSchedule"),
        ("curriculum", "CurriculumScheduler"),
        ("curriculum", "BandCurriculum"),
        ("diagnostics", "DiagnosticMonitor"),
        ("integrated", "IntegratedSampler"),
    ]
}

_ARRAY, _FLOAT, _TUPLE, _ITEMS = "__ndarray__", "__float__", "__tuple__", "__items__"
_MARKERS = (_ARRAY, _FLOAT, _TUPLE, _ITEMS)


# ----------------------------------------------------------------- JSON encoding
def to_jsonable(obj, arrays: dict, path: str = "state"):
    """Encode ``obj`` (dicts, lists, tuples, str, bool, None, ints, floats, NumPy
    scalars and arrays) as plain JSON values.

    Arrays are moved into ``arrays`` (key ``a<k>``) and replaced by
    ``{"__ndarray__": key}``; non-finite floats become ``{"__float__": "nan"|"inf"|"-inf"}``,
    tuples ``{"__tuple__": [...]}``, dicts with non-string keys (or a key that looks
    like a marker) ``{"__items__": [[k, v], ...]}``. ``path`` names the position in
    error messages.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else {_FLOAT: repr(x)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "OV":
            raise TypeError(f"{path}: arrays of dtype {obj.dtype} cannot be stored without "
                            f"pickle; use numeric, boolean or string arrays")
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {_ARRAY: key}
    if isinstance(obj, tuple):
        return {_TUPLE: [to_jsonable(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [to_jsonable(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) for k in obj) and not (len(obj) == 1 and
                                                              next(iter(obj)) in _MARKERS)
        if plain:
            return {k: to_jsonable(v, arrays, f"{path}[{k!r}]") for k, v in obj.items()}
        return {_ITEMS: [[to_jsonable(k, arrays, f"{path}.key"),
                          to_jsonable(v, arrays, f"{path}[{k!r}]")] for k, v in obj.items()]}
    raise TypeError(f"{path}: cannot store a value of type {type(obj).__name__} ({obj!r:.60}); "
                    f"accepted: dict, list, tuple, str, bool, None, int, float, numpy arrays")


def from_jsonable(obj, arrays):
    """Inverse of :func:`to_jsonable`; ``arrays`` maps keys to the loaded arrays."""
    if isinstance(obj, list):
        return [from_jsonable(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (key, val), = obj.items()
        if key == _ARRAY:
            if val not in arrays:
                raise ValueError(f"document refers to array {val!r} missing from its .npz")
            return arrays[val]
        if key == _FLOAT:
            if val not in ("nan", "inf", "-inf"):
                raise ValueError(f"bad non-finite float marker {val!r}")
            return float(val)
        if key == _TUPLE:
            return tuple(from_jsonable(v, arrays) for v in val)
        if key == _ITEMS:
            return {from_jsonable(k, arrays): from_jsonable(v, arrays) for k, v in val}
    return {k: from_jsonable(v, arrays) for k, v in obj.items()}


def canonical_json(doc) -> bytes:
    """The canonical JSON bytes that document hashes are taken over."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


# ----------------------------------------------------------------- atomic files
def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder + ``os.replace``;
    on any failure the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                   # mkstemp makes 0600: readable like open()'s files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def npz_bytes(arrays: dict) -> bytes:
    """``arrays`` as the bytes of an uncompressed ``.npz`` (no pickle)."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def write_document(path, schema: str, body: dict) -> Path:
    """Write ``body`` (a dict of JSON-able values and arrays) as a document of ``schema``
    at ``path`` (arrays to ``<stem>.npz`` beside it). Returns the JSON path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix == ".npz":
        raise ValueError(f"path must not end in .npz (that name is used for the arrays), "
                         f"got {path}")
    if not path.parent.is_dir():
        raise ValueError(f"path: folder {str(path.parent)!r} does not exist")
    clash = {"schema", "arrays", "sha256"} & set(body)
    if clash:
        raise ValueError(f"body must not use the reserved keys {sorted(clash)}")
    arrays = {}
    encoded = to_jsonable(body, arrays, "body")
    doc = {"schema": schema, **encoded, "arrays": None}
    if arrays:
        data = npz_bytes(arrays)
        npz = path.with_suffix(".npz")
        doc["arrays"] = {"file": npz.name, "sha256": hashlib.sha256(data).hexdigest(),
                         "keys": sorted(arrays)}
    doc["sha256"] = hashlib.sha256(canonical_json(doc)).hexdigest()
    text = json.dumps(doc, allow_nan=False).encode("ascii")
    if arrays:
        atomic_write_bytes(npz, data)
    return atomic_write_bytes(path, text)


def read_document(path, schema: str) -> dict:
    """Read a document written by :func:`write_document` and return its body with the
    arrays restored. Raises ``ValueError`` when the file is truncated or not JSON, of
    another schema, edited (hash mismatch) or its ``.npz`` is missing or altered."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a complete JSON document (truncated or corrupt): "
                         f"{exc}") from None
    if not isinstance(doc, dict) or "schema" not in doc:
        raise ValueError(f"{path} is not a zp_ref document (no 'schema' field)")
    if doc["schema"] != schema:
        raise ValueError(f"{path} has schema {doc['schema']!r}; this version of zp_ref "
                         f"reads {schema!r} only")
    recorded = doc.pop("sha256", None)
    if recorded != hashlib.sha256(canonical_json(doc)).hexdigest():
        raise ValueError(f"{path} was modified after it was written (sha256 mismatch)")
    meta = doc.pop("arrays", None)
    arrays = _read_arrays(path, meta) if meta is not None else {}
    del doc["schema"]
    return from_jsonable(doc, arrays)


def _read_arrays(path: Path, meta) -> dict:
    if not isinstance(meta, dict) or not {"file", "sha256", "keys"} <= set(meta):
        raise ValueError(f"{path}: malformed 'arrays' entry {meta!r}")
    name = meta["file"]
    if not isinstance(name, str) or Path(name).name != name:
        raise ValueError(f"{path}: array file name {name!r} must be a bare file name")
    npz = path.parent / name
    if not npz.is_file():
        raise ValueError(f"{path}: its array file {npz} is missing")
    data = npz.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"{npz} does not match the sha256 recorded in {path} "
                         f"(truncated, edited or replaced)")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if sorted(arrays) != meta["keys"]:
        raise ValueError(f"{npz} holds keys {sorted(arrays)}, expected {meta['keys']}")
    return arrays


# ----------------------------------------------------------------- state protocol
def class_name(obj_or_cls) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve(name: str):
    if name not in STATE_CLASSES:
        raise ValueError(f"class {name!r} is not a zp_ref state class; accepted: "
                         f"{sorted(STATE_CLASSES)}")
    module, attr = STATE_CLASSES[name]
    return getattr(importlib.import_module(module), attr)


def save_state(path, obj) -> Path:
    """Save ``obj.state_dict()`` to ``path`` (JSON, arrays in ``<stem>.npz``), atomically.

    ``obj`` must be an instance of a class in :data:`STATE_CLASSES`. Returns the path.
    """
    name = class_name(obj)
    if name not in STATE_CLASSES or _resolve(name) is not type(obj):
        raise TypeError(f"obj: cannot save a {name}; accepted classes: {sorted(STATE_CLASSES)}")
    return write_document(path, STATE_SCHEMA, {"class": name, "state": obj.state_dict()})


def load_state(path, cls=None):
    """Build the object saved at ``path`` with ``cls.from_state_dict``.

    ``cls`` (optional) is the class the caller expects; a file holding another class is
    refused with ``ValueError``, as are truncated, edited or other-version files.
    """
    if cls is not None and not isinstance(cls, type):
        raise TypeError(f"cls must be a class or None, got {cls!r:.60}")
    body = read_document(path, STATE_SCHEMA)
    name = body.get("class")
    if not isinstance(name, str):
        raise ValueError(f"{path}: no class name recorded")
    if cls is not None and name != class_name(cls):
        raise ValueError(f"{path} holds a {name}, expected a {class_name(cls)}")
    return _resolve(name).from_state_dict(body["state"])
