"""The numbers of one candidate-vs-baseline comparison, from its judged pairs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sao.errors import SaoError
from sao.eval.metrics import Estimate, length_controlled_win_rate, prefer_longer, win_rate
from sao.eval.pairwise import verdict_stats
from sao.stage import kept


@dataclass(frozen=True)
class Comparison:
    """Candidate A against baseline B on one instruction set. Rates are percentages."""

    name: str
    baseline: str
    pairs: int  # judged in both orders and kept
    dropped: dict[str, int]  # unparsable verdicts, by reason
    win_rate: Estimate  # mean P(A better), ties (0.5) count half
    lc_win_rate: Estimate  # length-controlled (AlpacaEval 2 GLM), see sao.eval.metrics
    lc_uses_difficulty: bool  # the LC model had an instruction-difficulty term
    wins: int  # pairs with P(A better) > 0.5
    ties: int
    losses: int
    position_consistency: float  # share of pairs whose winner does not depend on the order shown
    first_slot_win_share: float  # share of single-order verdicts won by whichever answer came first
    longer_win_rate: Estimate  # win rate a "prefer the longer answer" judge would give A
    mean_len_a: float  # characters
    mean_len_b: float
    truncated_a: int | None  # A's answers cut at max_new_tokens (None: read from a file)
    judge: str | None = None  # who judged: a model spec, or "<candidate> (self)" when A judged itself

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    rows: list[dict[str, Any]],
    name: str,
    baseline: str,
    *,
    truncated_a: int | None,
    n_boot: int,
    difficulty: dict[str, float | None] | None = None,
    seed: int = 0,
    judge: str | None = None,
) -> Comparison:
    """Win rate, LC win rate and judge diagnostics over the kept verdict rows.

    ``difficulty`` maps instruction ids to AlpacaEval's instruction difficulty; the LC model uses it
    only when every judged instruction has one (a partial covariate would silently drop pairs).
    ``judge`` names who judged the rows, for the report.

    Raises SaoError when no pair could be judged (every verdict unparsable): a win rate of
    nothing would be a made-up number.
    """
    good = kept(rows)
    stats = verdict_stats(rows)
    if not good:
        raise SaoError(f"{name} vs {baseline}: no pair was judged in both orders ({stats['dropped']}); no win rate")
    prefs = [r["preference"] for r in good]
    known = [difficulty.get(r["id"]) for r in good] if difficulty else []
    covariate = known if known and all(d is not None for d in known) else None
    len_a, len_b = [r["len_a"] for r in good], [r["len_b"] for r in good]
    return Comparison(
        name=name,
        baseline=baseline,
        pairs=len(good),
        dropped=stats["dropped"],
        win_rate=win_rate(prefs),
        lc_uses_difficulty=covariate is not None,
        lc_win_rate=length_controlled_win_rate(prefs, len_a, len_b, covariate, n_boot=n_boot, seed=seed),
        wins=sum(p > 0.5 for p in prefs),
        ties=sum(p == 0.5 for p in prefs),
        losses=sum(p < 0.5 for p in prefs),
        position_consistency=stats["position_consistency"],
        first_slot_win_share=stats["first_slot_win_share"],
        longer_win_rate=win_rate(prefer_longer(len_a, len_b)),
        mean_len_a=round(sum(len_a) / len(len_a), 1),
        mean_len_b=round(sum(len_b) / len(len_b), 1),
        truncated_a=truncated_a,
        judge=judge,
    )
