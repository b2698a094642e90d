"""The judge as a component: who judges and how a verdict is read (`sao.judge.config`), the verdicts
themselves (`sao.judge.verdict`), and the judge a run judges with (`sao.judge.build`).

Synthesis (`sao.stages.judge`), ``sao eval`` and ``sao judge-eval`` (`sao.eval.pairwise`) all judge
through it, so a judge checked with judge-eval reads verdicts exactly as SAO's pair filter does.
"""
