"""Where inputs come from when they are not local files: http(s):// URLs and object storage
(s3://, gs://, az://, ... through fsspec), fetched once into a content cache beside the ledger
and trusted again by their validators (ETag, Last-Modified, size). Imports `core`, `media`.
"""
