"""Everything DUET needs to make s3prl 0.4.18 run on this stack, in one place.

Call :func:`install` (``import harness.s3prl.compat; harness.s3prl.compat.install()``) before anything from
s3prl is imported. Nothing in site-packages is edited (except ``--fix-torchaudio``, run once by
scripts/setup.sh, which removes torchaudio's CUDA-only C++ extension so it imports on CPU torch).
``install()`` is idempotent. What it does, break by break (see ../shared/notes/env.md):

====================================  ==========================================================
break in s3prl 0.4.18                 fix
====================================  ==========================================================
``torchaudio.set_audio_backend``      no-op (also ``get_audio_backend``/``list_audio_backends``)
missing (import of s3prl.hub, main)
``torchaudio.load/save`` need         soundfile-backed ``load``/``save``/``info``
torchcodec; ``info`` missing          (:mod:`harness.s3prl.audio_shims`)
``torchaudio.sox_effects`` missing    :mod:`harness.s3prl.audio_shims` registered under that name:
(sv_voxceleb1, speech_commands, ...)  channels / rate / gain / norm / pad / trim / silence
``from sox import Transformer``       placeholder ``sox`` module (only if pysox is absent;
(sv_voxceleb1, never used)            its Transformer raises a clear error if ever called)
``HfFolder``/``Repository`` removed   placeholders raising a clear error (``--push_to_hf_hub``
from huggingface_hub (runner)         needs network anyway)
``-e ckpt``: UnpicklingError on       ``torch.serialization.add_safe_globals([argparse.Namespace])``
``argparse.Namespace``
voxceleb1 caches its file lists in    cache keyed by (corpus path, split-file stat) under
site-packages (stale across corpora)  :func:`cache_root`
sv_voxceleb1 caches wav lengths in    same, keyed by (train root path + mtime); the length
site-packages; 12 joblib processes    scan runs in threads, at most ``os.cpu_count()``
sv_voxceleb1 ``.cuda()`` on the       the mask follows the features' device
attention mask (fails on CPU)
ctc ``libriphone`` corpus module      :mod:`harness.s3prl.libriphone`
missing from the sdist
ctc ``load_dataset`` pops             each call gets a copy of the corpus config
``num_workers`` from the config: the
2nd dataloader silently uses 12
====================================  ==========================================================

Not patched (and not on the paths DUET uses): ``np.int`` in s3prl's own wav2vec2/wavlm masking.
``run_downstream.py`` also always passes ``-c`` (the sdist ships no configs) and defaults
``--device`` to cpu when no GPU is visible.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.abc
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Callable

_INSTALLED = False
_MARK = "_duet_compat"


# ---------------------------------------------------------------------------------------------
# torchaudio fix at set-up time
# ---------------------------------------------------------------------------------------------
def torchaudio_lib_dir() -> Path | None:
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "lib"


def fix_torchaudio() -> list[Path]:
    """Remove torchaudio's compiled extension (a CUDA build that cannot load on CPU torch).

    torchaudio then imports as pure Python; resample, MelSpectrogram, MFCC, kaldi fbank etc. work.
    Returns the removed files.
    """
    lib = torchaudio_lib_dir()
    if lib is None:
        raise SystemExit("torchaudio is not installed in this environment: run scripts/setup.sh")
    removed = []
    for so in sorted(lib.glob("*.so*")):
        so.unlink()
        removed.append(so)
    return removed


# ---------------------------------------------------------------------------------------------
# cache location (voxceleb1 / sv_voxceleb1 file lists)
# ---------------------------------------------------------------------------------------------
def cache_root() -> Path:
    """Where s3prl's dataset caches go: ``$DUET_S3PRL_CACHE`` or ``~/.cache/duet/s3prl``."""
    return Path(os.environ.get("DUET_S3PRL_CACHE") or Path.home() / ".cache" / "duet" / "s3prl")


def _stat_key(*paths) -> str:
    """A key that changes when any path moves or is rewritten (resolved path + mtime + size)."""
    h = hashlib.sha1()
    for p in paths:
        p = Path(p).expanduser()
        try:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_mtime_ns}|{st.st_size};".encode())
        except OSError:
            h.update(f"{p}|missing;".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# module-level shims
# ---------------------------------------------------------------------------------------------
def _patch_torchaudio() -> None:
    import torchaudio

    from harness.s3prl import audio_shims

    if getattr(torchaudio, _MARK, False):
        return
    torchaudio._duet_original = {k: getattr(torchaudio, k, None) for k in ("load", "save", "info")}
    torchaudio.load = audio_shims.load
    torchaudio.save = audio_shims.save
    torchaudio.info = audio_shims.info
    torchaudio.AudioMetaData = audio_shims.AudioMetaData
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend=None: None
    if not hasattr(torchaudio, "get_audio_backend"):
        torchaudio.get_audio_backend = lambda: "soundfile"
    if not hasattr(torchaudio, "list_audio_backends"):
        torchaudio.list_audio_backends = lambda: ["soundfile"]
    try:  # a real sox_effects (torchaudio < 2.9 with its extension) wins
        import torchaudio.sox_effects as real  # noqa: F401
        if not hasattr(real, "apply_effects_file"):
            raise ImportError
    except (ImportError, OSError):
        sys.modules["torchaudio.sox_effects"] = audio_shims
        torchaudio.sox_effects = audio_shims
    setattr(torchaudio, _MARK, True)


def _patch_huggingface_hub() -> None:
    import huggingface_hub as hf

    def _placeholder(name: str):
        def _refuse(*a, **k):
            raise RuntimeError(f"huggingface_hub.{name} no longer exists in huggingface_hub "
                               f"{hf.__version__} and DUET runs offline: --push_to_hf_hub / --hub "
                               f"huggingface are not supported")

        return type(name, (), {"__init__": _refuse, "get_token": staticmethod(_refuse),
                               "save_token": staticmethod(_refuse), "__doc__": f"DUET placeholder for {name}"})

    for name in ("HfFolder", "Repository"):
        if not hasattr(hf, name):
            setattr(hf, name, _placeholder(name))


def _patch_sox_module() -> None:
    if "sox" in sys.modules or importlib.util.find_spec("sox") is not None:
        return
    mod = types.ModuleType("sox", "DUET placeholder for pysox (imported, never used, by s3prl sv_voxceleb1)")

    class Transformer:  # noqa: D401
        def __init__(self, *a, **k):
            raise RuntimeError("pysox is not installed; DUET's sox effects live in torchaudio.sox_effects "
                               "(harness/s3prl/audio_shims.py). `pip install sox` if you need pysox itself.")

    mod.Transformer = Transformer
    mod.__duet_placeholder__ = True
    sys.modules["sox"] = mod


def _patch_torch_load() -> None:
    import torch

    torch.serialization.add_safe_globals([argparse.Namespace])


def _register_libriphone() -> None:
    """Provide s3prl.downstream.ctc.corpus.libriphone when the installed s3prl lacks it."""
    name = "s3prl.downstream.ctc.corpus"
    if name + ".libriphone" in sys.modules:
        return
    spec = importlib.util.find_spec("s3prl")
    root = Path(spec.origin).parent if spec and spec.origin else None
    if root is not None and (root / "downstream" / "ctc" / "corpus" / "libriphone.py").is_file():
        return  # a full s3prl source tree: use its own
    from harness.s3prl import libriphone

    if name not in sys.modules:
        pkg = types.ModuleType(name, "DUET stand-in for s3prl's ctc corpus package (missing from the sdist)")
        pkg.__path__ = []  # a package with no files: only the registered submodules exist
        pkg.__package__ = name
        sys.modules[name] = pkg
    sys.modules[name].libriphone = libriphone
    sys.modules[name + ".libriphone"] = libriphone


# ---------------------------------------------------------------------------------------------
# patches applied to s3prl modules right after they are imported
# ---------------------------------------------------------------------------------------------
def _patch_voxceleb1_dataset(mod) -> None:
    cls = mod.SpeakerClassifiDataset
    if getattr(cls.__init__, _MARK, False):
        return
    orig = cls.__init__

    @functools.wraps(orig)
    def __init__(self, mode, file_path, meta_data, max_timestep=None):
        key = _stat_key(file_path, meta_data)
        mod.CACHE_PATH = str(cache_root() / "voxceleb1" / key) + os.sep
        return orig(self, mode, file_path, meta_data, max_timestep)

    setattr(__init__, _MARK, True)
    cls.__init__ = __init__


def _threaded_parallel(n_jobs=None, **kw):
    """joblib.Parallel on threads, at most os.cpu_count() (s3prl asks for 12 processes)."""
    from joblib import Parallel

    n = max(1, min(int(n_jobs or 1), os.cpu_count() or 1))
    return Parallel(n_jobs=n, prefer="threads", **kw)


def _patch_sv_voxceleb1_dataset(mod) -> None:
    cls = mod.SpeakerVerifi_train
    if getattr(cls.__init__, _MARK, False):
        return
    orig = cls.__init__
    mod.Parallel = _threaded_parallel

    @functools.wraps(orig)
    def __init__(self, vad_config, key_list, file_path, meta_data, max_timestep=None, n_jobs=12):
        # the length cache lives at dirname(__file__)/.wav_lengths/<key>_length.pt: point
        # __file__ at a directory keyed by the training roots for the duration of the call
        d = cache_root() / "sv_voxceleb1" / _stat_key(*file_path)
        d.mkdir(parents=True, exist_ok=True)
        real = mod.__file__
        mod.__file__ = str(d / "dataset.py")
        try:
            return orig(self, vad_config, key_list, file_path, meta_data, max_timestep, n_jobs)
        finally:
            mod.__file__ = real

    setattr(__init__, _MARK, True)
    cls.__init__ = __init__


@contextlib.contextmanager
def _cuda_goes_to(device):
    """Within the block, ``tensor.cuda()`` moves to ``device`` (no-op on a CPU run)."""
    import torch

    orig = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self.to(device)
    try:
        yield
    finally:
        torch.Tensor.cuda = orig


def _patch_sv_voxceleb1_expert(mod) -> None:
    cls = mod.DownstreamExpert
    if getattr(cls.forward, _MARK, False):
        return
    orig = cls.forward

    @functools.wraps(orig)
    def forward(self, mode, features, *args, **kwargs):
        device = features[0].device
        if device.type == "cuda":
            return orig(self, mode, features, *args, **kwargs)
        with _cuda_goes_to(device):
            return orig(self, mode, features, *args, **kwargs)

    setattr(forward, _MARK, True)
    cls.forward = forward


def _patch_ctc_expert(mod) -> None:
    orig = mod.load_dataset
    if getattr(orig, _MARK, False):
        return

    @functools.wraps(orig)
    def load_dataset(split, tokenizer, corpus):
        return orig(split, tokenizer, dict(corpus))

    setattr(load_dataset, _MARK, True)
    mod.load_dataset = load_dataset


PATCHES: dict[str, Callable[[types.ModuleType], None]] = {
    "s3prl.downstream.voxceleb1.dataset": _patch_voxceleb1_dataset,
    "s3prl.downstream.sv_voxceleb1.dataset": _patch_sv_voxceleb1_dataset,
    "s3prl.downstream.sv_voxceleb1.expert": _patch_sv_voxceleb1_expert,
    "s3prl.downstream.ctc.expert": _patch_ctc_expert,
}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, patch):
        self._loader, self._patch = loader, patch

    def __getattr__(self, name):  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)


class _PostImportPatcher(importlib.abc.MetaPathFinder):
    """Applies :data:`PATCHES` to s3prl modules as they finish importing."""

    def find_spec(self, fullname, path, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def _install_patches() -> None:
    if not any(isinstance(f, _PostImportPatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportPatcher())
    for name, patch in PATCHES.items():  # modules imported before install()
        if name in sys.modules:
            patch(sys.modules[name])


def install() -> None:
    """Apply every shim s3prl 0.4.18 needs on this stack (idempotent; call before importing s3prl)."""
    global _INSTALLED
    if _INSTALLED:
        return
    check()
    _patch_torchaudio()
    _patch_huggingface_hub()
    _patch_sox_module()
    _patch_torch_load()
    _register_libriphone()
    _install_patches()
    _INSTALLED = True


def installed() -> bool:
    return _INSTALLED


def check() -> None:
    """Import the stack once; raise a clear error naming the fix if anything is broken."""
    try:
        import torch  # noqa: F401
        import torchaudio  # noqa: F401
    except OSError as e:  # the CUDA extension is still there
        raise SystemExit(f"torchaudio failed to import ({e}); run: python -m harness.s3prl.compat --fix-torchaudio") from e
    for mod, fix in (("soundfile", "pip install soundfile==0.14.0"), ("s3prl", "bash scripts/setup.sh"),
                     ("editdistance", "pip install editdistance==0.8.1")):
        if importlib.util.find_spec(mod) is None:
            raise SystemExit(f"compat: python package {mod!r} is missing from this environment; run: {fix}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.s3prl.compat", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fix-torchaudio", action="store_true", help="remove torchaudio's CUDA-only .so files")
    p.add_argument("--check", action="store_true", help="check that torch/torchaudio/s3prl import with the shims")
    a = p.parse_args(argv)
    if a.fix_torchaudio:
        for f in fix_torchaudio():
            print(f"removed {f}")
    if a.check:
        install()
        import s3prl.hub  # noqa: F401  (the import that breaks without the shims)

        print("compat: torch/torchaudio/s3prl import OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
