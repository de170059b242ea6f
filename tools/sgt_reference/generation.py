"""transformers' greedy generation as the fixtures of sgt generate and sgt audit --base record it."""

from __future__ import annotations


def greedy(model, max_new_tokens: int, **inputs) -> tuple[list[int], float]:
    """generate(do_sample=False) of `max_new_tokens` from input_ids or inputs_embeds: the new ids,
    and the smallest gap between the top two logits over the steps (how far from a tie the
    reference is; a gap far above f32 rounding means any correct f32 implementation agrees)."""
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                         output_scores=True, return_dict_in_generate=True,
                         pad_token_id=model.config.eos_token_id)
    n_prompt = 0 if "inputs_embeds" in inputs else inputs["input_ids"].shape[1]
    new = out.sequences[0, n_prompt:].tolist()
    gap = min(float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in out.scores)
    return new, gap
