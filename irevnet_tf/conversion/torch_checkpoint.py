"""Reads PyTorch checkpoints (`torch.save` files) into numpy without torch and without running code.

`torch.load` unpickles arbitrary objects, so loading a downloaded checkpoint with it can
run whatever code the file names. This reader parses both formats `torch.save` writes:

- the zip format (torch >= 1.6): `<archive>/data.pkl` plus one raw storage per tensor in
  `<archive>/data/<key>`, and `<archive>/byteorder` (absent in files older than torch 1.10,
  which were all little-endian);
- the legacy format (torch < 1.6, e.g. checkpoints from 2018): a magic number, a protocol
  version and system information, each pickled, then the main pickle, the list of storage
  keys and every storage as an int64 element count followed by its raw bytes.

Its unpickler resolves only the globals a state_dict needs (`collections.OrderedDict`,
torch's tensor-rebuild functions and typed storages, `torch.Size`); every other global
becomes an inert placeholder that records its name and never runs, so a checkpoint that
also pickled e.g. its argparse arguments still yields its tensors, while a file that
tries to call `os.system` calls nothing. Tensors come back as `TensorRecord`s: shape and
dtype are known at once, the bytes are read only when `TensorRecord.numpy()` is called,
so checking a 1 GB checkpoint against a model reads none of its data.

Example:
>>> with TorchCheckpointReader("release.pth") as reader:
...     checkpoint = reader.load()        # dicts, lists, numbers and TensorRecords
...     kernel = checkpoint["state_dict"]["module.linear.weight"].numpy()
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from irevnet_tf import validation


class CheckpointError(ValueError):
    """The file is not a PyTorch checkpoint this reader can parse, or it is corrupt."""


# Typed-storage class names as `torch.save` pickles them, and the dtype of their elements.
# bfloat16 has no numpy dtype: it is read as uint16 and widened to float32 (exact).
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# torch.save's legacy format starts with this pickled int, then this protocol version.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001


def _refuse_state(self, state):
    # pickle's BUILD could otherwise overwrite the checked layout of the reader's own
    # objects (e.g. a tensor's offset) after construction.
    raise CheckpointError(f"the pickle tries to set the state of a {type(self).__name__}: "
                          "not a torch.save file.")


class _StorageType:
    """Stands for a torch typed-storage class in the pickle (e.g. `torch.FloatStorage`)."""

    __setstate__ = _refuse_state

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = dtype

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """A reference to one storage of the file: its key, element type and element count."""

    __setstate__ = _refuse_state

    def __init__(self, reader, key, storage_type, numel, view_offset=0):
        self.reader = reader
        self.key = key
        self.storage_type = storage_type
        self.numel = numel
        # Legacy files can pickle a storage that is a view into a larger root storage.
        self.view_offset = view_offset


class TensorRecord:
    """A tensor of the checkpoint: `shape` and `dtype` at once, the values on `numpy()`.

    Attributes:
        shape: tuple of ints.
        dtype: numpy dtype name ('float32', 'int64', ...; 'bfloat16' is returned as
            float32 by `numpy()`).
        storage_key: where the values are in the file (for error messages).
    """

    __slots__ = ("_storage", "_offset", "shape", "_stride", "dtype", "storage_key")
    __setstate__ = _refuse_state

    def __init__(self, storage, offset, shape, stride):
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"a tensor's storage is {type(storage).__name__}, not a "
                                  "storage of the file: the pickle is corrupt or not torch.save's.")
        shape, stride = _int_tuple(shape, "size"), _int_tuple(stride, "stride")
        if len(shape) != len(stride) or not isinstance(offset, int) or offset < 0 or any(
                s < 0 for s in shape + stride):
            raise CheckpointError(f"a tensor of storage {storage.key!r} has an invalid "
                                  f"layout: offset {offset!r}, size {shape}, stride {stride}.")
        if all(shape):
            extent = offset + sum((size - 1) * step for size, step in zip(shape, stride)) + 1
            if extent > storage.numel:
                raise CheckpointError(
                    f"a tensor of shape {shape} reaches element {extent} of storage "
                    f"{storage.key!r}, which has only {storage.numel}: the file is corrupt.")
        self._storage = storage
        self._offset = offset
        self.shape = shape
        self._stride = stride
        self.dtype = storage.storage_type.dtype
        self.storage_key = storage.key

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def numpy(self):
        """Reads the values from the file: a new, C-contiguous numpy array."""
        if not self.size:
            return np.zeros(self.shape, "float32" if self.dtype == "bfloat16" else self.dtype)
        flat = self._storage.reader.read_storage(self._storage)
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self._offset:], shape=self.shape,
            strides=tuple(step * itemsize for step in self._stride), writeable=False)
        array = np.array(view, order="C")
        if self.dtype == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array

    def __repr__(self):
        return f"TensorRecord(shape={self.shape}, dtype={self.dtype})"


def _int_tuple(value, what):
    try:
        items = tuple(value)
    except TypeError:
        raise CheckpointError(f"a tensor's {what} is {value!r}, not a sequence of ints: the "
                              "pickle is corrupt.") from None
    if not all(validation.is_int(item) for item in items):
        raise CheckpointError(f"a tensor's {what} {items!r} holds non-integers: the pickle is "
                              "corrupt.")
    return items


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # torch < 0.4 pickled tensors as _rebuild_tensor(storage, offset, size, stride).
    return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return TensorRecord(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    # A pickled nn.Parameter: its tensor is all a weights file needs.
    return data


class IgnoredObject:
    """What an object of a refused global becomes: inert, remembering only the global's name.

    Calling it, constructing it (pickle's REDUCE / NEWOBJ) or setting its state (BUILD)
    does nothing: no code the file names is imported or run.
    """

    global_name = "?"

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __call__(self, *args, **kwargs):
        return self

    def __repr__(self):
        return f"<ignored {self.global_name}>"


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of a weights file; all others become IgnoredObject types."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "Size"): tuple,
        # Python 3 bytes in protocol-2 pickles are rebuilt with _codecs.encode(str, 'latin1').
        ("_codecs", "encode"): lambda text, encoding="utf-8": str(text).encode(encoding),
    }

    def __init__(self, file, persistent_load):
        # utf-8 as torch.load uses, for checkpoints pickled by Python 2.
        super().__init__(file, encoding="utf-8")
        self._persistent_load = persistent_load
        self.ignored_globals = set()

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        full_name = f"{module}.{name}"
        self.ignored_globals.add(full_name)
        return type(f"Ignored[{full_name}]", (IgnoredObject,), {"global_name": full_name})

    def persistent_load(self, pid):
        return self._persistent_load(pid)


class TorchCheckpointReader:
    """Opens a `torch.save` file (zip or legacy format) and unpickles it safely.

    Use as a context manager; `load()` returns the pickled object with every tensor
    replaced by a `TensorRecord`, whose values can be read until the reader is closed.
    `ignored_globals` names the globals that `load()` replaced by `IgnoredObject`s.

    Args:
        path: the checkpoint file.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: the file is not a checkpoint this reader can parse, or is
            corrupt (the message says which and what to do).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"checkpoint: no file at {self.path!r}.")
        self.ignored_globals = set()
        self._file = open(self.path, "rb")
        self._zip = None
        self._prefix = None
        self._big_endian = False
        self._legacy_offsets = {}
        self._cache = (None, None)
        self._storages = {}
        try:
            self._open_format()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self._cache = (None, None)

    @property
    def format(self):
        """'zip' (torch >= 1.6) or 'legacy' (torch < 1.6)."""
        return "zip" if self._prefix is not None else "legacy"

    # --- formats ---------------------------------------------------------------------

    def _open_format(self):
        if zipfile.is_zipfile(self._file):
            self._file.seek(0)
            try:
                self._zip = zipfile.ZipFile(self._file)
            except (zipfile.BadZipFile, OSError) as error:
                raise CheckpointError(f"checkpoint {self.path!r}: corrupt zip archive "
                                      f"({error}).") from None
            pickles = [name for name in self._zip.namelist()
                       if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                hint = (" It looks like a TorchScript archive (torch.jit.save); save the "
                        "model's state_dict with torch.save instead."
                        if any(n.endswith("/constants.pkl") for n in self._zip.namelist())
                        else "")
                raise CheckpointError(
                    f"checkpoint {self.path!r} is a zip archive but not a torch.save file "
                    f"(expected one '<archive>/data.pkl', found {len(pickles)}).{hint}")
            self._prefix = pickles[0][: -len("data.pkl")]
            byteorder_name = self._prefix + "byteorder"
            if byteorder_name in self._zip.namelist():
                byteorder = self._zip.read(byteorder_name).decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise CheckpointError(f"checkpoint {self.path!r}: unknown byte order "
                                          f"{byteorder!r} in {byteorder_name}.")
                self._big_endian = byteorder == "big"
            return
        self._file.seek(0)
        if _looks_like_tar(self._file):
            raise CheckpointError(
                f"checkpoint {self.path!r} uses PyTorch's oldest (tar) format, which this "
                "reader does not parse. Re-save it with torch >= 1.6: "
                "torch.save(torch.load(old_path), new_path).")
        self._file.seek(0)

    def load(self):
        """Unpickles the checkpoint: dicts, lists, numbers, strings and TensorRecords."""
        if self._file is None:
            raise CheckpointError(f"checkpoint {self.path!r}: the reader is closed.")
        try:
            if self._prefix is not None:
                return self._load_zip()
            return self._load_legacy()
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError,
                KeyError, IndexError, AttributeError, zipfile.BadZipFile, OSError,
                UnicodeDecodeError, RecursionError) as error:
            raise CheckpointError(f"checkpoint {self.path!r} is corrupt or not a torch.save "
                                  f"file: {type(error).__name__}: {error}") from None

    def _unpickle(self, handle, persistent_load):
        unpickler = _RestrictedUnpickler(handle, persistent_load)
        result = unpickler.load()
        self.ignored_globals |= unpickler.ignored_globals
        return result

    def _storage_from_pid(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            return IgnoredObject()  # e.g. legacy ('module', ...) source records
        if len(pid) != 5 and len(pid) != 6:
            raise CheckpointError(f"checkpoint {self.path!r}: unexpected storage record {pid!r}.")
        storage_type, key, numel = pid[1], _ascii(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(
                f"checkpoint {self.path!r}: storage {key!r} has type {storage_type!r}; "
                f"supported: torch.{', torch.'.join(_STORAGE_DTYPES)}.")
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"checkpoint {self.path!r}: storage {key!r} has invalid "
                                  f"size {numel!r}.")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return self._storage(key, storage_type, numel)
        view_key, view_offset, view_numel = view
        root = self._storage(key, storage_type, numel)
        if view_offset < 0 or view_offset + view_numel > numel:
            raise CheckpointError(f"checkpoint {self.path!r}: storage view {view_key!r} lies "
                                  f"outside its root storage {key!r}.")
        return _Storage(self, root.key, storage_type, view_numel, view_offset=view_offset)

    def _storage(self, key, storage_type, numel):
        known = self._storages.get(key)
        if known is None:
            known = self._storages[key] = _Storage(self, key, storage_type, numel)
        return known

    def _load_zip(self):
        with self._zip.open(self._prefix + "data.pkl") as handle:
            data = io.BytesIO(handle.read())
        return self._unpickle(data, self._storage_from_pid)

    def _load_legacy(self):
        def header():
            return _RestrictedUnpickler(self._file, lambda pid: None).load()

        try:
            magic = header()
        except Exception as error:
            raise CheckpointError(
                f"checkpoint {self.path!r} is neither a zip nor a legacy torch.save file "
                f"({type(error).__name__}: {error}).") from None
        if magic != _LEGACY_MAGIC_NUMBER:
            raise CheckpointError(f"checkpoint {self.path!r} is not a torch.save file (no zip "
                                  "archive and no legacy magic number).")
        version = header()
        if version != _LEGACY_PROTOCOL_VERSION:
            raise CheckpointError(f"checkpoint {self.path!r}: legacy protocol version "
                                  f"{version!r}, expected {_LEGACY_PROTOCOL_VERSION}.")
        sys_info = header()
        if isinstance(sys_info, dict):
            self._big_endian = sys_info.get("little_endian", True) is False
        result = self._unpickle(self._file, self._storage_from_pid)
        keys = [_ascii(key) for key in header()]
        # The raw storages follow in the order of `keys`: int64 element count, then bytes.
        offset = self._file.tell()
        file_size = os.fstat(self._file.fileno()).st_size
        for key in keys:
            storage = self._storages.get(key)
            if storage is None:
                raise CheckpointError(f"checkpoint {self.path!r}: storage {key!r} is listed "
                                      "but no tensor refers to it; the file is corrupt.")
            self._file.seek(offset)
            count_bytes = self._file.read(8)
            if len(count_bytes) != 8:
                raise CheckpointError(f"checkpoint {self.path!r} is truncated (storage {key!r}).")
            (count,) = struct.unpack(">q" if self._big_endian else "<q", count_bytes)
            if count != storage.numel:
                raise CheckpointError(
                    f"checkpoint {self.path!r}: storage {key!r} holds {count} elements, its "
                    f"tensors expect {storage.numel}; the file is corrupt.")
            self._legacy_offsets[key] = offset + 8
            offset += 8 + count * storage.storage_type.itemsize
            if offset > file_size:
                raise CheckpointError(f"checkpoint {self.path!r} is truncated (storage {key!r}).")
        missing = sorted(set(self._storages) - set(self._legacy_offsets))
        if missing:
            raise CheckpointError(f"checkpoint {self.path!r}: storages {missing[:5]} have no "
                                  "data; the file is corrupt or truncated.")
        return result

    # --- values ----------------------------------------------------------------------

    def read_storage(self, storage):
        """The elements of `storage` as a flat numpy array (bfloat16 as uint16)."""
        if self._file is None:
            raise CheckpointError(f"checkpoint {self.path!r}: the reader is closed; read "
                                  "tensors inside the `with TorchCheckpointReader(...)` block.")
        cached_key, cached = self._cache
        if cached_key != storage.key:
            cached = self._read_root(self._storages[storage.key])
            self._cache = (storage.key, cached)
        return cached[storage.view_offset: storage.view_offset + storage.numel]

    def _read_root(self, storage):
        storage_type = storage.storage_type
        nbytes = storage.numel * storage_type.itemsize
        if self._prefix is not None:
            name = f"{self._prefix}data/{storage.key}"
            try:
                info = self._zip.getinfo(name)
            except KeyError:
                raise CheckpointError(f"checkpoint {self.path!r} has no record {name!r} for "
                                      "one of its tensors: the file is corrupt.") from None
            if info.file_size != nbytes:
                raise CheckpointError(f"checkpoint {self.path!r}: record {name!r} has "
                                      f"{info.file_size} bytes, its tensors expect {nbytes}.")
            try:
                raw = self._zip.read(name)
            except (zipfile.BadZipFile, OSError) as error:
                raise CheckpointError(f"checkpoint {self.path!r}: cannot read {name!r} "
                                      f"({error}); the file is corrupt.") from None
        else:
            self._file.seek(self._legacy_offsets[storage.key])
            raw = self._file.read(nbytes)
            if len(raw) != nbytes:
                raise CheckpointError(f"checkpoint {self.path!r} is truncated (storage "
                                      f"{storage.key!r}).")
        dtype = np.dtype("uint16" if storage_type.dtype == "bfloat16" else storage_type.dtype)
        dtype = dtype.newbyteorder(">" if self._big_endian else "<")
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)


def _ascii(value):
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _looks_like_tar(handle):
    start = handle.tell()
    try:
        handle.seek(257)
        return handle.read(5) == b"ustar"
    finally:
        handle.seek(start)


def load_torch_checkpoint(path):
    """Reads a whole checkpoint eagerly: the pickled object with numpy arrays for tensors.

    Convenient for small files; `TorchCheckpointReader` reads values lazily instead.
    """
    with TorchCheckpointReader(path) as reader:
        return _materialize(reader.load())


def _materialize(value):
    if isinstance(value, TensorRecord):
        return value.numpy()
    if isinstance(value, collections.OrderedDict):
        return collections.OrderedDict((key, _materialize(item)) for key, item in value.items())
    if isinstance(value, dict):
        return {key: _materialize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_materialize(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_materialize(item) for item in value)
    return value
