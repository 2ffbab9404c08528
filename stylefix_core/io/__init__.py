"""Input and output plumbing: one fsspec storage bridge and the shard readers.

Everything that touches bytes in storage goes through :mod:`.storage`, so local
paths, ``file://``, ``memory://``, ``gs://`` and ``s3://`` behave alike; the
readers in :mod:`.shards` turn tar, Parquet and plain-file inputs into
:class:`~stylefix_core.records.ShardMember` / ``ReadFailure`` values.
"""
