"""Experiments: one module per experiment, each registered with :func:`register`.

Use :func:`get` / :func:`names` to look them up and :func:`featlab.runs.execute` to run one.
"""
from .registry import Claim, Experiment, all_experiments, get, names, register

__all__ = ["Claim", "Experiment", "all_experiments", "get", "names", "register"]
