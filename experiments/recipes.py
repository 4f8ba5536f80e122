"""One recipe per result of the DirectPred paper (Tian, Chen, Ganguli 2021), as ``ssltheory`` command lines.

A recipe is a list of cells, each an ``ssltheory`` command without ``--out`` (the runner adds ``--out DIR/CELL``).
Training cells name no dataset: ``smoke`` runs them on digits on the CPU in minutes, ``paper`` on the paper's dataset
with its protocol (100 epochs, batch 128, lr 0.03, wd 4e-4, gamma_a 0.996) on a GPU. Paper numbers are Top-1 % of the
linear probe on STL-10 unless noted (directpred.md, section 4); smoke numbers are kNN top-1 on digits and are only
comparable with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCALES = ("smoke", "paper")
SMOKE_TRAIN = ["digits", "--batch-size", "64", "--epochs", "10", "--knn-every", "5"]
PAPER_TRAIN = ["stl10", "--data-dir", "data", "--device", "cuda", "--workers", "8"]


@dataclass(frozen=True)
class Recipe:
    """A paper result: what it shows, the paper's numbers, and the cells that reproduce it."""

    name: str
    result: str
    paper_numbers: str
    cells: dict[str, list[str]] = field(default_factory=dict)
    training: bool = False  # cells are ``train`` runs (dataset added by scale), else complete theory commands
    paper_dataset: list[str] | None = None  # training at paper scale on another dataset (ImageNet)

    def commands(self, scale: str) -> dict[str, list[str]]:
        """``{cell: argv}`` for ``scale`` (smoke | paper)."""
        if not self.training:
            return {k: list(v) for k, v in self.cells.items()}
        base = SMOKE_TRAIN if scale == "smoke" else (self.paper_dataset or PAPER_TRAIN)
        return {k: ["train", *base, *v] for k, v in self.cells.items()}


def _grid(**cells: str) -> dict[str, list[str]]:
    return {k: v.split() for k, v in cells.items()}


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("fig2", "eigenvalues of F and W_p and their alignment during real training (linear predictor)",
           "alignment -> 1 and W_p nearly symmetric within 10 epochs (figure only)",
           _grid(linear="--predictor linear --measure-every 25"), training=True),
    Recipe("fig3", "phase portraits of (p_j, s_j) at tau = 1 for eta in {0, 0.01, 1}",
           "figure only; fixed points p*_+- on the parabola",
           {"phase-portrait": ["phase-portrait", "--eta", "0,0.01,1"]}),
    Recipe("fig4", "p' on the invariant parabola in the three weight-decay regimes",
           "sketch: 0 | p*_- < p*_+ | collapse above eta = tau^2 / (4 (1 + sigma^2))",
           {"fixed-points": ["fixed-points"]}),
    Recipe("fig5", "decoupled modes with EMA: alpha 0.01, beta 0.4, sigma^2 0.5, tau(0) = 0",
           "eta 0 -> p = 0.667; eta 0.04 -> p*_+ = 0.624 from p0 >= 0.05, collapse from 0.01; eta 0.1 collapses "
           "from p0 <= 0.1",
           {"modes": ["simulate", "--model", "modes", "--eta", "0,0.04,0.1"]}),
    Recipe("fig7", "Assumption 1 (W_a = tau W) on the full-matrix dynamics, W_a(0) = 0",
           "normalised correlation of W_a and W stays around 0.9 or higher",
           {"matrix": ["simulate", "--model", "matrix", "--tau0", "0", "--eta", "0,0.01,0.1", "--dim", "16"]}),
    Recipe("fig8", "unsymmetrised W_p flow (Eq. 62) with F = W_p^T W_p: the antisymmetric part vanishes",
           "||B||_F -> 0 always; ||A||_F collapses for large eta or small tau",
           {f"tau{tau}": ["simulate", "--model", "reduced", "--predictor", "linear", "--tau", tau, "--eta",
                          "0.001,0.01,0.05", "--steps", "20000"] for tau in ("1", "0.3")}),
    Recipe("fig9", "||[F, W_p]||_F under the symmetrised flow (Eq. 67)", "blows up when eta is small and/or tau large",
           {"tau1": ["simulate", "--model", "reduced", "--predictor", "symmetric", "--tau", "1", "--eta",
                     "0.001,0.01,0.05", "--steps", "20000"],
            "tau5": ["simulate", "--model", "reduced", "--predictor", "symmetric", "--tau", "5", "--eta", "0,0.001",
                     "--init-scale", "0.05", "--steps", "20000"]}),
    Recipe("table1", "plugging the least-squares linear predictor in every N minibatches (SGD in between)",
           "EMA: 40.67 (N=1), 35.29, 34.60, 35.63 (N=5); no EMA: 39.45, 34.01, 34.58, 32.22; an SGD predictor "
           "reaches 74-75",
           {f"{m}-N{n}": ["--predictor", "optimal", "--freq", n, "--eps", "0.01",
                          *([] if m == "ema" else ["--method", "simsiam"])]
            for m in ("ema", "no-ema") for n in ("1", "2", "3", "5")}, training=True),
    Recipe("table2", "no weight decay: EMA and bias on or off",
           "EMA no-bias 70.62, EMA bias 70.99, no-EMA no-bias 71.36, no-EMA bias 71.37 (wd 4e-4: 74.51)",
           _grid(**{"ema": "--weight-decay 0", "ema-bias": "--weight-decay 0 --predictor-bias",
                    "no-ema": "--weight-decay 0 --method simsiam",
                    "no-ema-bias": "--weight-decay 0 --method simsiam --predictor-bias"}), training=True),
    Recipe("table3", "symmetric vs regular W_p, EMA vs none, 1-layer linear vs 2-layer predictor",
           "linear EMA: sym 75.09, regular 74.51; linear no EMA: sym 36.62 (fails), regular 72.85; "
           "2-layer EMA: sym 71.58, regular 78.85; 2-layer no EMA: sym 35.59, regular 65.98",
           _grid(**{"sym-ema": "--predictor symmetric", "reg-ema": "--predictor linear",
                    "sym-no-ema": "--predictor symmetric --method simsiam",
                    "reg-no-ema": "--predictor linear --method simsiam",
                    "mlp-ema": "--predictor mlp", "mlp-no-ema": "--predictor mlp --method simsiam"}), training=True),
    Recipe("table5", "weight decay on the predictor only (eta_p = 4e-4, eta_s = 0) rescues no-EMA symmetric W_p",
           "no EMA: sym 71.12, regular 71.34; EMA: sym 71.91, regular 70.54",
           _grid(**{"sym-no-ema": "--predictor symmetric --method simsiam --weight-decay 0 "
                                  "--predictor-weight-decay 4e-4",
                    "reg-no-ema": "--predictor linear --method simsiam --weight-decay 0 --predictor-weight-decay 4e-4",
                    "sym-ema": "--predictor symmetric --weight-decay 0 --predictor-weight-decay 4e-4",
                    "reg-ema": "--predictor linear --weight-decay 0 --predictor-weight-decay 4e-4"}), training=True),
    Recipe("table6", "DirectPred over rho and eps (EMA, no bias)",
           "rho 0.3: eps 0 76.77, 0.01 77.11, 0.1 77.86, 0.5 75.06; rho 0.5: 76.65, 76.76, 77.56, 75.22; "
           "SGD linear 74.51",
           {f"rho{rho}-eps{eps}": ["--predictor", "directpred", "--rho", rho, "--eps", eps]
            for rho in ("0.3", "0.5") for eps in ("0", "0.01", "0.1", "0.5")}, training=True),
    Recipe("table7", "DirectPred with p_j = sqrt(max(s_j - c_j, 0)), freq 1 and 2 (eps = -c_j inside the root)",
           "freq 1: c_j 0.1 46.57, 0.05 65.31, -0.05 77.11, -0.1 76.46; freq 2: 75.01, 75.10, 76.83, 76.31",
           {f"c{c}-freq{f}": ["--predictor", "directpred", "--eps-inside", "--eps", str(-float(c)),
                              "--freq", f] for f in ("1", "2") for c in ("0.1", "0.05", "-0.05", "-0.1")},
           training=True),
    Recipe("table8", "DirectPred vs DirectPred every 5 steps vs an SGD-trained linear predictor",
           "STL-10 100 ep: 77.86, 77.54, 75.06; CIFAR-10 100 ep: 85.21, 84.93, 84.49",
           _grid(**{"directpred": "--predictor directpred", "directpred-freq5": "--predictor directpred --freq 5",
                    "sgd-linear": "--predictor linear"}), training=True),
    Recipe("table9", "ImageNet ResNet-50: 2-layer predictor vs linear vs DirectPred",
           "60 ep Top-1: 64.7, 59.4, 64.4; 300 ep: 72.5, 69.9, 72.4",
           _grid(**{"mlp": "--predictor mlp", "linear": "--predictor linear", "directpred": "--predictor directpred"}),
           training=True, paper_dataset=["imagenet", "--data-dir", "data/imagenet", "--backbone", "resnet50",
                                         "--epochs", "60", "--device", "cuda", "--workers", "16"]),
]}
