"""Everything that speaks HTTP to a provider: request building, one attempt, reading answers and
classifying errors. Imports `core`, `media`, `cost`.
"""
