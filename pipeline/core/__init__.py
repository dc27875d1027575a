"""The vocabulary every stage shares: the exception tree, the plan's frozen types, item keys.
Imports nothing else of the package.
"""
