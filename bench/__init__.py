"""editbatch's benchmark (issue 5): each scenario runs editbatch and its reference against the
simulator in separate processes and reports figures against the targets.
`python -m bench.run` runs it; bench/README.md says what each figure means.
"""
