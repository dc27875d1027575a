"""From a YAML file to a validated `Plan`: YAML with locations, the schema, expansion of globs,
file checks, problems gathered into one report. Imports `core`, `media`, `cost`, `outputs`.
"""
