"""The s3prl bridge behind ``run_downstream.py``: s3prl's own runner with DUET's upstreams.

``main(argv)``:

1. :func:`harness.s3prl.compat.install` (every shim s3prl 0.4.18 needs here);
2. registers DUET's upstream names on ``s3prl.hub`` (``upstream.hub.register``), so
   ``-u learn2diss`` works next to s3prl's built-ins (``fbank``, ``mfcc``, ...);
3. parses ``argv`` with **s3prl's own parser** (taken from ``s3prl.run_downstream`` unchanged, so
   the flags are exactly s3prl's, ``-h`` included);
4. checks what s3prl would otherwise fail on deep inside (or worse, silently): the config file,
   the downstream, the upstream name, ``-e``/``-i``/``-k``/``-g`` paths, the ``-o`` syntax and the
   data paths the config points at, with an error naming the path and the fix;
5. hands over to ``s3prl.run_downstream.main()``.

On a machine without a GPU ``--device cpu`` is added unless ``--device`` is given (s3prl's
default is cuda).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import glob
import importlib.util
import io
import sys
import types
from pathlib import Path

PROG = "run_downstream.py"


class BridgeError(SystemExit):
    """Bad input to run_downstream.py: the message names the path / value and the fix."""

    def __init__(self, msg: str):
        super().__init__(f"{PROG}: error: {msg}")


# data paths each downstream reads, as (config path under downstream_expert, kind)
# kind: "dir", "file", "files" (a list of files)
DATA_PATHS: dict[str, list[tuple[str, str]]] = {
    "voxceleb1": [("datarc.file_path", "dir"), ("datarc.meta_data", "file")],
    "sv_voxceleb1": [("datarc.file_path", "dir"), ("datarc.dev_meta_data", "file"),
                     ("datarc.test_meta_data", "file")],
    "emotion": [("datarc.root", "dir"), ("datarc.meta_data", "dir")],
    "ctc": [("corpus.csv_dir", "dir"), ("corpus.lexicon", "files"), ("text.vocab_file", "file"),
            ("corpus.libri_root", "optional dir")],
    "asr": [("datarc.libri_root", "dir"), ("datarc.bucket_file", "dir"), ("datarc.dict_path", "file")],
}
# sub-paths that must exist below a checked directory
DATA_SUBPATHS: dict[str, list[tuple[str, str]]] = {
    "sv_voxceleb1": [("datarc.file_path", "dev/wav"), ("datarc.file_path", "test/wav")],
}


def register_upstreams(hub) -> list[str]:
    """Put DUET's upstream factories and the feature cache's `duet_cached` on ``hub`` (s3prl.hub),
    and make s3prl's Featurizer refuse an unknown ``-s`` key of a DUET expert. Returns the names."""
    from harness.features.cache import register as register_cache
    from harness.s3prl.hub import register

    return list(register(hub)) + register_cache(hub)


def s3prl_parser() -> argparse.ArgumentParser:
    """The ArgumentParser that ``s3prl.run_downstream.get_downstream_args`` builds.

    s3prl builds and parses in one function; we let it build, and stop it at ``parse_args``.
    """
    import s3prl.run_downstream as rd

    class _Got(Exception):
        pass

    class _Grab(argparse.ArgumentParser):
        def parse_args(self, *a, **k):
            raise _Got(self)

    # only s3prl.run_downstream's own reference to argparse is swapped, never argparse itself
    shim = types.SimpleNamespace(**vars(argparse))
    shim.ArgumentParser = _Grab
    rd.argparse = shim
    try:
        rd.get_downstream_args()
    except _Got as got:
        parser = got.args[0]
        parser.__class__ = argparse.ArgumentParser      # an ordinary parser from here on
    finally:
        rd.argparse = argparse
    parser.prog = PROG
    return parser


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_override(text: str | None) -> None:
    """s3prl's ``-o`` syntax: ``config.a.b=VALUE,,args.x=VALUE`` (exactly one '=' per item)."""
    if text is None or text.lower() == "none":
        return
    for item in text.split(",,"):
        item = item.strip()
        if item.count("=") != 1:
            raise BridgeError(f"-o item {item!r} must be KEY=VALUE with exactly one '=' (items are separated "
                              f"by ',,'; quote values containing '=' is not possible in s3prl's syntax)")
        key = item.split("=")[0].strip()
        head, *rest = key.split(".")
        if head not in ("config", "args") or not rest or (head == "args" and len(rest) != 1):
            raise BridgeError(f"-o key {key!r} must start with 'config.' (e.g. config.runner.total_steps=100) "
                              f"or be 'args.NAME'")


def effective_config(args) -> tuple[dict, str, argparse.Namespace]:
    """(config with -o applied, its source, args) as s3prl will see them. Validates -c / -e.

    With ``-e`` the args and config come from the checkpoint, as in s3prl's get_downstream_args.
    """
    import torch
    import yaml
    from s3prl.utility.helper import override

    args = copy.copy(args)
    if args.past_exp:
        path = Path(args.past_exp)
        if path.is_dir():
            ckpts = sorted(glob.glob(str(path / "states-*.ckpt")), key=lambda p: int(p.split("-")[-1].split(".")[0]))
            if not ckpts:
                raise BridgeError(f"-e {path}: the directory holds no states-*.ckpt; pass a checkpoint file "
                                  f"(e.g. {path}/dev-best.ckpt) or a finished experiment directory")
            path = Path(ckpts[-1])
        if not path.is_file():
            raise BridgeError(f"-e {path}: checkpoint not found; pass an s3prl checkpoint written by "
                              f"-m train (e.g. result/downstream/NAME/dev-best.ckpt)")
        try:  # weights_only: tensors, containers and s3prl's argparse.Namespace only; no code runs. Added for
            # good, as compat.install() does (s3prl's own torch.load of the same file needs it; the
            # safe_globals context manager would remove it again on exit)
            torch.serialization.add_safe_globals([argparse.Namespace])
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - report which file is bad, whatever the reason
            raise BridgeError(f"-e {path}: cannot read this s3prl checkpoint ({type(e).__name__}: {e}); "
                              f"re-run training or pass another checkpoint") from e
        config, source = ckpt["Config"], f"checkpoint {path}"
        saved = vars(ckpt["Args"])
        for k, v in saved.items():
            if k not in ("mode", "evaluate_split", "override", "backend", "local_rank", "past_exp", "device"):
                setattr(args, k, v)
    else:
        if args.config is None:
            raise BridgeError("-c CONFIG is required: the s3prl sdist ships no downstream configs; use one of "
                              "downstream_configs/{real,mini}/<task>.yaml (see README, 's3prl bridge')")
        cfg_path = Path(args.config)
        if not cfg_path.is_file():
            raise BridgeError(f"config file {cfg_path} does not exist; pass an existing YAML with -c, e.g. "
                              f"downstream_configs/mini/sid.yaml")
        try:
            config = yaml.safe_load(cfg_path.read_text())
        except yaml.YAMLError as e:
            raise BridgeError(f"config file {cfg_path} is not valid YAML: {e}") from e
        if not isinstance(config, dict) or "runner" not in config or "downstream_expert" not in config:
            raise BridgeError(f"config file {cfg_path} is not an s3prl downstream config (needs top-level "
                              f"'runner' and 'downstream_expert' sections)")
        source = f"config {cfg_path}"
    check_override(args.override)
    if args.override is not None and args.override.lower() != "none":
        with contextlib.redirect_stderr(io.StringIO()):  # s3prl prints each override; it will again
            override(args.override, args, config)
    return config, source, args


def check_downstream(name: str | None) -> None:
    if not name:
        raise BridgeError("-d DOWNSTREAM is required (e.g. voxceleb1, sv_voxceleb1, emotion, ctc, asr)")
    if importlib.util.find_spec(f"s3prl.downstream.{name}") is None or \
            importlib.util.find_spec(f"s3prl.downstream.{name}.expert") is None:
        import s3prl.downstream as d

        known = sorted(p.name for p in Path(d.__file__).parent.iterdir() if (p / "expert.py").is_file())
        near = difflib.get_close_matches(name, known, n=3)
        raise BridgeError(f"unknown downstream -d {name!r}" + (f"; did you mean {', '.join(near)}?" if near else "")
                          + f" (s3prl downstreams: {', '.join(known)})")


def check_upstream(args, hub) -> None:
    if getattr(args, "hub", "torch") == "huggingface":
        raise BridgeError("--hub huggingface needs the network; DUET runs offline: use -u NAME from s3prl.hub")
    if not args.upstream:
        raise BridgeError("-u UPSTREAM is required (e.g. fbank, mfcc, learn2diss, jooci, barlow_twins)")
    if not callable(getattr(hub, args.upstream, None)) or args.upstream.startswith("_"):
        names = [n for n in dir(hub) if not n.startswith("_") and callable(getattr(hub, n))]
        near = difflib.get_close_matches(args.upstream, names, n=3)
        hint = ""
        from upstream.registry import MODELS

        if args.upstream in MODELS:
            hint = " (DUET's upstream package did not register: is upstream/hub.py present in this checkout?)"
        raise BridgeError(f"unknown upstream -u {args.upstream!r}{hint}"
                          + (f"; did you mean {', '.join(near)}?" if near else ""))
    for flag, value in (("-k", args.upstream_ckpt), ("-g", args.upstream_model_config)):
        looks_like_path = "/" in str(value) and not str(value).startswith(("http://", "https://"))
        if value and looks_like_path and not Path(value).exists():
            raise BridgeError(f"{flag} {value}: file not found; pass an existing path")
    if args.init_ckpt and not Path(args.init_ckpt).is_file():
        raise BridgeError(f"-i {args.init_ckpt}: checkpoint not found")


def check_data_paths(config: dict, source: str, downstream: str) -> None:
    """Every data path the downstream will open exists; else name it and show the -o to fix it."""
    expert = config.get("downstream_expert", {})
    problems = []
    for dotted, kind in DATA_PATHS.get(downstream, []):
        value = _get(expert, dotted)
        key = f"config.downstream_expert.{dotted}"
        optional = kind.startswith("optional ")
        kind = kind.removeprefix("optional ")
        if value is None:
            if not optional:
                problems.append(f"{key} is not set in {source}")
            continue
        values = value if kind == "files" else [value]
        if kind == "files" and not isinstance(value, (list, tuple)):
            values = [value]
        for v in values:
            p = Path(str(v))
            ok = p.is_dir() if kind == "dir" else p.is_file()
            if not ok:
                what = "directory" if kind == "dir" else "file"
                problems.append(f"{key} = {v!r}: {what} does not exist")
    for dotted, sub in DATA_SUBPATHS.get(downstream, []):
        value = _get(expert, dotted)
        if value is not None and Path(str(value)).is_dir() and not (Path(str(value)) / sub).is_dir():
            problems.append(f"config.downstream_expert.{dotted} = {value!r} has no {sub}/ "
                            f"(expected the VoxCeleb1 layout <root>/{{dev,test}}/wav/idNNNNN/...)")
    if downstream == "emotion":
        meta, fold = _get(expert, "datarc.meta_data"), _get(expert, "datarc.test_fold") or "fold1"
        if meta is not None and Path(str(meta)).is_dir():
            for part in ("train_meta_data.json", "test_meta_data.json"):
                f = Path(str(meta)) / str(fold).replace("fold", "Session") / part
                if not f.is_file():
                    problems.append(f"{f} (meta data of {fold}) does not exist")
    if problems:
        first = problems[0].split(" ")[0]
        raise BridgeError(
            f"data paths of -d {downstream} ({source}):\n  - " + "\n  - ".join(problems)
            + f"\nfix: point them at your data with -o, e.g. -o \"{first}=/path/to/data\" "
              f"(several items joined by ',,'), or edit the config; for a generated corpus use "
              f"`harness corpus make` and downstream_configs/mini/ with the overrides from `harness list tasks`")


def default_device(argv: list[str]) -> list[str]:
    """Add ``--device cpu`` when the user gave no --device and no GPU is visible."""
    if any(a == "--device" or a.startswith("--device=") for a in argv) or "-h" in argv or "--help" in argv:
        return argv
    import torch

    if torch.cuda.is_available():
        return argv
    print(f"[{PROG}] no GPU visible: using --device cpu", file=sys.stderr)
    return [*argv, "--device", "cpu"]


def prepare(argv: list[str]):
    """Install compat, register DUET upstreams, parse and validate argv. Returns (args, argv)."""
    from harness.s3prl import compat

    compat.install()
    import s3prl.hub as hub

    register_upstreams(hub)
    parser = s3prl_parser()
    argv = default_device(list(argv))
    args = parser.parse_args(argv)  # exits 2 with s3prl's own usage message on a bad flag
    config, source, merged = effective_config(args)
    check_downstream(merged.downstream)
    check_upstream(merged, hub)
    check_data_paths(config, source, merged.downstream)
    return args, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, argv = prepare(argv)
    import s3prl.run_downstream as rd

    old = sys.argv
    sys.argv = [PROG, *argv]
    try:
        rd.main()
    finally:
        sys.argv = old
    return 0
