"""``attn-export doctor``: what this machine can do (export, build engines, serve), and what to fix.

Every probe imports its dependency lazily and turns any failure into a row of the report, so the
doctor runs on the smallest install (the torch-free Jetson image) and never crashes on a broken
one. :func:`run_checks` gathers the rows; :mod:`attn_export.doctor.report` judges them per role.
"""

from attn_export.doctor.checks import Check, run_checks
from attn_export.doctor.report import ROLES, Verdict, format_table, judge, to_json

__all__ = ["ROLES", "Check", "Verdict", "format_table", "judge", "run_checks", "to_json"]
