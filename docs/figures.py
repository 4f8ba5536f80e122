"""The README's three figures, from the runs ``make docs-figures`` makes: ``python docs/figures.py RUNS`` reads
RUNS/phase-portrait/phase_portrait.png, RUNS/digits/dynamics.png and RUNS/compare/compare.png, crops the panels the
README shows (one panel each, so that the three read side by side: the eigenvalues of W_p during the run; s_j
measured beside the ODE), scales them to at most 640 px wide and writes them as 256-colour PNGs into docs/ (each
well under 150 KB). A figure of several panels would be stacked (a list of boxes)."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent
WIDTH = 640
FIGURES = {
    # name in docs/: (file under RUNS, the panels' crop boxes as fractions (left, top, right, bottom), stacked)
    "phase_portrait.png": ("phase-portrait/phase_portrait.png", [(0.0, 0.0, 1.0, 1.0)]),
    "dynamics.png": ("digits/dynamics.png", [(0.26, 0.033, 0.497, 0.352)]),  # the eigenvalues of sym(W_p)
    "compare.png": ("compare/compare.png", [(0.245, 0.0, 0.49, 1.0)]),  # s_j measured (solid) vs the ODE (dashed)
}


def crop(img: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    return img.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def shrink(src: Path, dest: Path, boxes: list[tuple[float, float, float, float]]) -> Path:
    img = Image.open(src).convert("RGB")
    panels = [crop(img, box) for box in boxes]
    out = Image.new("RGB", (max(p.width for p in panels), sum(p.height for p in panels)), "white")
    y = 0
    for p in panels:
        out.paste(p, (0, y))
        y += p.height
    if out.width > WIDTH:
        out = out.resize((WIDTH, round(out.height * WIDTH / out.width)), Image.LANCZOS)
    out.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
    return dest


def main(runs: str) -> None:
    for name, (src, boxes) in FIGURES.items():
        dest = shrink(Path(runs) / src, DOCS / name, boxes)
        print(f"wrote {dest} ({dest.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/docs-figures")
