"""`LivePlots`: every live figure of one run, fed by `StoreReader.read_new()`, as a Viewer.

One instance per run (the Dashboard makes a new one at each Start or opened store). `update(new)`
adds the rows of a `NewRows` and streams them; `__panel__` lays the figures out with the notes
that say why a plot is empty or why its axis looks flat.
"""

from __future__ import annotations

import math

import numpy as np
import panel as pn
import param
from bokeh.models import BoxAnnotation, Span

from devinterp_ui.ui.figures import ChainLines, cosine, make_figure

__all__ = ["COSINES", "NORMS", "LivePlots", "cosine"]

# Short titles fit a 260 px figure; the formulas go into the caption above the grid.
NORMS = {
    "scaled_grad": "gradient term",
    "noise": "noise term",
    "localization": "localization term",
    "distance": "distance from w₀",
}
COSINES = {
    "cos_grad_noise": ("dot_grad_noise", "scaled_grad", "noise", "cos(gradient, noise)"),
    "cos_grad_prior": ("dot_grad_prior", "scaled_grad", "prior", "cos(gradient, prior)"),
    "cos_prior_noise": ("dot_prior_noise", "prior", "noise", "cos(prior, noise)"),
}
# Figures that stay empty without a prior (localization = weight decay = 0).
PRIOR_FIGURES = ("norm:localization", "cos:cos_grad_prior", "cos:cos_prior_noise")
TERMS_CAPTION = (
    "Norms of the update's terms: gradient |(lr/2) n_beta G ∇L|, noise |√(lr G) ξ|, "
    "localization |(lr/2) G γ (w − w₀)| (G: preconditioner, 1 for SGLD); cosines between "
    "gradient, prior (localization + weight decay) and noise."
)
# A trace whose largest |value| exceeds its median |value| this many times flattens the other
# lines on a linear axis: say so, and point at the log-y option.
DIVERGING_RATIO = 1e3
NOTE_STYLE = {"font-size": "12px", "color": "#5f4b00"}
# Columns of the small-figure grids: each figure is at least 240 px wide (figures.py), and a
# notebook cell is about 850 px, so at most 3 per row.
NORM_COLUMNS = 2
MAX_COLUMNS = 3


class LivePlots(pn.viewable.Viewer):
    """The live figures of one run: loss and running LLC per chain, SGLD terms, observables.

    init_loss: mean loss at the checkpoint (dashed line); burnin: steps shaded as burn-in;
    true_lambda: dotted on the LLC plot when known; prior: the run has localization or weight
    decay (else the prior plots are replaced by a note saying why they would be empty).
    """

    num_chains = param.Integer(default=4, bounds=(1, None), constant=True)
    observables = param.List(default=[], item_type=str, constant=True)
    burnin = param.Integer(default=0, bounds=(0, None), constant=True)
    true_lambda = param.Number(default=None, allow_None=True, constant=True)
    save_metrics = param.Boolean(default=True, constant=True)
    prior = param.Boolean(default=True, constant=True, doc="localization or weight decay > 0")
    budget = param.Integer(default=600, bounds=(2, None), constant=True)
    log_y = param.Boolean(default=False, doc="Loss and LLC on a log y axis (diverging runs).")
    note = param.String(default="", doc="Why the axes look the way they do, if they need a word.")
    empty = param.Boolean(default=True, doc="No point plotted yet.")

    def __init__(self, num_chains: int = 4, observables=(), **params):
        init_loss = params.pop("init_loss", None)
        super().__init__(num_chains=num_chains, observables=list(observables), **params)
        chains, budget = self.num_chains, self.budget
        self.loss = ChainLines(
            "loss",
            make_figure("Sampling loss per step", "step", "loss (nats)"),
            chains,
            budget,
            legend=True,
            log_fig=make_figure("Sampling loss per step (log)", "step", "loss", log_y=True),
        )
        self.llc = ChainLines(
            "llc",
            make_figure("Running LLC per chain", "step", "λ̂"),
            chains,
            budget,
            log_fig=make_figure("Running LLC per chain (log)", "step", "λ̂", log_y=True),
        )
        self.init_spans = []
        for fig in self.loss.figures:
            span = Span(dimension="width", line_dash="dashed", line_color="black", line_width=1.5)
            span.visible, span.location = False, 0.0
            fig.add_layout(span)
            self.init_spans.append(span)
        self.burnin_boxes = []
        for fig in (*self.loss.figures, *self.llc.figures):
            # One annotation per figure: an annotation belongs to a single plot.
            box = BoxAnnotation(
                left=0,
                right=max(self.burnin, 0),
                fill_color="#999999",
                fill_alpha=0.15,
                visible=self.burnin > 0,
            )
            fig.add_layout(box)
            self.burnin_boxes.append(box)
        self.true_spans = []
        for fig in self.llc.figures:
            span = Span(dimension="width", line_dash="dotted", line_color="#d62728", line_width=2)
            span.visible = self.true_lambda is not None
            span.location = self.true_lambda if self.true_lambda is not None else 0.0
            fig.add_layout(span)
            self.true_spans.append(span)
        small = {"height": 200, "width": 300}
        self.norms: dict[str, ChainLines] = {}
        self.cosines: dict[str, ChainLines] = {}
        if self.save_metrics:
            for name, title in NORMS.items():
                if self.prior or f"norm:{name}" not in PRIOR_FIGURES:
                    fig = make_figure(title, "step", "L2 norm", log_y=True, **small)
                    self.norms[name] = ChainLines(
                        f"norm:{name}", fig, chains, budget, positive=True
                    )
            for name, spec in COSINES.items():
                if self.prior or f"cos:{name}" not in PRIOR_FIGURES:
                    fig = make_figure(spec[3], "step", "cosine", **small)
                    self.cosines[name] = ChainLines(f"cos:{name}", fig, chains, budget)
        self.observable_lines = {
            obs: ChainLines(
                f"obs:{obs}",
                make_figure(f"{_short(obs)}: loss per draw", "draw", "loss (nats)", **small),
                chains,
                budget,
            )
            for obs in self.observables
        }
        self.set_init_loss(init_loss)
        self._panes: list[tuple[pn.pane.Bokeh, object]] = []
        self.param.watch(lambda e: self._apply_log(), "log_y")

    @property
    def true_span(self) -> Span:
        return self.true_spans[0]

    @property
    def init_span(self) -> Span:
        return self.init_spans[0]

    @property
    def all_lines(self) -> list[ChainLines]:
        return [
            self.loss,
            self.llc,
            *self.norms.values(),
            *self.cosines.values(),
            *self.observable_lines.values(),
        ]

    def set_burnin(self, steps: int) -> None:
        """Shade steps [0, steps) as burn-in (the health panel's slider moved)."""
        steps = max(int(steps), 0)
        with param.edit_constant(self):
            self.burnin = steps
        for box in self.burnin_boxes:
            box.right, box.visible = steps, steps > 0

    def set_init_loss(self, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            for span in self.init_spans:
                span.location = float(value)
                span.visible = True

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
                for obs, lines in self.observable_lines.items():
                    key = f"loss_{obs}"
                    if key in draws:
                        lines.extend(c, x, draws[key].values[sel])
        for lines in self.all_lines:
            lines.push()
        self._sync_panes()
        self.note = self._diverging_note()
        self.empty = self.loss.points() == 0

    def points(self) -> int:
        """Points currently held by the browser-side sources (bounded by the budget)."""
        return sum(lines.points() for lines in self.all_lines)

    def _diverging_note(self) -> str:
        for lines, what in ((self.loss, "loss"), (self.llc, "running LLC")):
            y = np.concatenate([np.abs(np.asarray(s.data["y"], float)) for s in lines.sources])
            if y.size < 2:
                continue
            median = float(np.median(y))
            if median > 0 and y.max() > DIVERGING_RATIO * median:
                return (
                    f"The {what} reaches {y.max():.3g}, {y.max() / median:.0f}x its median: a "
                    "chain diverges (lower lr, raise localization or set bounding_box_size). "
                    "Tick 'log y' to see every chain."
                )
        return ""

    def _apply_log(self) -> None:
        self.loss.set_log(self.log_y)
        self.llc.set_log(self.log_y)
        self._sync_panes()

    def _sync_panes(self) -> None:
        """A figure joins the page with its first points (see ui/figures.py for why)."""
        for pane, fig in self._panes:
            # Visible first, then the figure: a Bokeh pane applies its own `visible` to the
            # model it renders, so a figure handed to a still-hidden pane reached the browser
            # hidden and stayed so (a finished store opened in one poll drew no plot).
            if pane.visible != fig.visible:
                pane.visible = fig.visible
            if fig.visible and pane.object is not fig:
                pane.object = fig

    # --- layout ---------------------------------------------------------------------------

    def _pane(self, fig) -> pn.pane.Bokeh:
        pane = pn.pane.Bokeh(
            fig if fig.visible else None, sizing_mode="stretch_width", visible=fig.visible
        )
        self._panes.append((pane, fig))
        return pane

    def _grid(self, lines: dict[str, ChainLines], ncols: int) -> pn.GridBox:
        # ncols * the figures' min_width (240 px) must fit a notebook cell (about 850 px): the
        # four norms go 2 x 2 (in 4 columns the 4th was cut there). A wrapping FlexBox was
        # tried: figures that join it after the first paint (see _sync_panes) render collapsed.
        return pn.GridBox(
            *[self._pane(x.fig) for x in lines.values()], ncols=ncols, sizing_mode="stretch_width"
        )

    def __panel__(self) -> pn.viewable.Viewable:
        waiting = pn.pane.Markdown(
            "Traces appear here as the chains write rows (burn-in first).",
            visible=self.param.empty,
        )
        log_toggle = pn.widgets.Checkbox.from_param(self.param.log_y, name="log y (loss, LLC)")
        note = pn.pane.HTML(
            self.param.note, styles=NOTE_STYLE, sizing_mode="stretch_width", margin=(0, 10)
        )
        parts = [
            waiting,
            pn.Row(log_toggle, note, sizing_mode="stretch_width"),
            pn.Row(
                *[self._pane(f) for f in self.loss.figures],
                *[self._pane(f) for f in self.llc.figures],
                sizing_mode="stretch_width",
            ),
        ]
        if self.save_metrics:
            parts.append(pn.pane.Markdown("#### SGLD update terms (per chain)"))
            parts.append(pn.pane.HTML(TERMS_CAPTION, styles={"font-size": "12px"}, margin=(0, 10)))
            if not self.prior:
                parts.append(
                    pn.pane.HTML(
                        "localization = 0 and no weight decay: there is no pull back to the "
                        "checkpoint, so the localization term and the prior cosines are not "
                        "plotted (they would be empty). Set localization > 0 to see them.",
                        styles=NOTE_STYLE,
                        margin=(0, 10),
                    )
                )
            parts += [self._grid(self.norms, NORM_COLUMNS), self._grid(self.cosines, MAX_COLUMNS)]
        if self.observable_lines:
            parts += [
                pn.pane.Markdown("#### Observables"),
                self._grid(self.observable_lines, MAX_COLUMNS),
            ]
        return pn.Column(*parts, sizing_mode="stretch_width")


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
