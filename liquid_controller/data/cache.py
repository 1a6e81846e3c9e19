"""The prepared-data cache: one compressed ``.npz`` of aligned arrays per bag plus a JSON index.

Decoding images and aligning topics is done once (:func:`liquid_controller.data.dataset.prepare`);
training then only reads arrays. Each bag's entry is keyed by a fingerprint of the bag (its
``metadata.yaml`` bytes and the name, size and modification time of every file in the bag directory)
together with the dataset settings and the cache format version, so re-recording a bag, editing its
files or changing topics, image size or alignment rules invalidates exactly that entry.

Layout of ``CACHE_DIR``::

    index.json                  {"version": V, "entries": {bag_path: {key, file, frames, ...}}}
    <bagname>-<key16>.npz       arrays of every segment of that bag, concatenated, plus
                                segment_offsets (S+1,) so segment s is rows [off[s], off[s+1])
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from liquid_controller.errors import BagError, InputError

CACHE_VERSION = 2   # 2: IMU windows follow the node (first frame of a segment reaches max_dt back)
INDEX_NAME = 'index.json'
# Arrays stored per bag (all with the frame axis first) -- the fields of AlignedSegment.
ARRAY_FIELDS = ('stamps', 'dt', 'images', 'imu', 'imu_count', 'command', 'prev_command', 'truth',
                'truth_mask')


def bag_fingerprint(bag_path):
    """sha256 hex of a bag directory's metadata.yaml bytes and (name, size, mtime_ns) of its files."""
    path = Path(bag_path)
    if not path.is_dir():
        raise BagError(f'{path}: not a rosbag2 directory')
    meta = path / 'metadata.yaml'
    if not meta.is_file():
        raise BagError(f'{path}: no metadata.yaml (not a rosbag2 bag, or not finished writing)')
    h = hashlib.sha256()
    h.update(meta.read_bytes())
    for f in sorted(path.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f'{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()


def cache_key(fingerprint, settings):
    """Key of one bag's cache entry: the bag fingerprint + the dataset settings + the format version."""
    blob = json.dumps({'bag': fingerprint, 'settings': settings, 'version': CACHE_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_index(cache_dir):
    """The cache index (empty when there is none or it is from another cache version)."""
    path = Path(cache_dir) / INDEX_NAME
    if not path.is_file():
        return {'version': CACHE_VERSION, 'entries': {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {'version': CACHE_VERSION, 'entries': {}}  # a broken index only costs a re-prepare
    if not isinstance(data, dict) or data.get('version') != CACHE_VERSION or \
            not isinstance(data.get('entries'), dict):
        return {'version': CACHE_VERSION, 'entries': {}}
    return data


def write_index(cache_dir, index):
    """Write the index atomically (a crash never leaves a half-written index)."""
    _atomic_write(Path(cache_dir) / INDEX_NAME, (json.dumps(index, indent=2, sort_keys=True) + '\n').encode())


def _atomic_write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entry_file_name(bag_path, key):
    stem = ''.join(c if c.isalnum() or c in '-_' else '_' for c in Path(bag_path).name) or 'bag'
    return f'{stem}-{key[:16]}.npz'


def write_segments(path, segments):
    """Store a bag's aligned segments (list of AlignedSegment) as one compressed .npz (atomic)."""
    if not segments:
        raise InputError('segments', 0, 'nothing to cache: the bag produced no aligned frames')
    lengths = [len(s) for s in segments]
    arrays = {name: np.concatenate([getattr(s, name) for s in segments], axis=0) for name in ARRAY_FIELDS}
    arrays['segment_offsets'] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix='.npz.tmp')
    os.close(fd)
    try:
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_segments(path):
    """Load a cached .npz -> list of dicts of arrays, one per segment (no pickle: allow_pickle=False)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ARRAY_FIELDS}
            offsets = data['segment_offsets']
    except (OSError, KeyError, ValueError) as exc:
        raise InputError('cache file', str(path), f'unreadable cache entry (delete it and prepare again): '
                                                  f'{exc}') from None
    return [{name: arr[a:b] for name, arr in arrays.items()} for a, b in zip(offsets[:-1], offsets[1:])]
