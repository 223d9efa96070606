"""The one evaluation layer: logits over data, and ``compare(reference, candidate)``.

Sessions are opened by :mod:`spartan_deploy.runtime.ort_session`; models are run through the
one runner interface (:mod:`spartan_deploy.runtime`); figures come from :func:`compare`.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Comparer": "comparison", "Comparison": "comparison", "compare": "comparison", "top1": "comparison",
    "topk_hits": "comparison",
    "BatchSource": "logits", "EvalData": "logits", "load_eval_data": "logits",
    "logits_over": "logits", "NO_DATA": "logits", "resolve_data": "logits",
    "check_data_source": "logits",
})
