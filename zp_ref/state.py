"""Crash-safe, versioned persistence without pickle: one self-describing file per
document, a line of JSON followed by the raw bytes of its NumPy arrays.

File layout (``zp_ref.document/2``)::

    <header: one line of ASCII JSON> b"\\n" <payload: the arrays' bytes, back to back>

The header is ``{"format": "zp_ref.document/2", "schema": ..., "arrays": {key:
{"dtype", "shape", "offset", "nbytes"}}, "payload_sha256": ..., "body": ..., "sha256":
...}``. Arrays inside the body are replaced by ``{"__ndarray__": "a<k>"}``; ``sha256``
is the SHA-256 of the canonical JSON of the header without it (so it covers the
payload's hash too). Nothing is compressed: what is read is at most the file's size.

A file is written whole to a temporary file in the target's folder, fsync'ed and moved
over the target with one ``os.replace`` (then the folder is fsync'ed), so the path holds
the old file or the new one at every instant; concurrent writers each rename a complete
file of their own and the last rename wins (:mod:`zp_ref._atomic`, which every file
zp_ref writes goes through: a new file gets ``0o666 & ~umask``, a replaced one keeps
its mode). ``save_state(path, obj)`` /
``load_state(path)`` store any object of the state protocol (``state_dict()``,
``load_state_dict(state)``, classmethod ``from_state_dict(state)``) whose class is in
the registry below; classes are resolved by name from that fixed list, never from a
module named in a file. See docs/diagnostics.md, "State files".
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np

from ._atomic import as_path as _as_path
from ._atomic import atomic_write_bytes  # noqa: F401  (zp_ref.state's public name)
from ._atomic import write_target as _write_target

STATE_SCHEMA = "zp_ref.state/1"
DOCUMENT_FORMAT = "zp_ref.document/2"
#: Deepest nesting of JSON arrays/objects a document may have (ours reach about 12).
MAX_JSON_DEPTH = 100
#: Array dtype kinds a document may hold: bool, ints, floats, complex, bytes, str.
ARRAY_KINDS = "biufcSU"

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

#: The version every ``state_dict()`` carries under ``"version"`` (one for all classes).
STATE_VERSION = 1


def check_is_state_dict(state, owner: str) -> None:
    """TypeError unless ``state`` is a dict (the first step of :func:`check_state`)."""
    if not isinstance(state, dict):
        raise TypeError(f"{owner} state must be a dict from state_dict(), got "
                        f"{type(state).__name__}")


def check_state(state, owner: str, keys, *, optional=()) -> dict:
    """The state protocol's one schema check, used by every ``load_state_dict`` and
    ``from_state_dict``: ``state`` is a dict with ``version == STATE_VERSION`` and
    exactly ``keys`` besides it (those in ``optional`` may be absent: fields that files
    of an older release lack). TypeError/ValueError naming ``owner``; returns ``state``."""
    check_is_state_dict(state, owner)
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{owner} state has version {state.get('version')!r}; this zp_ref "
                         f"reads version {STATE_VERSION}")
    expected = set(keys) | set(optional) | {"version"}
    missing = sorted(expected - set(state) - set(optional))
    extra = sorted(map(str, set(state) - expected))
    if missing or extra:
        raise ValueError(f"{owner} state: missing keys {missing}, unexpected keys {extra}")
    return state


def config_fields(cfg, owner: str, fields, *, removed=()) -> dict:
    """A saved config dict with exactly the dataclass ``fields``; ``removed`` names fields
    an older release wrote that have no effect any more (dropped here)."""
    if not isinstance(cfg, dict):
        raise TypeError(f"{owner} state: 'config' must be a dict, got {type(cfg).__name__}")
    kept = {k: v for k, v in cfg.items() if k not in removed}
    if set(kept) != set(fields):
        raise ValueError(f"{owner} state: 'config' must have exactly the fields "
                         f"{sorted(fields)}, got {sorted(map(str, cfg))}")
    return kept


_ARRAY, _FLOAT, _TUPLE, _ITEMS = "__ndarray__", "__float__", "__tuple__", "__items__"
_MARKERS = (_ARRAY, _FLOAT, _TUPLE, _ITEMS)
_HEADER_KEYS = ("format", "schema", "arrays", "payload_sha256", "body", "sha256")


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
        if obj.dtype.kind not in ARRAY_KINDS or obj.dtype.itemsize == 0:
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
    """Inverse of :func:`to_jsonable`; ``arrays`` maps keys to the loaded arrays.
    A malformed marker is a ``ValueError``."""
    if isinstance(obj, list):
        return [from_jsonable(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (key, val), = obj.items()
        if key == _ARRAY:
            if not isinstance(val, str) or val not in arrays:
                raise ValueError(f"document refers to array {val!r}, which it does not hold")
            return arrays[val]
        if key == _FLOAT:
            if val not in ("nan", "inf", "-inf"):
                raise ValueError(f"bad non-finite float marker {val!r}")
            return float(val)
        if key == _TUPLE:
            if not isinstance(val, list):
                raise ValueError(f"bad tuple marker: {_TUPLE} must hold a list, got {val!r:.60}")
            return tuple(from_jsonable(v, arrays) for v in val)
        if key == _ITEMS:
            return _items(val, arrays)
    return {k: from_jsonable(v, arrays) for k, v in obj.items()}


def _items(val, arrays) -> dict:
    if not isinstance(val, list) or not all(isinstance(p, list) and len(p) == 2 for p in val):
        raise ValueError(f"bad dict marker: {_ITEMS} must hold [key, value] pairs, got "
                         f"{val!r:.60}")
    out = {}
    for k, v in val:
        key = from_jsonable(k, arrays)
        try:
            hash(key)
        except TypeError:
            raise ValueError(f"bad dict marker: key {k!r:.60} is not hashable") from None
        out[key] = from_jsonable(v, arrays)
    return out


def canonical_json(doc) -> bytes:
    """The canonical JSON bytes that document hashes are taken over."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(text: bytes) -> int:
    """Deepest nesting of arrays/objects in JSON ``text`` (strings skipped), computed
    without parsing, so a hostile file cannot exhaust the recursion limit."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS),
                             dtype=np.uint8)
    if skeleton.size == 0:
        return 0
    step = np.where((skeleton == ord("[")) | (skeleton == ord("{")), 1, -1)
    return int(np.cumsum(step).max())


def _strict_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"number {text[:40]} overflows float64 (non-finite values are "
                         f"stored as {_FLOAT} markers)")
    return x


def _no_constant(name: str):
    raise ValueError(f"JSON constant {name} is not allowed (strict JSON only)")


def parse_json(text: bytes, where) -> object:
    """Strict JSON (no NaN/Infinity, finite numbers) of bounded nesting depth."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where}: JSON nesting depth {depth} exceeds {MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_float=_strict_float, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where} is not a complete JSON document (truncated or corrupt): "
                         f"{exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


# ----------------------------------------------------------------- files
def read_regular_file(path) -> bytes:
    """The bytes of ``path`` (symlinks followed). A folder, FIFO, device or socket is a
    ``ValueError``, found with ``os.stat`` before opening and again on the open
    descriptor (opened non-blocking, so a FIFO swapped in between cannot block)."""
    path = _as_path(path)
    kind = _file_kind(os.stat(path).st_mode)
    if kind is None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            kind = _file_kind(os.fstat(f.fileno()).st_mode)
            if kind is None:
                return f.read()
    raise ValueError(f"path {str(path)!r} is a {kind}, not a regular file")


def _file_kind(mode) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return ("folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else
            "socket" if stat.S_ISSOCK(mode) else "device" if stat.S_ISCHR(mode) or
            stat.S_ISBLK(mode) else "special file")


def _sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------- documents
def document_bytes(schema: str, body: dict) -> bytes:
    """The bytes of a ``zp_ref.document/2`` file holding ``body`` under ``schema``."""
    arrays = {}
    encoded = to_jsonable(body, arrays, "body")
    meta, chunks, offset = {}, [], 0
    for key, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        raw = a.tobytes()
        meta[key] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                     "nbytes": len(raw)}
        chunks.append(raw)
        offset += len(raw)
    payload = b"".join(chunks)
    header = {"format": DOCUMENT_FORMAT, "schema": schema, "arrays": meta,
              "payload_sha256": _sha256(payload), "body": encoded}
    header["sha256"] = _sha256(canonical_json(header))
    line = json.dumps(header, allow_nan=False, ensure_ascii=True).encode("ascii")
    depth = json_depth(line)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"body nests {depth} levels deep; documents allow {MAX_JSON_DEPTH}")
    return line + b"\n" + payload


def write_document(path, schema: str, body: dict) -> Path:
    """Write ``body`` (a dict of JSON-able values and arrays) as one document file of
    ``schema`` at ``path``, atomically. Everything is checked before any file is
    touched. Returns ``path``."""
    path = _as_path(path)
    if path.suffix == ".npz":
        raise ValueError(f"path must not end in .npz (a document is not an .npz archive), "
                         f"got {path}")
    if not isinstance(body, dict):
        raise TypeError(f"body must be a dict, got {type(body).__name__}")
    _write_target(path)
    return atomic_write_bytes(path, document_bytes(schema, body))


def read_document(path, schema: str) -> dict:
    """Read a document written by :func:`write_document` (or the older two-file
    layout) and return its body with the arrays restored. Raises ``ValueError`` when
    the file is not a regular file, truncated or not JSON, nested too deeply, of
    another schema, edited (hash mismatch), or its arrays do not fit the file."""
    path = _as_path(path)
    raw = read_regular_file(path)
    head, _, payload = raw.partition(b"\n")
    doc = parse_json(head, path)
    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str):
        raise ValueError(f"{path} is not a zp_ref document (no 'schema' field)")
    if doc["schema"] != schema:
        raise ValueError(f"{path} has schema {doc['schema']!r}; this version of zp_ref "
                         f"reads {schema!r} only")
    if doc.get("format") == DOCUMENT_FORMAT:
        return _read_current(path, doc, payload)
    if "format" not in doc and not payload.strip():
        return _read_legacy(path, doc)
    raise ValueError(f"{path} has format {doc.get('format')!r}; this zp_ref reads "
                     f"{DOCUMENT_FORMAT!r} (and the older JSON + .npz pair)")


def _read_current(path, doc: dict, payload: bytes) -> dict:
    if set(doc) != set(_HEADER_KEYS):
        raise ValueError(f"{path}: header fields {sorted(doc)} differ from "
                         f"{sorted(_HEADER_KEYS)}")
    recorded = doc.pop("sha256")
    if recorded != _sha256(canonical_json(doc)):
        raise ValueError(f"{path} was modified after it was written (sha256 mismatch)")
    if doc["payload_sha256"] != _sha256(payload):
        raise ValueError(f"{path}: its array bytes were modified or truncated (sha256 mismatch)")
    if not isinstance(doc["body"], dict):
        raise ValueError(f"{path}: body must be a JSON object")
    return from_jsonable(doc["body"], _arrays_from_payload(path, doc["arrays"], payload))


def _checked_dtype(path, key, text) -> np.dtype:
    try:
        dtype = np.dtype(text) if isinstance(text, str) and len(text) <= 16 else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.str != text or dtype.kind not in ARRAY_KINDS or \
            dtype.itemsize == 0:
        raise ValueError(f"{path}: array {key!r} has dtype {text!r:.40}; accepted: a NumPy "
                         f"dtype string of kind {ARRAY_KINDS!r}, e.g. '<f8'")
    return dtype


def _natural(value) -> bool:
    return type(value) is int and value >= 0


def _arrays_from_payload(path, meta, payload: bytes) -> dict:
    """The arrays that ``meta`` lays out in ``payload``; sizes are checked against the
    file before anything is allocated."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: 'arrays' must be an object, got {meta!r:.60}")
    spans = []
    for key, m in meta.items():
        if not isinstance(m, dict) or set(m) != {"dtype", "shape", "offset", "nbytes"}:
            raise ValueError(f"{path}: array {key!r} needs exactly dtype, shape, offset, "
                             f"nbytes; got {m!r:.80}")
        dtype = _checked_dtype(path, key, m["dtype"])
        shape = m["shape"]
        if not isinstance(shape, list) or len(shape) > 32 or not all(map(_natural, shape)):
            raise ValueError(f"{path}: array {key!r} has shape {shape!r:.60}; accepted: a "
                             f"list of at most 32 integers >= 0")
        if not (_natural(m["offset"]) and _natural(m["nbytes"])):
            raise ValueError(f"{path}: array {key!r} offset and nbytes must be integers >= 0")
        if math.prod(shape) * dtype.itemsize != m["nbytes"]:
            raise ValueError(f"{path}: array {key!r} of shape {shape} and dtype {dtype.str} "
                             f"needs {math.prod(shape) * dtype.itemsize} bytes, the header "
                             f"says {m['nbytes']}")
        spans.append((m["offset"], m["nbytes"], key, dtype, shape))
    end = 0
    for offset, nbytes, key, _, _ in sorted(spans):
        if offset != end:
            raise ValueError(f"{path}: array {key!r} starts at byte {offset}, expected {end} "
                             f"(arrays must lie back to back)")
        end += nbytes
    if end != len(payload):
        raise ValueError(f"{path}: the arrays declare {end} bytes, the file holds "
                         f"{len(payload)} after its header")
    return {key: np.frombuffer(payload, dtype, count=math.prod(shape), offset=offset)
            .reshape(shape).copy() for offset, _, key, dtype, shape in spans}


# ----------------------------------------------------------------- older layout
def _read_legacy(path: Path, doc: dict) -> dict:
    """A document of the older layout: the whole file is JSON, its arrays in the
    ``.npz`` its ``arrays`` entry names (stored members only, sizes checked first)."""
    recorded = doc.pop("sha256", None)
    if recorded != _sha256(canonical_json(doc)):
        raise ValueError(f"{path} was modified after it was written (sha256 mismatch)")
    meta = doc.pop("arrays", None)
    arrays = {} if meta is None else _read_legacy_npz(path, meta)
    del doc["schema"]
    return from_jsonable(doc, arrays)


def _read_legacy_npz(path: Path, meta) -> dict:
    import io
    import zipfile
    if not isinstance(meta, dict) or set(meta) != {"file", "sha256", "keys"} or \
            not isinstance(meta["keys"], list) or not all(isinstance(k, str) for k in meta["keys"]):
        raise ValueError(f"{path}: malformed 'arrays' entry {meta!r:.80}")
    name = meta["file"]
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"{path}: array file name {name!r} must be a bare file name")
    npz = Path(os.path.realpath(path)).parent / name
    if not npz.exists():
        raise ValueError(f"{path}: its array file {npz} is missing")
    data = read_regular_file(npz)
    if _sha256(data) != meta["sha256"]:
        raise ValueError(f"{npz} does not match the sha256 recorded in {path} "
                         f"(truncated, edited or replaced)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            names = sorted(i.filename for i in infos)
            if names != sorted(f"{k}.npy" for k in meta["keys"]):
                raise ValueError(f"{npz} holds {names}, expected the keys {meta['keys']}")
            if any(i.compress_type != zipfile.ZIP_STORED or i.file_size != i.compress_size
                   for i in infos) or sum(i.file_size for i in infos) > len(data):
                raise ValueError(f"{npz} has compressed or oversized members; zp_ref wrote "
                                 f"stored members only, so none may expand on reading")
            return {i.filename[:-4]: _npy_array(npz, z.read(i)) for i in infos}
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{npz} is not a valid .npz: {exc}") from None


def _npy_array(where, raw: bytes) -> np.ndarray:
    """An array from ``.npy`` bytes whose header must match their length exactly."""
    import io
    f = io.BytesIO(raw)
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)
    if dtype.kind not in ARRAY_KINDS or dtype.itemsize == 0 or \
            math.prod(shape) * dtype.itemsize != len(raw) - f.tell():
        raise ValueError(f"{where}: an array header ({dtype}, shape {shape}) does not fit "
                         f"its {len(raw) - f.tell()} data bytes")
    flat = np.frombuffer(raw, dtype, count=math.prod(shape), offset=f.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()


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
    """Save ``obj.state_dict()`` to ``path`` as one self-contained file, atomically.

    Whenever the process dies, the path loads the old state or the new one. A new
    file gets the umask's permissions (``0o666 & ~umask``); a file it replaces keeps
    its mode (an 0600 checkpoint stays 0600).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    obj : object
        An instance of a class in :data:`STATE_CLASSES`.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    name = class_name(obj)
    if name not in STATE_CLASSES or _resolve(name) is not type(obj):
        raise TypeError(f"obj: cannot save a {name}; accepted classes: {sorted(STATE_CLASSES)}")
    return write_document(path, STATE_SCHEMA, {"class": name, "state": obj.state_dict()})


def load_state(path, cls=None, *, q=None):
    """Build the object saved at ``path`` with ``cls.from_state_dict``.

    Damaged, crafted or other-version files are refused with ``ValueError``.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save_state`.
    cls : type or None, default None
        The class the caller expects; a file holding another class is refused.
    q : callable or None, default None
        The callable Q of an ``ActiveSampler``/``IntegratedSampler`` saved with one (a
        callable is never stored), passed to ``from_state_dict(state, q=q)``.

    Returns
    -------
    object
        An instance of the saved class.
    """
    if cls is not None and not isinstance(cls, type):
        raise TypeError(f"cls must be a class or None, got {cls!r:.60}")
    body = read_document(path, STATE_SCHEMA)
    if set(body) != {"class", "state"} or not isinstance(body["class"], str):
        raise ValueError(f"{path}: a state file holds exactly 'class' (a str) and 'state', "
                         f"got {sorted(map(str, body))}")
    name = body["class"]
    if cls is not None and name != class_name(cls):
        raise ValueError(f"{path} holds a {name}, expected a {class_name(cls)}")
    target = _resolve(name)
    kwargs = {}
    if q is not None:
        if "q" not in inspect.signature(target.from_state_dict).parameters:
            raise TypeError(f"q: a {name} state takes no q; q= applies to ActiveSampler and "
                            f"IntegratedSampler states")
        kwargs["q"] = q
    try:
        return target.from_state_dict(body["state"], **kwargs)
    except (KeyError, IndexError, AttributeError, ArithmeticError, RecursionError) as exc:
        raise ValueError(f"{path}: the saved {name} state is malformed "
                         f"({type(exc).__name__}: {exc})") from exc
