"""Image bytes: formats by magic bytes, header-only sizes, mask conversion.
Imports only `core`.
"""
