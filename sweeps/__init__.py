"""Sweeps: many seeds of many methods as Ray Tune trials around the science core, recorded in MLflow.

`plan` says which trials exist and in which order, `trial` is what runs inside a Ray worker, `runner`
drives one sweep from the command line's options to the final report, `live` is the terminal view.
"""
