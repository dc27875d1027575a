"""The `editbatch` command: parse arguments, call the library, print. Progress displays and the
metrics file live here because they are presentation.
"""
