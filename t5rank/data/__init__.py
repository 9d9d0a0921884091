"""Data for t5rank: file formats, ranking lists, seqio pieces.

Modules (import them by name):
  formats     read/validate/write MS-MARCO passage-ranking files (collection, queries,
              qrels, runs, triples).
  qna         MS-MARCO QnA v2.1 records (JSON lines or TFDS) -> list examples.
  collection  an on-disk, memory-mapped passage index for large collections.
  lists       `build_lists`: queries + qrels + candidates -> list examples.
  msmarco     `passage_ranking_lists` over a directory of MS-MARCO-named files.
  demo        the small synthetic corpus shipped with t5rank (`demo_dir()`).
  preprocessors, feature_converters, packing, metric_fns
              the seqio side: list examples -> model features; ranking metrics.
"""
