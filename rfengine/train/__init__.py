"""Train: what a reward model is trained and judged with. The torch ``Dataset`` over an
output (``dataset``), the RichHF-18K-style export (``richhf``), and RAHF's metrics and
``evaluate`` (``metrics``).

Imports ``store`` (to load outputs) and the ground modules; never ``run`` or above.
"""
