"""Tokens, prices (data), the cost formula and estimates: pure arithmetic over usage and plans.
Imports `core` and `media`.
"""
