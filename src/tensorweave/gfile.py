"""``tw.gfile`` and ``tw.io.gfile``: TF1's file functions (``tf.gfile.Exists``,
``tf.gfile.GFile``, ...) and their TF 1.13+ lowercase names, on the local file system.

Example::

    if not tw.gfile.Exists(model_dir):
        tw.gfile.MakeDirs(model_dir)
    with tw.gfile.GFile(os.path.join(model_dir, "vocab.txt"), "w") as f:
        f.write("\\n".join(words))
"""

from __future__ import annotations

import glob as _glob
import os
import shutil

from tensorweave.framework import errors


def GFile(name, mode="r"):  # noqa: N802  (TF's name)
    """``open(name, mode)``; a missing file raises ``tw.errors.NotFoundError``."""
    try:
        return open(name, mode)  # noqa: SIM115  (the caller closes it, as with tf.gfile)
    except FileNotFoundError:
        raise errors.NotFoundError(None, None, f"{name}; No such file or directory") from None


Open = FastGFile = GFile


def Exists(path):  # noqa: N802
    return os.path.exists(path)


def IsDirectory(path):  # noqa: N802
    return os.path.isdir(path)


def MakeDirs(path):  # noqa: N802
    """Creates ``path`` and its parents; an existing directory is fine."""
    os.makedirs(path, exist_ok=True)


def MkDir(path):  # noqa: N802
    try:
        os.mkdir(path)
    except FileExistsError:
        raise errors.AlreadyExistsError(None, None, f"{path}; File exists") from None


def ListDirectory(path):  # noqa: N802
    """The entries of ``path`` (names, not paths), sorted."""
    if not os.path.isdir(path):
        raise errors.NotFoundError(None, None, f"Could not find directory {path}")
    return sorted(os.listdir(path))


def Glob(pattern):  # noqa: N802
    return sorted(_glob.glob(pattern))


def Remove(path):  # noqa: N802
    try:
        os.remove(path)
    except FileNotFoundError:
        raise errors.NotFoundError(None, None, f"{path}; No such file or directory") from None


def DeleteRecursively(path):  # noqa: N802
    if not os.path.exists(path):
        raise errors.NotFoundError(None, None, f"{path}; No such file or directory")
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def Copy(oldpath, newpath, overwrite=False):  # noqa: N802
    if os.path.exists(newpath) and not overwrite:
        raise errors.AlreadyExistsError(None, None, f"{newpath}; File exists")
    shutil.copyfile(oldpath, newpath)


def Rename(oldname, newname, overwrite=False):  # noqa: N802
    if os.path.exists(newname) and not overwrite:
        raise errors.AlreadyExistsError(None, None, f"{newname}; File exists")
    os.replace(oldname, newname)


def Walk(top, in_order=True):  # noqa: N802
    """``(dirname, subdirs, files)`` for every directory under ``top``."""
    yield from os.walk(top, topdown=in_order)


# the lowercase names of tf.io.gfile
exists, isdir, makedirs, mkdir, listdir, glob = Exists, IsDirectory, MakeDirs, MkDir, \
    ListDirectory, Glob
remove, rmtree, copy, rename, walk = Remove, DeleteRecursively, Copy, Rename, Walk

__all__ = ["GFile", "Open", "FastGFile", "Exists", "IsDirectory", "MakeDirs", "MkDir",
           "ListDirectory", "Glob", "Remove", "DeleteRecursively", "Copy", "Rename", "Walk",
           "exists", "isdir", "makedirs", "mkdir", "listdir", "glob", "remove", "rmtree", "copy",
           "rename", "walk"]
