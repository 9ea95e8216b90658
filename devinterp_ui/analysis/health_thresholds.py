"""Thresholds of the health flags, each with the reason it is what it is.

docs/tuning.md gives the same reasons; `health.py` applies them.
"""

BELOW_INIT_NOISE_K = 2.0
"""A draw counts as below the initial loss when it is lower by more than 2 minibatch-noise
standard deviations: a chain at a local minimum still sees single batches below init_loss by
chance (about 2% of draws beyond 2 sd), never systematically."""

BELOW_INIT_SHARE = 0.10
"""Flag when more than 10% of a chain's draws are that far below: five times what chance gives
at a minimum, so it means the chain found lower loss (not at a minimum, or lr too high)."""

NOT_CONVERGED_Z = 3.0
"""The last quarter's mean loss may differ from the third quarter's by at most 3 standard
errors (ESS-based, both quarters): beyond that the trace, hence the running LLC, still trends."""

DISTANCE_GROWTH_MAX = 0.10
"""With save_metrics, the chains' mean distance from the checkpoint may grow by at most 10% from
the third to the last quarter of the draws. At equilibrium it is flat; a chain that is still
diffusing outwards (distance ~ sqrt(steps), as with too small an lr) grows by ~18% between
those quarters."""

RHAT_MAX = 1.05
"""Rank-normalised split R-hat above 1.05 says the chains (or the halves of a chain) do not
agree. Vehtari et al. (2021) ask for 1.01 before trusting posterior quantiles of every
parameter; the LLC is one mean of a noisy minibatch trace, and 1.05 is the bound they give for
a first look (Gelman's classic 1.1 is too lax for 4 short chains)."""

LOW_ESS_MIN = 100.0
"""Warn below 100 effective draws over all chains: below that arviz-stats' ESS, R-hat and MCSE
are themselves unreliable (the MCSE's own relative error, about 1 / sqrt(2 ESS), passes 7%),
so no error bar can be trusted."""

ESS_PER_CHAIN = 100.0
"""Vehtari et al. (2021) recommend a bulk ESS of at least 100 per chain before reporting; below
that (and above LOW_ESS_MIN) the run gets an info note, not a warning."""

SPIKE_K = 10.0
"""A step-to-step jump of the loss beyond 10 robust (MAD-scaled) deviations of the chain's own
jumps: minibatch noise gives jumps beyond 6 deviations about once in 10^8 steps even with
heavier tails than Gaussian; 10 leaves room for data mixtures and still catches the blow-ups
a too-large lr gives."""

STEP_BIAS_MAX = 0.10
"""The lr advisor's predicted relative step-size bias of the LLC may be at most 10%: above it
the discretisation, not the posterior, sets a sizeable part of the estimate."""

LOCALIZATION_RATIO_MAX = 10.0
"""Flag when the localization term of the update is on average more than 10x the gradient term
(norms from save_metrics): the chain is then held by the prior, and the LLC measures the
prior's width rather than the loss landscape. A ratio of a few is normal: most directions of a
network are flat, and holding the chain there is the localization's job (the demo LM's
suggested settings give ~5); an order of magnitude more means the prior also sets the width
along the curved directions that carry the LLC."""
