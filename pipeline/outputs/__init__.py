"""Where outputs go and how they get there: names, safe paths, atomic writes, checks on resume.
Imports `core`.
"""
