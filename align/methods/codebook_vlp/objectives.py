"""Codebook-VLP's objective pieces as plain functions: masking, MIM targets, ITC with a momentum
queue, hard-negative sampling for ITM. Kept apart from the model so each can be tested alone.

All random draws use the global torch RNG, which :func:`align.methods.framework.seeding.seeded` fixes
per fit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100  # cross_entropy's ignore_index: positions that are not predicted
# ITM scores each matched pair beside this many hard negatives: a caption drawn for its image, an image for its caption
ITM_NEGATIVES_PER_MATCH = 2


def itm_prior_loss(negatives: int = ITM_NEGATIVES_PER_MATCH) -> float:
    """ITM's cross-entropy when the head always predicts the batch's share of matched pairs, 1 / (1 + negatives).
    Until its loss falls below this, the matching head tells pairs apart no better than the batch's make-up
    does, and re-ranking by it is re-ranking by chance."""
    share = 1 / (1 + negatives)
    return -(share * math.log(share) + (1 - share) * math.log(1 - share))


def caption_keys(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One int64 per caption, equal for equal token sequences (a polynomial hash of the ids).

    Class-name captions repeat inside a batch (Fashion-MNIST: 40 distinct prompts); equal keys mark
    pairs that are positives for ITC and may not be drawn as ITM negatives. Keys are >= 0 (the top
    bits are dropped), so a negative key can mark an empty queue slot."""
    ids = ids.masked_fill(mask == 0, 0).long()
    powers = torch.full((ids.shape[1],), 1_000_003, dtype=torch.long, device=ids.device).cumprod(0)
    return (ids * powers).sum(1) & ((1 << 62) - 1)


def mim_mask(batch: int, num_tokens: int, ratio: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[B, T]`` bool, exactly ``max(1, round(ratio * T))`` True per row, at random positions."""
    k = max(1, round(ratio * num_tokens))
    order = torch.rand(batch, num_tokens, device=device).argsort(dim=1)
    return order < k


def mim_targets(codes: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """The code index of each *masked* token, ``IGNORE`` on visible ones (they are not predicted)."""
    return codes.masked_fill(~masked, IGNORE)


def mlm_mask(ids: torch.Tensor, mask: torch.Tensor, special: torch.Tensor, ratio: float, mask_id: int,
             vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``(input ids, labels)``. Each real non-special token is chosen with probability
    ``ratio`` (at least one per caption: emoji names have 2-4 tokens, and 15% would often pick none);
    chosen tokens become [MASK] 80%, a random token 10%, unchanged 10%; labels are ``IGNORE`` elsewhere."""
    candidates = mask.bool() & ~special[ids]
    chosen = (torch.rand(ids.shape, device=ids.device) < ratio) & candidates
    none = ~chosen.any(1) & candidates.any(1)
    if none.any():  # one forced pick per caption without any: a random candidate
        scores = torch.rand(ids.shape, device=ids.device).masked_fill(~candidates, -1.0)
        forced = torch.zeros_like(chosen).scatter_(1, scores.argmax(1, keepdim=True), True)
        chosen = chosen | (forced & none[:, None])
    labels = ids.masked_fill(~chosen, IGNORE)
    roll = torch.rand(ids.shape, device=ids.device)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = torch.randint(vocab_size, (int(swap.sum()),), device=ids.device)
    return inputs, labels


def soft_targets(keys: torch.Tensor, bank_keys: torch.Tensor) -> torch.Tensor:
    """``[B, B + Q]`` targets spreading each row's mass evenly over the items with its caption key."""
    same = (keys[:, None] == bank_keys[None, :]).float()
    return same / same.sum(1, keepdim=True)


def itc_loss(image: torch.Tensor, text: torch.Tensor, image_bank: torch.Tensor, text_bank: torch.Tensor,
             targets: torch.Tensor, temperature: torch.Tensor, distill: tuple[torch.Tensor, torch.Tensor] | None = None,
             alpha: float = 0.0) -> torch.Tensor:
    """ALBEF's ITC: cross-entropy of ``image @ text_bank.T / t`` (and text against ``image_bank``)
    against ``targets``; with ``distill = (i2t, t2i)`` momentum similarities, the targets become
    ``alpha * softmax(momentum logits) + (1 - alpha) * targets`` (momentum distillation)."""
    i2t, t2i = image @ text_bank.T / temperature, text @ image_bank.T / temperature
    t_i2t = t_t2i = targets
    if distill is not None:
        t_i2t = alpha * F.softmax(distill[0], dim=1) + (1 - alpha) * targets
        t_t2i = alpha * F.softmax(distill[1], dim=1) + (1 - alpha) * targets
    loss_i2t = -(F.log_softmax(i2t, dim=1) * t_i2t).sum(1).mean()
    loss_t2i = -(F.log_softmax(t2i, dim=1) * t_t2i).sum(1).mean()
    return (loss_i2t + loss_t2i) / 2


def hard_negatives(similarity: torch.Tensor | None, keys: torch.Tensor,
                   temperature: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """ALBEF's ITM negatives: for each image a text and for each text an image, drawn with
    probability ``softmax(similarity / temperature)`` over the batch items with a different caption
    (uniform when ``similarity`` is None, e.g. with ITC off). ALBEF divides the cosines by the ITC
    temperature: without it, cosines in [-1, 1] give weights within a factor e² of each other, so the
    draw is nearly uniform and ITM sees easy negatives only. Returns ``(text index per image, image
    index per text)``; a row whose batch has no other caption falls back to uniform over the other rows."""
    b = len(keys)
    allowed = keys[:, None] != keys[None, :]
    allowed = torch.where(allowed.any(1, keepdim=True), allowed, ~torch.eye(b, dtype=torch.bool, device=keys.device))
    sim = (torch.zeros(b, b, device=keys.device) if similarity is None
           else similarity.detach().float() / float(temperature))

    def draw(s: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(s.masked_fill(~allowed, float("-inf")), dim=1)
        weights = torch.where(torch.isfinite(weights), weights, torch.zeros_like(weights)) + allowed * 1e-8
        return torch.multinomial(weights, 1).squeeze(1)

    return draw(sim), draw(sim.T)


def inverse_frequency_weights(targets: torch.Tensor, num_codes: int) -> torch.Tensor:
    """A weight per target code (``IGNORE`` rows get 0): ``1 / (p_k + 1/K)``, with ``p_k`` the code's
    share of this batch's targets and ``1/K`` the smoothing (which bounds the ratio of the rarest to the
    commonest code's weight by K + 1), normalised to mean 1 over the predicted positions. Why: a background code that most masked tokens carry would otherwise
    dominate the MIM loss, and predicting it needs no understanding of the image."""
    chosen = targets != IGNORE
    counts = torch.bincount(targets[chosen], minlength=num_codes).float()
    share = counts / counts.sum().clamp_min(1)
    per_code = 1.0 / (share + 1.0 / num_codes)
    weights = torch.zeros(targets.shape, device=targets.device)
    weights[chosen] = per_code[targets[chosen]]
    return weights / weights[chosen].mean().clamp_min(1e-12) if chosen.any() else weights


def drop_top_weights(targets: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Weight 1 per target code, 0 for the batch's most frequent code (and ``IGNORE`` rows)."""
    chosen = targets != IGNORE
    weights = chosen.float()
    if chosen.any():
        top = torch.bincount(targets[chosen], minlength=num_codes).argmax()
        weights[targets == top] = 0.0
    return weights


def mim_accuracy(logits: torch.Tensor, targets: torch.Tensor, num_codes: int) -> dict[str, float]:
    """``mim_acc``: how often MIM names a masked token's code, beside ``mim_marginal``: how often always
    naming the batch's most frequent target code would. MIM has learned something from the visible tokens
    only where the first clearly exceeds the second (both over the masked positions of the batch)."""
    chosen = targets != IGNORE
    if not chosen.any():
        return {}
    wanted = targets[chosen]
    top = torch.bincount(wanted, minlength=num_codes).max()
    return {"mim_acc": float((logits[chosen].argmax(-1) == wanted).float().mean()),
            "mim_marginal": float(top) / len(wanted)}
