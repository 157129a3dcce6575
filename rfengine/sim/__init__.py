"""Simulation: campaigns with a planted truth (``simulate``) and the end-to-end demo
(``demo``: simulate, aggregate three ways, render, report).

Imports ``run``, ``store`` and ``render``; only the CLI imports it.
"""
