"""``ssltheory collapse``: the collapse paper's offline metric (collapse.md B1) from spectra, runs and state dicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli
from ssltheory.practice.measure.quantities import collapse_auc, spectrum_auc
from ssltheory.practice.studies.collapse import FIGURES, read_spectra

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "collapse_resnet18_spectra.json"
"""The collapse paper's six ResNet-18 spectra (512 values each) with the AUC its own notebook computes."""
TABLE_B18 = {"1percent": (0.610, 401), "5percent": (0.748, 259), "10percent": (0.845, 160),
             "20percent": (0.879, 125), "50percent": (0.871, 133), "100percent": (0.858, 147)}
"""collapse.md B1.8: AUC (sigma, official) and k_eq per training fraction of ImageNet."""


def spectra() -> dict:
    return json.loads(FIXTURE.read_text())["spectra"]


def centred_features(sigma: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, d) features U diag(sigma) V^T whose columns already have mean 0: U's columns are an orthonormal basis of
    the span of a centred Gaussian matrix, so they are orthogonal to the ones vector and centring leaves sigma."""
    rng = np.random.default_rng(seed)
    d = len(sigma)
    A = rng.standard_normal((n, d))
    U, _ = np.linalg.qr(A - A.mean(0))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (U * sigma) @ V.T


def test_the_papers_six_spectra_give_its_aucs_from_sigma_and_from_features():
    for i, (name, entry) in enumerate(spectra().items()):
        sigma = np.asarray(entry["sigma"])
        direct = spectrum_auc(sigma)
        assert direct["auc"] == pytest.approx(entry["auc_official"], abs=1e-6), name
        assert spectrum_auc(sigma[::-1])["auc"] == direct["auc"]  # any order: sorted first
        X = centred_features(sigma, 520, seed=i)
        shift = np.random.default_rng(100 + i).standard_normal(len(sigma)) * 10 * sigma[0]
        for feats in (X, X + shift):  # a mean shift is centred away
            got = collapse_auc(feats)
            assert got["auc"] == pytest.approx(entry["auc_official"], abs=1e-6), name
            assert got["k_eq"] == pytest.approx(direct["k_eq"], abs=1e-3)
            np.testing.assert_allclose(got["cumulative"], direct["cumulative"], atol=1e-9)
    flat = spectrum_auc(np.ones(64))
    assert flat["auc"] == pytest.approx(65 / 128) and flat["k_eq"] == pytest.approx(64)
    assert spectrum_auc([3.0])["auc"] == pytest.approx(1.0)  # rank one


def official_auc(X: torch.Tensor) -> float:
    """The official code's AUC (save_reprs_clean.py, plot_collapse.ipynb): ``S = torch.svd(X).S`` of the centred
    features, ``np.cumsum(S) / S.sum()``, its mean; written out here, not imported."""
    S = torch.svd(X - X.mean(0)).S.numpy()
    return float(np.mean(np.cumsum(S) / S.sum()))


def test_fewer_samples_than_dimensions_keep_min_n_d_singular_values_as_the_official_code():
    """N = 20 < d = 64: torch.svd keeps 20 singular values and the curve is their mean; zeros padded to d = 64 (a
    curve that sits at 1 for the 44 added values) gave 0.885 against 0.632 on the issue's matrix, 0.882 against
    0.622 on this Gaussian one."""
    X = torch.from_numpy(np.random.default_rng(0).standard_normal((20, 64)))
    got = collapse_auc(X)
    want = official_auc(X)
    assert len(got["sigma"]) == len(got["cumulative"]) == 20
    assert got["auc"] == pytest.approx(want, abs=1e-12) == pytest.approx(0.6222, abs=1e-4)
    assert got["k_eq"] == pytest.approx(1 + 40 * (1 - want))
    padded = float(np.mean(np.cumsum(np.r_[got["sigma"], np.zeros(44)]) / np.sum(got["sigma"])))
    assert padded == pytest.approx(0.8819, abs=1e-4)  # what zero-padding to d reported instead
    wide = torch.from_numpy(np.random.default_rng(1).standard_normal((300, 64)))
    assert collapse_auc(wide)["auc"] == pytest.approx(official_auc(wide), abs=1e-12)  # N > d: unchanged


def test_the_spectra_file_through_the_command_reproduces_table_b18(tmp_path):
    r = cli("collapse", "--spectra", str(FIXTURE), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "collapse.json").read_text())
    for name, (auc, k_eq) in TABLE_B18.items():
        e = doc["spectra"][name]
        assert e["auc"] == pytest.approx(auc, abs=1e-3) and e["auc"] == pytest.approx(e["auc_official"], abs=1e-6)
        assert e["k_eq"] == pytest.approx(k_eq, abs=0.5) and e["d"] == 512 and e["n"] is None
    assert doc["sweep"]["x"] == [1, 5, 10, 20, 50, 100] and doc["sweep"]["x_label"] == "percent"
    assert doc["sweep"]["log"]
    for f in (*FIGURES, "collapse.csv", "config.json"):
        assert (tmp_path / "out" / f).stat().st_size > 0, f
    rows = (tmp_path / "out" / "collapse.csv").read_text().splitlines()
    assert rows[0].startswith("name,auc,k_eq,d,n") and len(rows) == 7
    # collapse.json is itself a spectra file; a .npy, a .txt and the official {stds: S} .pt hold one spectrum each
    sigma = np.asarray(spectra()["5percent"]["sigma"])
    np.save(tmp_path / "five.npy", sigma)
    np.savetxt(tmp_path / "five.txt", sigma)
    torch.save({"stds": torch.tensor(sigma, dtype=torch.float32)}, tmp_path / "five_svd.pt")
    again = [s for f in ("out/collapse.json", "five.npy", "five.txt", "five_svd.pt") for s in
             read_spectra(tmp_path / f)]
    assert len(again) == 9 and [s.label for s in again[:6]] == [1, 5, 10, 20, 50, 100]
    for s in again[:6]:
        assert s.metrics()["auc"] == doc["spectra"][s.name]["auc"]
        assert s.given == {"auc_official": doc["spectra"][s.name]["auc_official"]}
    for s in again[6:]:
        assert s.metrics()["auc"] == pytest.approx(0.748032, abs=1e-6) and s.name.startswith("five")
    r = cli("collapse", "--spectra", str(tmp_path / "five.npy"), "--spectra", str(tmp_path / "five.txt"),
            "--labels", "a,b", "--out", str(tmp_path / "two"))
    assert r.returncode == 0, r.stderr
    two = json.loads((tmp_path / "two" / "collapse.json").read_text())
    assert two["sweep"]["ticks"] == ["a", "b"] and (tmp_path / "two" / "auc_sweep.png").exists()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from ssltheory.practice.config import TrainConfig
    from ssltheory.practice.engine.train import train

    folder = tmp_path_factory.mktemp("collapse") / "run"
    train(TrainConfig(dataset="digits", epochs=1, max_steps=5, batch_size=64, measure_every=5, probe_size=64,
                      proj_hidden=32, proj_dim=32, knn_every=0, device="cpu"), folder)
    return folder


def test_a_training_run_gives_its_backbones_auc_over_the_whole_train_split(run, tmp_path):
    r = cli("collapse", str(run), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    e = json.loads((tmp_path / "out" / "collapse.json").read_text())["spectra"]["run"]
    d = e["d"]
    assert (d, e["n"], e["step"], e["kind"], e["l2_normalised"]) == (128, 1297, 5, "run", False)
    assert (d + 1) / (2 * d) <= e["auc"] <= 1 and e["k_eq"] == pytest.approx(1 + 2 * d * (1 - e["auc"]))
    for f in FIGURES[:3]:
        assert (tmp_path / "out" / f).stat().st_size > 0, f
    assert not (tmp_path / "out" / "auc_sweep.png").exists()  # one input: no sweep
    r = cli("collapse", str(run), "--l2-normalise", "--out", str(tmp_path / "l2"), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    l2 = json.loads((tmp_path / "l2" / "collapse.json").read_text())
    assert l2["spectra"]["run"]["l2_normalised"] and "l2-normalised" in l2["normalisation"]
    assert l2["spectra"]["run"]["auc"] != e["auc"]


def test_a_state_dict_is_unwrapped_and_read_on_the_dataset(tmp_path):
    from ssltheory.practice.data.datasets import DigitsDataset
    from ssltheory.practice.measure.evaluate import extract
    from ssltheory.practice.models import resnet

    torch.manual_seed(0)
    net = resnet("resnet18", 1, small_input=True)
    state = {"module.encoder." + k: v for k, v in net.state_dict().items()}
    state["module.encoder.fc.0.weight"] = torch.randn(2048, 512)  # the official code's projector lives in fc
    torch.save({"arch": "resnet18", "epoch": 0, "state_dict": state}, tmp_path / "checkpoint_0099.pth.tar")
    r = cli("collapse", "--state-dict", str(tmp_path / "checkpoint_0099.pth.tar"), "--arch", "resnet18",
            "--dataset", "digits", "--out", str(tmp_path / "out"), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    (e,) = json.loads((tmp_path / "out" / "collapse.json").read_text())["spectra"].values()
    want = collapse_auc(extract(net, DigitsDataset("train"), torch.device("cpu"))[0])
    assert (e["d"], e["n"], e["arch"]) == (512, 1297, "resnet18")
    assert e["auc"] == pytest.approx(want["auc"], abs=1e-9)


def _bad_files(tmp: Path) -> None:
    np.save(tmp / "matrix.npy", np.ones((3, 4)))
    (tmp / "nested.json").write_text(json.dumps({"spectra": {"a": {"sigma": [[1, 2], [3, 4]]}}}))
    (tmp / "negative.txt").write_text("3\n-1\n")
    (tmp / "nospectra.json").write_text(json.dumps({"sigma": "x"}))
    (tmp / "empty").mkdir()
    (tmp / "afile.txt").write_text("1\n")
    torch.save({"conv1.weight": torch.zeros(64, 1, 3, 3)}, tmp / "half.pt")


BAD = [
    (["nothere"], "nothere"),
    (["{tmp}/empty"], "config.json"),
    (["{tmp}/afile.txt"], "--spectra"),
    (["--spectra", "{tmp}/matrix.npy"], "(3, 4)"),
    (["--spectra", "{tmp}/nested.json"], "'a'"),
    (["--spectra", "{tmp}/negative.txt"], "-1"),
    (["--spectra", "{tmp}/nospectra.json"], "spectra"),
    (["--spectra", "{tmp}/missing.json"], "missing.json"),
    (["--spectra", "{tmp}/afile.txt", "--labels", "1,2"], "--labels 1,2"),
    (["--state-dict", "{tmp}/half.pt", "--arch", "resnet101", "--dataset", "digits"], "resnet101"),
    (["--state-dict", "{tmp}/half.pt", "--arch", "resnet18"], "--dataset"),
    (["--state-dict", "{tmp}/half.pt", "--arch", "resnet18", "--dataset", "mnist9"], "mnist9"),
    (["--state-dict", "{tmp}/half.pt", "--arch", "resnet18", "--dataset", "digits"], "missing keys"),
    (["--spectra", "{tmp}/afile.txt", "--arch", "resnet18"], "--arch"),
    ([], "nothing to measure"),
]


@pytest.mark.parametrize(("args", "named"), BAD, ids=[" ".join(a) or "none" for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, named):
    _bad_files(tmp_path)
    r = cli("collapse", *[a.format(tmp=tmp_path) for a in args], "--out", str(tmp_path / "out"), "--device", "cpu")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ssltheory: error:") and "expected" in lines[0], r.stderr
    assert named in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
