"""One plotting style for every DUET figure: a fixed colour per model, a fixed line style per
stream, short labels, legends outside the axes, PNG + PDF side by side.

* :func:`model_key` / :func:`model_label` parse the results' model names
  (``jooci[jooci-compact@33b0fa53]``, ``jooci{random-compact}``, ``fbank``) into a registry key
  (``jooci``, ``jooci:random``, ``fbank``), a short label (``jooci``, ``jooci (random init)``) and
  the checkpoint tag that goes in a caption, never in a legend.
* :func:`model_color`: :data:`MODEL_COLORS` for the known models; any other key gets a colour from
  :data:`EXTRA_COLORS` (disjoint from the fixed ones) chosen by a stable hash of the key, so a
  model has the same colour in every figure and every run.
* :func:`stream_style`: content solid, other dashed, utterance dash-dot; baselines (fbank, MFCC,
  fbank_no_cmvn) grey/black and drawn as horizontal reference lines by the plots. A baseline scored at
  another frame rate is named ``fbank_no_cmvn{50Hz}``: labelled ``fbank_no_cmvn @ 50 Hz`` and drawn
  thicker and lighter than its native-rate line.
* :func:`save` writes ``<stem>.png`` and ``<stem>.pdf`` (vector) and returns both paths.

Example::

    color = model_color("jooci[jooci-compact@33b0fa53]")     # same as model_color("jooci")
    label = series_label("jooci[jooci-compact@33b0fa53]", "content")   # 'jooci · content'
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

# Okabe-Ito (colour-blind safe) for the DUET models; greys for the signal-processing baselines.
MODEL_COLORS: dict[str, str] = {
    "learn2diss": "#0072B2",        # blue
    "jooci": "#D55E00",             # vermillion
    "barlow_twins": "#009E73",      # bluish green
    "hubert_compact": "#CC79A7",    # reddish purple
    "learn2diss:random": "#56B4E9",  # sky blue: the random-init twin of learn2diss
    "jooci:random": "#E69F00",      # orange: the random-init twin of jooci
    "barlow_twins:random": "#8FD3B6",
    "hubert_compact:random": "#E5B7D3",
    "fbank": "#404040",             # dark grey
    "mfcc": "#9A9A9A",              # light grey
    "fbank_no_cmvn": "#000000",     # black
}
BASELINES = ("fbank", "mfcc", "fbank_no_cmvn")
# Colours for models not in the registry: none equals a fixed colour (checked in the tests).
EXTRA_COLORS = ("#882255", "#117733", "#332288", "#AA4499", "#44AA99", "#999933", "#661100",
                "#6699CC", "#DDCC77", "#AA4466", "#4477AA", "#228833")

STREAM_STYLES: dict[str, dict] = {
    "content": {"linestyle": "-", "marker": "o"},
    "other": {"linestyle": "--", "marker": "s"},
    "utterance": {"linestyle": "-.", "marker": "^"},
    "hidden_states": {"linestyle": "-", "marker": "D"},
}
BASELINE_LINES = {"fbank": ":", "mfcc": (0, (6, 2, 1, 2)), "fbank_no_cmvn": (0, (4, 2))}  # dotted / dash-dot / dashed
CHANCE_STYLE = {"color": "black", "linestyle": "-", "linewidth": 0.8, "alpha": 0.55}
NA_HATCH = "///"
DPI = 150

_RATE = re.compile(r"^(?P<hz>\d+(?:\.\d+)?)Hz$")     # a baseline's frame-rate tag: {50Hz}
_NAME = re.compile(r"^(?P<up>[^\[\]{}]+)(?:\[(?P<tag>[^\]]*)\])?(?:\{(?P<cfg>[^}]*)\})?$")


def parse_model(name: str) -> tuple[str, str, str]:
    """(upstream, checkpoint tag, model-config stem) of a results model name ``up[tag]{cfg}``."""
    m = _NAME.match(str(name).strip())
    if not m:
        return str(name), "", ""
    return m["up"], m["tag"] or "", m["cfg"] or ""


def is_random(name: str) -> bool:
    up, tag, cfg = parse_model(name)
    return "random" in tag.lower() or "random" in cfg.lower()


def model_key(name: str) -> str:
    """Registry key of a model name: the upstream, ``<upstream>:random`` for a random-init twin."""
    up = parse_model(name)[0]
    return f"{up}:random" if is_random(name) else up


def model_label(name: str) -> str:
    """Short legend label: ``jooci``, ``jooci (random init)``, ``fbank``; no checkpoint hash."""
    up, _, cfg = parse_model(name)
    if is_random(name):
        return f"{up} (random init)"
    rate = _RATE.match(cfg)
    return f"{up} @ {rate['hz']} Hz" if rate else up


def model_caption(name: str) -> str | None:
    """What identifies a model's weights, for a caption/footnote: ``jooci: jooci-compact@33b0fa53``."""
    up, tag, cfg = parse_model(name)
    parts = [p for p in (tag, f"-g {cfg}" if cfg and not _RATE.match(cfg) else "") if p]
    return f"{model_label(name)}: {', '.join(parts)}" if parts else None


def is_baseline(name: str) -> bool:
    return model_key(name) in BASELINES


def model_color(name: str) -> str:
    """Fixed colour of a model (registry), else a stable hash-chosen colour from EXTRA_COLORS."""
    key = model_key(name)
    if key in MODEL_COLORS:
        return MODEL_COLORS[key]
    h = int(hashlib.sha1(key.encode()).hexdigest(), 16)
    return EXTRA_COLORS[h % len(EXTRA_COLORS)]


def stream_style(stream: str) -> dict:
    return dict(STREAM_STYLES.get(str(stream), {"linestyle": "-", "marker": "o"}))


def baseline_style(name: str) -> dict:
    """Line style of a baseline drawn as a horizontal reference line (one at another frame rate than
    its own, ``{50Hz}``, thicker and lighter)."""
    rate = _RATE.match(parse_model(name)[2])
    if rate and float(rate["hz"]) < 100:
        return {"linestyle": BASELINE_LINES.get(model_key(name), "-."), "linewidth": 2.6, "alpha": 0.45}
    return {"linestyle": BASELINE_LINES.get(model_key(name), "-."), "linewidth": 1.4}


def series_label(model: str, stream: str) -> str:
    """``jooci · content``; a baseline or a single-stream model's ``hidden_states`` is just the model."""
    if is_baseline(model) or str(stream) == "hidden_states":
        return model_label(model)
    return f"{model_label(model)} · {stream}"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8, "pdf.fonttype": 42,
                         "svg.fonttype": "none", "hatch.linewidth": 0.6})
    return plt


def stem_of(out: str | Path) -> Path:
    """An output stem: ``x.png`` / ``x.pdf`` / ``x`` -> ``x``."""
    out = Path(out)
    return out.with_suffix("") if out.suffix.lower() in (".png", ".pdf") else out


def save(fig, out: str | Path, close: bool = True) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (for READMEs) and ``<stem>.pdf`` (vector, for papers); returns both.
    No timestamps in the files, so re-rendering the same data gives the same PDF."""
    stem = stem_of(out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    fig.savefig(png, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return png, pdf


def legend_outside(fig, handles, labels, ncol: int = 1) -> None:
    """One legend for the whole figure, right of the axes (never over the data); nothing when empty."""
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, ncol=ncol)


def caption(fig, lines: list[str]) -> None:
    """Footnote text under the axes (checkpoint tags, what the bands are)."""
    lines = [ln for ln in dict.fromkeys(lines) if ln]
    if lines:
        fig.text(0.0, -0.02, "\n".join(lines), ha="left", va="top", fontsize=7, color="#333333",
                 transform=fig.transFigure)
