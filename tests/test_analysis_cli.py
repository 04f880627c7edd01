"""harness abx | cca | probe | plot through the real CLI on the tiny corpus (s3prl fbank, and a
seeded random DUET upstream), plus the CLI's error messages."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

import harness.corpus  # noqa: E402,F401  (a broken import fails CI)


def test_abx_cli_fbank_and_plot(tiny_corpus, run_cli, tmp_path):
    out = tmp_path / "abx.csv"
    run_cli("abx", "--upstream", "fbank", "--corpus", tiny_corpus, "--split", "dev", "--cache", tmp_path / "c",
            "--out", out, "--quiet")
    df = pd.read_csv(out)
    assert set(df["metric"]) == {"abx_within", "abx_across"} and (df["stream"] == "hidden_states").all()
    assert df["value"].between(0, 50).all()                 # fbank beats chance on phones
    # speaker-bootstrap interval (1000 resamples by default) around each score, sizes, chance, warnings
    assert (df["ci_lo"] <= df["value"]).all() and (df["value"] <= df["ci_hi"]).all() and (df["ci_lo"] < df["ci_hi"]).all()
    assert (df["n_bootstrap"] == 1000).all() and (df["chance"] == 50.0).all()
    assert (df["n_items_total"] >= df["n_items"]).all() and (df["n_speakers"] == 2).all()
    across = df[df["metric"] == "abx_across"]["warnings"]   # tiny: 2 speakers < 5
    assert across.str.contains("2 speakers < 5").all()
    assert (out.parent / "abx.csv.meta.json").is_file()
    p = run_cli("plot", "abx", out, "--out", tmp_path / "abx.png")
    assert (tmp_path / "abx.png").stat().st_size > 5000 and "wrote" in p.stdout
    assert (tmp_path / "abx.pdf").stat().st_size > 1000


def test_cca_cli_suggest_layers_and_probe(tiny_corpus, run_cli, tmp_path):
    cfg = tmp_path / "duet.yaml"
    cfg.write_text("random_init: tiny\nseed: 0\n")
    out = tmp_path / "cca.csv"
    run_cli("cca", "--upstream", "jooci", "-g", cfg, "--corpus", tiny_corpus, "--features", "content",
            "--views", "phone,word,fbank", "--trials", "1", "--cache", tmp_path / "c", "--out", out,
            "--suggest-layers", "--quiet", "--plot")
    df = pd.read_csv(out)
    assert set(df["metric"]) == {"cca_phone", "cca_word", "cca_fbank"}
    assert df["layer"].nunique() >= 2 and df["value"].between(-1, 1).all()
    layers = yaml.safe_load(out.with_suffix(".layers.yaml").read_text())["layers"]
    a, b = map(int, layers["content"].split("-"))
    assert 0 <= a <= b < df["layer"].nunique()
    # the loop closes: run_downstream.py -g and harness run --layers take the file as it is
    from harness.superb.cells import parse_layers_arg
    from upstream.expert_base import ExpertOptions

    yml = str(out.with_suffix(".layers.yaml"))
    assert ExpertOptions.load(yml).layers == layers
    assert parse_layers_arg([yml])["content"] == [layers["content"]]
    assert out.with_suffix(".png").is_file()
    pout = tmp_path / "probe.csv"
    run_cli("probe", "--upstream", "jooci", "-g", cfg, "--corpus", tiny_corpus, "--max-frames", "3000",
            "--mi", "--mi-steps", "100", "--layers", "0-1", "--cache", tmp_path / "c", "--out", pout, "--quiet")
    df = pd.read_csv(pout)
    assert {"probe_speaker", "probe_phone", "mi_club", "mi_infonce"} <= set(df["metric"])
    assert set(df[df["metric"] == "probe_phone"]["stream"]) == {"content", "other"}
    ph = df[df["metric"] == "probe_phone"]
    assert ph["value"].between(0, 1).all() and (ph["n_classes"] > 5).all()
    # sample sizes and small-sample warnings on tiny (2 dev speakers, a few held-out utterances)
    sp = df[df["metric"] == "probe_speaker"]
    assert (sp["n_test_groups"] > 0).all() and sp["warnings"].str.contains("speakers < 5").all()
    mi = df[df["metric"].str.startswith("mi_")]
    assert set(mi.columns) >= {"bound", "converged", "n_test_groups"} and mi["warnings"].str.len().gt(0).all()
    cdf = pd.read_csv(out)
    assert {"n_test", "n_test_groups", "warnings"} <= set(cdf.columns)
    # the per-model figure: harness plot model, PNG + PDF
    p = run_cli("plot", "model", out, pout, "--model", "jooci", "--out", tmp_path / "model-jooci")
    assert (tmp_path / "model-jooci.png").stat().st_size > 5000 and (tmp_path / "model-jooci.pdf").is_file()
    bad = run_cli("plot", "model", out, "--model", "nosuch", check=False)
    assert bad.returncode == 2 and "nosuch" in bad.stderr
    assert run_cli("plot", "model", out, check=False).returncode == 2      # --model is required


def test_cli_errors(tiny_corpus, tmp_path, capsys):
    """Bad input: exit status 2 and one line naming the problem (in-process: same parser and code)."""
    from harness.cli import main

    rc = main(["abx", "--upstream", "fbank", "--corpus", str(tiny_corpus), "--layers", "3", "--cache",
               str(tmp_path / "c"), "--out", str(tmp_path / "x.csv"), "--quiet"])
    assert rc == 2 and "valid layers are 0-0" in capsys.readouterr().err
    bad = tmp_path / "bad.item"
    bad.write_text("#file onset offset #phone prev-phone next-phone speaker\nf 0.1 0.2 a b c s\nf 0.1 a b c s\n")
    assert main(["abx", "--upstream", "fbank", "--item", str(bad), "--quiet"]) == 2
    assert "bad.item:3" in capsys.readouterr().err
    ok = tmp_path / "ok.item"
    ok.write_text("#file onset offset #phone prev-phone next-phone speaker\nnot_there 0.1 0.2 a b c s\n")
    assert main(["abx", "--upstream", "fbank", "--item", str(ok), "--audio-dir", str(tmp_path), "--quiet"]) == 2
    assert "not_there" in capsys.readouterr().err
