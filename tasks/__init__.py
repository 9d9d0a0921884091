"""seqio tasks of t5rank; registered on import of `t5rank.tasks`.

``msmarco_passage_ranking``, ``msmarco_qna21_ranking`` and ``t5rank_demo``
(see `t5rank.tasks.msmarco`). Importing again replaces them with equal tasks.
"""

from t5rank.tasks import common
from t5rank.tasks import msmarco
from t5rank.tasks.msmarco import register_msmarco_passage_ranking
from t5rank.tasks.msmarco import register_msmarco_qna21_jsonl
from t5rank.tasks.msmarco import register_msmarco_qna21_ranking
from t5rank.tasks.msmarco import register_t5rank_demo

register_msmarco_passage_ranking()
register_msmarco_qna21_ranking()
register_t5rank_demo()
