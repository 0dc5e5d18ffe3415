"""Synthetic-task parameters fitted from MATH-500 reference solutions (generated file).

Produced by `python benchmarks/sim_fit_profiles.py --data ../shared/data`:
reference solutions split into steps at blank lines and sentence ends,
3.5 characters per token; the steps-per-solution fit is scaled by
2.0 for instruct models' more verbose solutions.
"""

STEP_TOKENS_LOG_MEAN = 3.32805
STEP_TOKENS_LOG_SD = 0.853994
SOLUTION_STEPS_LOG_MEAN = 1.71314
SOLUTION_STEPS_LOG_SD = 0.760191
