"""Live per-chain plots fed by `StoreReader.read_new()`.

Bokeh figures with one `ColumnDataSource` per chain and series; new points are streamed, and
each series keeps a fixed budget of points (`BucketSeries`), so an update costs the same at step
100 and at step 100k. Chain c has the same colour in every figure.
"""

from __future__ import annotations

import math

import numpy as np
from bokeh.models import BoxAnnotation, ColumnDataSource, Legend, LegendItem, Span
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from devinterp_ui.ui.decimate import BucketSeries

NORMS = {
    "scaled_grad": "gradient term |(lr/2) n_beta G g|",
    "noise": "noise term |sqrt(lr G) xi|",
    "localization": "localization term |(lr/2) G gamma (w - w0)|",
    "distance": "distance |w - w0|",
}
COSINES = {
    "cos_grad_noise": ("dot_grad_noise", "scaled_grad", "noise", "cos(gradient, noise)"),
    "cos_grad_prior": ("dot_grad_prior", "scaled_grad", "prior", "cos(gradient, prior)"),
    "cos_prior_noise": ("dot_prior_noise", "prior", "noise", "cos(prior, noise)"),
}


def chain_color(chain: int) -> str:
    return Category10_10[chain % 10]


def _figure(
    title: str,
    x_label: str,
    y_label: str,
    *,
    log_y: bool = False,
    height: int = 260,
    width: int = 520,
):
    fig = figure(
        title=title,
        height=height,
        width=width,
        y_axis_type="log" if log_y else "linear",
        tools="pan,wheel_zoom,box_zoom,reset,save",
        toolbar_location="above",
        output_backend="canvas",
        sizing_mode="stretch_width",
    )
    fig.xaxis.axis_label = x_label
    fig.yaxis.axis_label = y_label
    fig.title.text_font_size = "13px"
    return fig


class ChainLines:
    """One figure with a line per chain, each a decimated, streamed series."""

    def __init__(self, key: str, fig, num_chains: int, budget: int, legend: bool = False):
        self.key = key
        self.fig = fig
        self.series = [BucketSeries(budget) for _ in range(num_chains)]
        # Named "<key>:chain<c>" so browser tests can find each chain's line.
        self.sources = [
            ColumnDataSource(data={"x": [], "y": []}, name=f"{key}:chain{c}")
            for c in range(num_chains)
        ]
        renderers = [
            fig.line("x", "y", source=src, color=chain_color(c), line_width=1.6, alpha=0.9)
            for c, src in enumerate(self.sources)
        ]
        if legend:
            items = [LegendItem(label=f"chain {c}", renderers=[r]) for c, r in enumerate(renderers)]
            fig.add_layout(
                Legend(
                    items=items,
                    location="top_left",
                    orientation="horizontal",
                    label_text_font_size="11px",
                    spacing=4,
                    padding=2,
                ),
                "above",
            )

    def extend(self, chain: int, x: np.ndarray, y: np.ndarray) -> None:
        keep = np.isfinite(y)
        if keep.any():
            self.series[chain].extend(x[keep], y[keep])

    def push(self) -> None:
        """Send what changed since the last push to the browser."""
        for series, source in zip(self.series, self.sources, strict=True):
            reset, x, y = series.take_new()
            if reset:
                source.data = {"x": x, "y": y}
            elif len(x):
                source.stream({"x": x, "y": y})

    def points(self) -> int:
        return sum(len(s.data["x"]) for s in self.sources)


class LivePlots:
    """Every live figure of one run.

    init_loss: mean loss at the checkpoint (drawn as a line); burnin: steps shaded as burn-in;
    true_lambda: drawn on the LLC plot when known (known-lambda demos).
    """

    def __init__(
        self,
        num_chains: int,
        observables: list[str],
        *,
        burnin: int = 0,
        init_loss: float | None = None,
        true_lambda: float | None = None,
        save_metrics: bool = True,
        budget: int = 600,
    ):
        self.num_chains = num_chains
        self.loss = ChainLines(
            "loss",
            _figure("Sampling loss per step", "step", "loss (nats)"),
            num_chains,
            budget,
            legend=True,
        )
        self.llc = ChainLines(
            "llc", _figure("Running LLC estimate per chain", "step", "λ̂"), num_chains, budget
        )
        self.init_span = Span(
            dimension="width",
            line_dash="dashed",
            line_color="black",
            line_width=1.5,
            visible=init_loss is not None,
            location=init_loss if init_loss is not None else 0.0,
        )
        self.loss.fig.add_layout(self.init_span)
        for fig in (self.loss.fig, self.llc.fig):
            # One annotation per figure: a Bokeh model belongs to a single document.
            fig.add_layout(
                BoxAnnotation(
                    left=0,
                    right=max(burnin, 0),
                    fill_color="#999999",
                    fill_alpha=0.15,
                    visible=burnin > 0,
                )
            )
        self.true_span = Span(
            dimension="width",
            line_dash="dotted",
            line_color="#d62728",
            line_width=2,
            visible=true_lambda is not None,
            location=true_lambda if true_lambda is not None else 0.0,
        )
        self.llc.fig.add_layout(self.true_span)
        small = {"height": 190, "width": 330}
        self.norms = (
            {
                name: ChainLines(
                    f"norm:{name}",
                    _figure(title, "step", "L2 norm", log_y=True, **small),
                    num_chains,
                    budget,
                )
                for name, title in NORMS.items()
            }
            if save_metrics
            else {}
        )
        self.cosines = (
            {
                name: ChainLines(
                    f"cos:{name}", _figure(spec[3], "step", "cosine", **small), num_chains, budget
                )
                for name, spec in COSINES.items()
            }
            if save_metrics
            else {}
        )
        self.observables = {
            obs: ChainLines(
                f"obs:{obs}",
                _figure(f"Observable '{obs}': mean loss per draw", "draw", "loss (nats)", **small),
                num_chains,
                budget,
            )
            for obs in observables
        }

    @property
    def all_lines(self) -> list[ChainLines]:
        return [
            self.loss,
            self.llc,
            *self.norms.values(),
            *self.cosines.values(),
            *self.observables.values(),
        ]

    def set_init_loss(self, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            self.init_span.location = float(value)
            self.init_span.visible = True

    def update(self, new) -> None:
        """Add the rows of a `NewRows` (see `devinterp_ui.live.reader`) and push them."""
        steps, draws = new.steps, new.draws
        if steps.sizes.get("row", 0):
            chain = steps["chain"].values
            step = steps["step"].values
            for c in np.unique(chain):
                sel = chain == c
                x = step[sel].astype(float)
                self.loss.extend(c, x, steps["loss"].values[sel])
                self.llc.extend(c, x, steps["llc"].values[sel])
                metrics = {
                    n[len("metrics_") :]: steps[n].values[sel].astype(float)
                    for n in steps.data_vars
                    if n.startswith("metrics_")
                }
                for name, lines in self.norms.items():
                    if name in metrics:
                        lines.extend(c, x, metrics[name])
                for name, lines in self.cosines.items():
                    cos = cosine(metrics, *COSINES[name][:3])
                    if cos is not None:
                        lines.extend(c, x, cos)
        if draws.sizes.get("row", 0):
            chain = draws["chain"].values
            for c in np.unique(chain):
                sel = chain == c
                x = draws["draw"].values[sel].astype(float)
                for obs, lines in self.observables.items():
                    key = f"loss_{obs}"
                    if key in draws:
                        lines.extend(c, x, draws[key].values[sel])
        for lines in self.all_lines:
            lines.push()

    def points(self) -> int:
        """Points currently held by the browser-side sources (bounded by the budget)."""
        return sum(lines.points() for lines in self.all_lines)


def cosine(metrics: dict[str, np.ndarray], dot: str, a: str, b: str) -> np.ndarray | None:
    """dot / (|a| |b|) per step. |prior| = |localization + weight_decay| is exact when one of the
    two is zero (the usual case) and sqrt(|loc|^2 + |wd|^2) otherwise."""
    if dot not in metrics:
        return None
    norms = dict(metrics)
    if "localization" in metrics and "weight_decay" in metrics:
        norms["prior"] = np.sqrt(metrics["localization"] ** 2 + metrics["weight_decay"] ** 2)
    if a not in norms or b not in norms:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        out = metrics[dot] / (norms[a] * norms[b])
    return np.where(np.isfinite(out), out, np.nan)
