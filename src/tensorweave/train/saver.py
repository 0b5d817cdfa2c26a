"""``tw.train.Saver``: checkpoints of variable values, written atomically.

A checkpoint ``<prefix>`` (e.g. ``/tmp/run/model.ckpt-100``) is one file, ``<prefix>.npz``: a
standard NumPy zip of ``.npy`` arrays keyed by variable name (``np.load`` reads it without
tensorweave). ``<prefix>.meta`` optionally describes the graph (JSON), and the directory's
``checkpoint`` file lists the recent prefixes in TensorFlow's text format, so
``tw.train.latest_checkpoint(dir)`` works as in TF. Every file is written to a temporary file in
the same directory, flushed, fsynced and renamed over its target, data before state: a process
killed mid-save leaves the previous checkpoint listed, intact and loadable. See
docs/checkpoint-format.md.

Example::

    saver = tw.train.Saver(max_to_keep=3)
    with tw.Session() as sess:
        sess.run(tw.global_variables_initializer())
        path = saver.save(sess, "/tmp/run/model.ckpt", global_step=100)  # .../model.ckpt-100
    with tw.Session() as sess:
        saver.restore(sess, tw.train.latest_checkpoint("/tmp/run"))   # no initializer needed
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import uuid
import zipfile

import numpy as np

from tensorweave.framework import dtypes, errors, ops
from tensorweave.framework.ops import GraphKeys, Tensor

DATA_SUFFIX = ".npz"
_STATE_FILENAME = "checkpoint"
_SAVEABLE_OBJECTS = "saveable_objects"
_FORMAT = "tensorweave-npz-v1"


# --- atomic files ----------------------------------------------------------------------------------
def _fsync_dir(path):
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path, write):
    """Calls ``write(fileobj)`` on a temp file beside ``path``, fsyncs it and renames it over
    ``path``; on any failure the temp file is removed and ``path`` is untouched."""
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path)


def _to_host(arr) -> np.ndarray:
    """A host copy of a stored value: NumPy arrays, or device (CuPy) arrays via ``.get()``."""
    if isinstance(arr, np.ndarray):
        return np.array(arr, copy=True)
    if hasattr(arr, "get"):
        return np.asarray(arr.get())
    return np.array(arr, copy=True)


def _write_npy(fileobj, array):
    np.lib.format.write_array(fileobj, array, allow_pickle=False)


def _storable(name, value):
    """The array as written: strings as fixed-width unicode/bytes (no pickles in the file)."""
    arr = np.asarray(value)
    if arr.dtype == object:
        flat = arr.reshape(-1).tolist()
        if all(isinstance(x, bytes) for x in flat):
            return np.array(flat, dtype=bytes).reshape(arr.shape)
        if all(isinstance(x, str) for x in flat):
            return np.array(flat, dtype=str).reshape(arr.shape)
        raise ValueError(f"Cannot save variable {name!r}: it holds Python objects other than "
                         "strings")
    return arr


def _write_data(path, arrays: dict):
    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as member:
                    _write_npy(member, arr)

    _atomic_write(path, write)


# --- reading --------------------------------------------------------------------------------------
def _data_path(prefix):
    return prefix if prefix.endswith(DATA_SUFFIX) else prefix + DATA_SUFFIX


def _prefix_of(path):
    return path[:-len(DATA_SUFFIX)] if path.endswith(DATA_SUFFIX) else path


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


class CheckpointReader:
    """Reads one checkpoint without a graph: names, shapes, dtypes and values.

    ``tw.train.load_checkpoint(path)`` (also ``NewCheckpointReader``) returns one.
    """

    def __init__(self, ckpt_prefix):
        self._prefix = _prefix_of(ckpt_prefix)
        path = _data_path(ckpt_prefix)
        try:
            self._zip = zipfile.ZipFile(path, "r")
        except FileNotFoundError:
            raise errors.NotFoundError(
                None, None, f"Unsuccessful checkpoint read: no checkpoint at {self._prefix} "
                f"({path} does not exist)") from None
        except zipfile.BadZipFile as e:
            raise errors.DataLossError(None, None, f"Checkpoint {path} is not a valid .npz "
                                       f"file: {e}") from None
        self._members = {n[:-4]: n for n in self._zip.namelist() if n.endswith(".npy")}
        self._headers: dict = {}

    def close(self):
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _header(self, name):
        h = self._headers.get(name)
        if h is None:
            with self._zip.open(self._members[name]) as f:
                version = np.lib.format.read_magic(f)
                read = _HEADER_READERS.get(version)
                shape, _, dtype = read(f) if read else \
                    np.lib.format._read_array_header(f, version)
            h = self._headers[name] = (tuple(shape), np.dtype(dtype))
        return h

    def has_tensor(self, name):
        return name in self._members

    def names(self):
        return sorted(self._members)

    def get_variable_to_shape_map(self):
        return {n: list(self._header(n)[0]) for n in self._members}

    def get_variable_to_dtype_map(self):
        return {n: _as_tw_dtype(self._header(n)[1]) for n in self._members}

    def shape_and_dtype(self, name):
        self._require(name)
        return self._header(name)

    def get_tensor(self, name):
        self._require(name)
        with self._zip.open(self._members[name]) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False)
        if arr.dtype.kind in "SU":
            arr = arr.astype(object)
        return arr

    def _require(self, name):
        if name not in self._members:
            raise errors.NotFoundError(None, None, f"Key {name} not found in checkpoint "
                                       f"{self._prefix}")

    def debug_string(self):
        return "".join(f"{n} ({self._header(n)[1]}) {list(self._header(n)[0])}\n"
                       for n in self.names())


NewCheckpointReader = CheckpointReader


def _as_tw_dtype(npd):
    return dtypes.string if npd.kind in "SUO" else dtypes.as_dtype(npd)


def _resolve(ckpt_dir_or_file):
    if os.path.isdir(ckpt_dir_or_file):
        found = latest_checkpoint(ckpt_dir_or_file)
        if found is None:
            raise ValueError(f"Couldn't find 'checkpoint' file or checkpoints in given directory "
                             f"{ckpt_dir_or_file}")
        return found
    return ckpt_dir_or_file


def load_checkpoint(ckpt_dir_or_file):
    """A :class:`CheckpointReader` for a checkpoint prefix or a directory's latest checkpoint."""
    return CheckpointReader(_resolve(ckpt_dir_or_file))


def list_variables(ckpt_dir_or_file):
    """``[(name, shape), ...]`` sorted by name, read from the file headers only."""
    with load_checkpoint(ckpt_dir_or_file) as r:
        shapes = r.get_variable_to_shape_map()
    return sorted(shapes.items())


def load_variable(ckpt_dir_or_file, name):
    """One variable's value from a checkpoint, as a NumPy array (``name`` may end in ``:0``)."""
    if name.endswith(":0"):
        name = name[:-2]
    with load_checkpoint(ckpt_dir_or_file) as r:
        return r.get_tensor(name)


def checkpoint_exists(checkpoint_prefix):
    """True if a complete checkpoint ``checkpoint_prefix`` was written (partial writes are
    never visible: the data file appears only once complete)."""
    return os.path.isfile(_data_path(checkpoint_prefix))


# --- the state file ---------------------------------------------------------------------------------
class CheckpointState:
    """The parsed ``checkpoint`` file: the latest prefix and all kept prefixes, oldest first."""

    def __init__(self, model_checkpoint_path, all_model_checkpoint_paths=None,
                 all_model_checkpoint_timestamps=None, last_preserved_timestamp=None):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = list(all_model_checkpoint_paths or [])
        self.all_model_checkpoint_timestamps = list(all_model_checkpoint_timestamps or [])
        self.last_preserved_timestamp = last_preserved_timestamp

    def __repr__(self):
        return (f"CheckpointState(model_checkpoint_path={self.model_checkpoint_path!r}, "
                f"all_model_checkpoint_paths={self.all_model_checkpoint_paths!r})")


def _quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _unquote(s):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), s[1:-1])


_STATE_LINE = re.compile(r'^\s*([a-z_]+)\s*:\s*("(?:[^"\\]|\\.)*"|[-+0-9.eE]+)\s*$')


def _state_path(save_dir, latest_filename):
    return os.path.join(save_dir, latest_filename or _STATE_FILENAME)


def get_checkpoint_state(checkpoint_dir, latest_filename=None):
    """The :class:`CheckpointState` of ``checkpoint_dir``, or None if it has no (valid) state
    file. Relative paths in the file are relative to ``checkpoint_dir``."""
    path = _state_path(checkpoint_dir, latest_filename)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    latest, paths, stamps, preserved = None, [], [], None
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _STATE_LINE.match(line)
        if m is None:
            return None  # not a state file we understand: as TF, treat as absent
        key, val = m.groups()
        if key == "model_checkpoint_path":
            latest = _unquote(val)
        elif key == "all_model_checkpoint_paths":
            paths.append(_unquote(val))
        elif key == "all_model_checkpoint_timestamps":
            stamps.append(float(val))
        elif key == "last_preserved_timestamp":
            preserved = float(val)
    if latest is None:
        return None

    def absolute(p):
        return p if os.path.isabs(p) else os.path.join(checkpoint_dir, p)

    return CheckpointState(absolute(latest), [absolute(p) for p in paths], stamps, preserved)


def update_checkpoint_state(save_dir, model_checkpoint_path, all_model_checkpoint_paths=None,
                            latest_filename=None, all_model_checkpoint_timestamps=None,
                            last_preserved_timestamp=None, save_relative_paths=False):
    """Atomically rewrites ``save_dir``'s state file naming the latest checkpoint (and the
    kept ones). Paths are written relative to ``save_dir`` when ``save_dir`` is relative or
    ``save_relative_paths``."""
    paths = list(all_model_checkpoint_paths or [])
    if not paths or paths[-1] != model_checkpoint_path:
        paths.append(model_checkpoint_path)

    def shown(p):
        relative = save_relative_paths or not os.path.isabs(save_dir)
        return os.path.relpath(p, save_dir) if relative else p

    lines = [f"model_checkpoint_path: {_quote(shown(model_checkpoint_path))}"]
    lines += [f"all_model_checkpoint_paths: {_quote(shown(p))}" for p in paths]
    lines += [f"all_model_checkpoint_timestamps: {t!r}"
              for t in all_model_checkpoint_timestamps or []]
    if last_preserved_timestamp is not None:
        lines.append(f"last_preserved_timestamp: {last_preserved_timestamp!r}")
    text = "\n".join(lines) + "\n"
    _atomic_write(_state_path(save_dir, latest_filename),
                  lambda f: f.write(text.encode("utf-8")))


def latest_checkpoint(checkpoint_dir, latest_filename=None):
    """The prefix of the newest complete checkpoint listed in ``checkpoint_dir``, else None."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is not None and checkpoint_exists(state.model_checkpoint_path):
        return state.model_checkpoint_path
    return None


def get_checkpoint_mtimes(checkpoint_prefixes):
    """Modification times of the given checkpoints' data files (missing ones are skipped)."""
    return [os.stat(_data_path(p)).st_mtime for p in checkpoint_prefixes
            if checkpoint_exists(p)]


def remove_checkpoint(checkpoint_prefix, checkpoint_format_version=None,
                      meta_graph_suffix="meta"):
    """Deletes a checkpoint's data and meta files (missing files are ignored)."""
    for path in (_data_path(checkpoint_prefix), f"{checkpoint_prefix}.{meta_graph_suffix}"):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


# --- session access ----------------------------------------------------------------------------------
def _runtime_context(sess):
    """The local session's RuntimeContext (variable storage), or None for other sessions,
    which are read and written through graph ops instead."""
    while sess is not None:
        if not getattr(sess, "_variables_are_local", True):  # a cluster session: they live
            return None                                      # on the tasks
        ctx = getattr(sess, "_ctx", None)
        if ctx is not None and isinstance(getattr(ctx, "variables", None), dict):
            return ctx
        sess = getattr(sess, "_sess", None)  # a MonitoredSession wraps the session it runs
    return None


def _storage_key(var):
    t = var._variable if hasattr(var, "_variable") else var
    if isinstance(t, Tensor):
        while t.op.type in ("Identity", "RefIdentity"):
            t = t.op.inputs[0]
        return t.op.name
    raise TypeError(f"Saver can only save variables, got {var!r}")


def _checked_cast(arr, npd):
    """``arr`` as ``npd`` if NumPy calls the cast safe, else None."""
    if arr.dtype == npd:
        return arr
    if np.dtype(npd).kind == "O" and arr.dtype.kind in "SU":
        return arr.astype(object)
    if np.can_cast(arr.dtype, npd, casting="safe"):
        return arr.astype(npd)
    return None


# --- the Saver --------------------------------------------------------------------------------------
class Saver:
    """Saves and restores variables (TF1's ``tf.train.Saver``).

    ``var_list``: None (all global variables and saveable objects, as the graph holds them
    now), a list of variables (saved under their op names) or a dict ``name -> variable``.
    ``max_to_keep``: how many recent checkpoints to keep (None or 0 keeps all);
    ``keep_checkpoint_every_n_hours`` additionally keeps one checkpoint per that many hours.
    """

    def __init__(self, var_list=None, reshape=False, sharded=False, max_to_keep=5,
                 keep_checkpoint_every_n_hours=10000.0, name=None, restore_sequentially=False,
                 saver_def=None, builder=None, defer_build=False, allow_empty=False,
                 write_version=None, pad_step_number=False, save_relative_paths=False,
                 filename=None):
        if reshape:
            raise NotImplementedError("Saver(reshape=True) is not supported")
        self._max_to_keep = max_to_keep
        self._keep_every_s = keep_checkpoint_every_n_hours * 3600.0
        self._next_keep_time = time.time() + self._keep_every_s
        self._name = name or "save"
        self._allow_empty = allow_empty
        self._pad_step_number = pad_step_number
        self._save_relative_paths = save_relative_paths
        self._filename = filename
        self._sharded = sharded  # one data file holds every shard: accepted, no effect
        self._last_checkpoints: list[tuple[str, float]] = []
        self._var_list = var_list
        self._vars = None
        self._graph = None
        if not defer_build:
            self.build()

    def build(self):
        """Fixes the name -> variable map (called by the constructor unless ``defer_build``)."""
        if self._vars is not None:
            return
        var_list = self._var_list
        if var_list is None:
            var_list = ops.get_collection(GraphKeys.GLOBAL_VARIABLES) + \
                ops.get_collection(_SAVEABLE_OBJECTS)
        if isinstance(var_list, dict):
            items = list(var_list.items())
        else:
            items = []
            for v in _flatten(var_list):
                items.append((_storage_key(v), v))
        names: dict = {}
        for name, v in items:
            if not isinstance(name, str) or not name:
                raise TypeError(f"Saver: checkpoint names must be non-empty strings, got {name!r}")
            if name in names:
                if names[name] is v:
                    continue
                raise ValueError(f"At least two variables have the same name: {name}")
            _storage_key(v)  # type check
            names[name] = v
        if not names and not self._allow_empty:
            raise ValueError("No variables to save")
        self._vars = names
        graphs = {v.graph for v in names.values()}
        if len(graphs) > 1:
            raise ValueError("Saver: all variables must be in the same graph")
        self._graph = graphs.pop() if graphs else ops.get_default_graph()

    # --- bookkeeping ------------------------------------------------------------------------
    @property
    def last_checkpoints(self):
        """Prefixes of the checkpoints still kept, oldest first."""
        return [p for p, _ in self._last_checkpoints]

    def set_last_checkpoints(self, last_checkpoints):
        self._last_checkpoints = [(p, time.time()) for p in last_checkpoints]

    def set_last_checkpoints_with_time(self, last_checkpoints_with_time):
        self._last_checkpoints = list(last_checkpoints_with_time)

    def recover_last_checkpoints(self, checkpoint_paths):
        """Adopts existing checkpoints (e.g. from ``get_checkpoint_state``) so max_to_keep
        counts and deletes them too."""
        stamps = {p: t for p, t in zip(checkpoint_paths, get_checkpoint_mtimes(checkpoint_paths))}
        self._last_checkpoints = [(p, stamps[p]) for p in checkpoint_paths if p in stamps]

    def _record(self, prefix, meta_suffix):
        self._last_checkpoints = [(p, t) for p, t in self._last_checkpoints if p != prefix]
        self._last_checkpoints.append((prefix, time.time()))
        if not self._max_to_keep:
            return
        while len(self._last_checkpoints) > self._max_to_keep:
            old, stamp = self._last_checkpoints.pop(0)
            if stamp > self._next_keep_time:
                self._next_keep_time += self._keep_every_s  # kept for good, no longer tracked
                continue
            remove_checkpoint(old, meta_graph_suffix=meta_suffix)

    # --- save -----------------------------------------------------------------------------------
    def save(self, sess, save_path, global_step=None, latest_filename=None,
             meta_graph_suffix="meta", write_meta_graph=True, write_state=True,
             strip_default_attrs=False, save_debug_info=False):
        """Writes the variables' current values; returns the checkpoint prefix
        (``save_path`` or ``save_path-<global_step>``)."""
        if latest_filename is not None and os.path.basename(latest_filename) != latest_filename:
            raise ValueError("'latest_filename' collides with 'save_path': it must be a file "
                             f"name without a directory, got {latest_filename!r}")
        if global_step is not None:
            if not isinstance(global_step, (int, np.integer)):
                global_step = sess.run(global_step)
            step = int(global_step)
            prefix = f"{save_path}-{step:08d}" if self._pad_step_number else f"{save_path}-{step}"
        else:
            prefix = save_path
        save_dir = os.path.dirname(prefix) or "."
        if not os.path.isdir(save_dir):
            raise ValueError(f"Parent directory of {save_path} doesn't exist, can't save.")
        arrays = {name: _storable(name, value)
                  for name, value in self._read_values(sess).items()}
        _write_data(_data_path(prefix), arrays)
        if write_meta_graph:
            self.export_meta_graph(f"{prefix}.{meta_graph_suffix}")
        self._record(prefix, meta_graph_suffix)
        if write_state:
            update_checkpoint_state(
                save_dir, prefix, self.last_checkpoints, latest_filename,
                all_model_checkpoint_timestamps=[t for _, t in self._last_checkpoints],
                save_relative_paths=self._save_relative_paths)
        return prefix

    def _read_values(self, sess):
        if sess.graph is not self._graph:
            raise ValueError("The session's graph is not the graph this Saver's variables "
                             "belong to")
        ctx = _runtime_context(sess)
        if ctx is None:  # e.g. a distributed session: fetch through the graph
            names = list(self._vars)
            values = sess.run([self._vars[n].value() if hasattr(self._vars[n], "value")
                               else self._vars[n] for n in names])
            return dict(zip(names, (np.array(v, copy=True) for v in values)))
        out, missing = {}, []
        with ctx.lock:  # a consistent snapshot while other threads may be training
            for name, v in self._vars.items():
                arr = ctx.variables.get(_storage_key(v))
                if arr is None:
                    missing.append(_storage_key(v))
                else:
                    out[name] = _to_host(arr)
        if missing:
            raise errors.FailedPreconditionError(
                None, None, f"Attempting to save uninitialized variables: {', '.join(missing)}. "
                "Run their initializers or restore them first.")
        return out

    # --- restore ----------------------------------------------------------------------------
    def restore(self, sess, save_path):
        """Loads every saved variable's value from ``save_path`` into ``sess``.

        All variables are checked first (present, same shape, dtype castable safely); any
        problem raises one error naming each of them and changes nothing.
        """
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        if sess.graph is not self._graph:
            raise ValueError("The session's graph is not the graph this Saver's variables "
                             "belong to")
        prefix = _prefix_of(save_path)
        if not checkpoint_exists(prefix):
            raise ValueError(f"The passed save_path is not a valid checkpoint: {save_path}")
        with CheckpointReader(prefix) as reader:
            missing, bad = [], []
            for name, v in self._vars.items():
                if not reader.has_tensor(name):
                    missing.append(f"variable '{name}' is not in the checkpoint")
                    continue
                shape, npd = reader.shape_and_dtype(name)
                want = v.dtype.base_dtype
                if not v.shape.is_compatible_with(shape):
                    bad.append(f"variable '{name}' has shape {shape} in the checkpoint but "
                               f"{_shape_str(v.shape)} in the graph")
                    continue
                if _as_tw_dtype(npd) != want and (
                        want is dtypes.string or want.as_numpy_dtype is None
                        or not np.can_cast(npd, want.as_numpy_dtype, casting="safe")):
                    bad.append(f"variable '{name}' has dtype {npd} in the checkpoint, which "
                               f"cannot be cast safely to {want.name} in the graph")
            problems = missing + bad
            if problems:
                cls = errors.NotFoundError if missing else errors.InvalidArgumentError
                raise cls(None, None, f"Restoring checkpoint {prefix} failed: "
                          f"{'; '.join(problems)}")
            values = {}
            for name, v in self._vars.items():
                npd = v.dtype.base_dtype.as_numpy_dtype
                arr = _checked_cast(reader.get_tensor(name), npd)
                if arr is None:  # only reachable if the file changed under us
                    raise errors.DataLossError(None, None, f"Restoring checkpoint {prefix} "
                                               f"failed: variable '{name}' changed while read")
                values[name] = arr
        self._write_values(sess, values)

    def _write_values(self, sess, values):
        ctx = _runtime_context(sess)
        if ctx is None:
            for name, arr in values.items():
                self._vars[name].load(arr, sess)
            return
        with ctx.lock:
            store = ctx.variables
            for name, arr in values.items():
                key = _storage_key(self._vars[name])
                cur = store.get(key)
                if cur is not None and not isinstance(cur, np.ndarray):
                    # a device (GPU) variable: write the host value into device memory
                    if cur.shape == arr.shape and cur.dtype == arr.dtype:
                        cur.set(np.ascontiguousarray(arr))
                    else:
                        store[key] = type(cur)(arr.shape, arr.dtype)
                        store[key].set(np.ascontiguousarray(arr))
                elif cur is not None and cur.shape == arr.shape and cur.dtype == arr.dtype \
                        and cur.flags.writeable:
                    np.copyto(cur, arr)  # keep the buffer any cached plan may hold
                else:
                    store[key] = np.array(arr, copy=True, order="C")

    # --- meta graph -----------------------------------------------------------------------------
    def export_meta_graph(self, filename=None, collection_list=None, as_text=False,
                          export_scope=None, clear_devices=False, clear_extraneous_savers=False,
                          strip_default_attrs=False, save_debug_info=False):
        """Writes the graph as JSON (nodes, collections of variables, this saver's names)."""
        meta = export_meta_graph_dict(self._graph, clear_devices=clear_devices)
        meta["saver"] = {"name": self._name, "variables": {n: _storage_key(v)
                                                            for n, v in self._vars.items()},
                         "max_to_keep": self._max_to_keep}
        if filename:
            text = json.dumps(meta)
            _atomic_write(filename, lambda f: f.write(text.encode("utf-8")))
        return meta

    def as_saver_def(self):
        return {"name": self._name, "max_to_keep": self._max_to_keep,
                "keep_checkpoint_every_n_hours": self._keep_every_s / 3600.0,
                "sharded": self._sharded, "version": _FORMAT}


def _flatten(var_list):
    for v in var_list:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        elif hasattr(v, "_get_variable_list"):  # a partitioned variable: its shards
            yield from v._get_variable_list()
        else:
            yield v


def _shape_str(shape):
    return str(tuple(shape.as_list())) if shape.ndims is not None else "<unknown>"


# --- meta graph as JSON ----------------------------------------------------------------------------
def _encode_attr(value):
    from tensorweave.framework.tensor_shape import TensorShape
    if isinstance(value, dtypes.DType):
        return {"dtype": value.name}
    if isinstance(value, TensorShape):
        return {"shape": value.as_list() if value.ndims is not None else None}
    if isinstance(value, np.ndarray) and value.dtype != object:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, value, allow_pickle=False)
        return {"tensor": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_encode_attr(v) for v in value]
    return {"repr": repr(value)}


def export_meta_graph_dict(graph, clear_devices=False):
    """The graph as a JSON-ready dict: ``{"format", "nodes", "collections"}``."""
    from tensorweave.framework.graph_io import op_to_node
    nodes = []
    for op in graph.get_operations():
        n = op_to_node(op)
        n["attr"] = {k: _encode_attr(v) for k, v in n["attr"].items()}
        if clear_devices:
            n["device"] = ""
        nodes.append(n)
    collections = {}
    for key in graph.get_all_collection_keys():
        names = [getattr(v, "name", None) for v in graph.get_collection(key)]
        if names and all(isinstance(n, str) for n in names):
            collections[key] = names
    return {"format": "tensorweave-meta-v1", "nodes": nodes, "collections": collections}


def init_from_checkpoint(ckpt_dir_or_file, assignment_map):
    """Makes the initializers of existing variables load values from a checkpoint (TF1's
    warm start, e.g. fine-tuning a pre-trained model): call it before
    ``tw.global_variables_initializer()``; restored variables then start from the checkpoint,
    the others from their own initializers.

    ``assignment_map`` maps checkpoint names to graph names (or variables):
    ``{"bert/": "bert/"}`` or ``{"old_scope/": "new_scope/"}`` for every variable under a
    scope, ``{"layer/kernel": "encoder/layer/kernel"}`` or ``{"layer/kernel": variable}`` for
    one. Every named variable must exist in both, with the same shape: anything else raises
    ValueError naming it, before any initializer is changed."""
    from tensorweave.ops import state_ops
    from tensorweave.ops.variables import Variable
    path = _resolve(ckpt_dir_or_file)
    graph_vars = {v.op.name: v for v in ops.get_collection(GraphKeys.GLOBAL_VARIABLES) +
                  ops.get_collection(GraphKeys.LOCAL_VARIABLES) if isinstance(v, Variable)}
    with load_checkpoint(path) as reader:
        ckpt_shapes = reader.get_variable_to_shape_map()
        ckpt_dtypes = reader.get_variable_to_dtype_map()
        plan = []  # (variable, checkpoint name)
        for src, dst in assignment_map.items():
            if isinstance(dst, Variable):
                plan.append((dst, src))
                continue
            if not isinstance(dst, str) or not isinstance(src, str):
                raise ValueError(f"init_from_checkpoint: assignment_map entries must be names "
                                 f"or variables, got {src!r}: {dst!r}")
            if src.endswith("/") or src == "":  # a scope: every variable under it
                want = "" if dst in ("/", "") else dst
                have = "" if src in ("/", "") else src
                found = [(v, have + name[len(want):]) for name, v in sorted(graph_vars.items())
                         if name.startswith(want)]
                if not found:
                    raise ValueError(f"init_from_checkpoint: the graph has no variable under "
                                     f"{dst!r}")
                plan.extend(found)  # each must be in the checkpoint, as in TF1 (checked below)
            else:
                name = dst[:-2] if dst.endswith(":0") else dst
                if name not in graph_vars:
                    raise ValueError(f"init_from_checkpoint: the graph has no variable {name!r}")
                plan.append((graph_vars[name], src))
        problems = []
        for v, src in plan:
            want_dtype = v.dtype.base_dtype
            if src not in ckpt_shapes:
                problems.append(f"{src!r} (for {v.op.name!r}) is not in the checkpoint")
            elif not v.shape.is_compatible_with(ckpt_shapes[src]):
                problems.append(f"{src!r} has shape {list(ckpt_shapes[src])} in the checkpoint "
                                f"but {v.op.name!r} has shape {v.shape}")
            elif ckpt_dtypes[src] != want_dtype and (
                    want_dtype.as_numpy_dtype is None or not np.can_cast(
                        ckpt_dtypes[src].as_numpy_dtype, want_dtype.as_numpy_dtype,
                        casting="safe")):
                problems.append(f"{src!r} has dtype {ckpt_dtypes[src].name} in the "
                                f"checkpoint, which cannot be cast safely to {want_dtype.name} "
                                f"({v.op.name!r})")
        if problems:
            raise ValueError(f"init_from_checkpoint from {path}: {'; '.join(problems)}")
        for v, src in plan:
            value = reader.get_tensor(src).astype(v.dtype.base_dtype.as_numpy_dtype,
                                                  copy=False)
            with ops.name_scope(None), v.graph.as_default(), ops.control_dependencies(None):
                from tensorweave.framework.constant_op import constant
                init = constant(value, name=f"{v.op.name}/checkpoint_initializer/value")
                v._initializer_op = state_ops.assign(
                    v._variable, init, name=f"{v.op.name}/checkpoint_initializer").op


__all__ = ["Saver", "CheckpointState", "CheckpointReader", "NewCheckpointReader",
           "latest_checkpoint", "get_checkpoint_state", "update_checkpoint_state",
           "checkpoint_exists", "list_variables", "load_variable", "load_checkpoint",
           "get_checkpoint_mtimes", "remove_checkpoint", "init_from_checkpoint"]
