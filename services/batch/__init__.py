"""Predictions over files, through the same pipeline and codecs as HTTP.

``files``: ``tripod predict`` — one local CSV (with a header) or JSON Lines file in, JSON Lines or CSV out,
streamed in chunks with a progress bar.  Batch-transform jobs (SageMaker's semantics over object storage) are
built here next.
"""
